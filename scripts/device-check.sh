#!/usr/bin/env bash
# The one-shot device check (docs/gpu.md): on one GPU machine without network, in at most about 8 minutes,
#   1. installs what the machine lacks from wheels carried with the checkout (--wheels; scripts/prepare-wheels.sh),
#   2. runs the GPU tests (pytest -m gpu),
#   3. trains and evaluates two real MNIST models through the workflow (Snakemake, 2 jobs on the GPU),
#   4. runs `advprune bench` at full size,
# and writes everything (JSON, logs, a summary) under OUT. A failed step is recorded and the others still run; the
# exit code is 1 if any failed. `--device cpu --tiny` runs the same steps on a CPU in about a minute (CI does):
# bench at its tiny size and the two models on scikit-learn's digits instead of MNIST.
# Usage: bash scripts/device-check.sh OUT [--device cuda|cpu] [--tiny] [--wheels DIR] [--mnist DIR]
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: bash scripts/device-check.sh OUT [--device cuda|cpu] [--tiny] [--wheels DIR] [--mnist DIR]"
out=${1:-}
[ -n "$out" ] && [ "${out#-}" = "$out" ] || { echo "device-check: error: $usage" >&2; exit 2; }
shift
device=cuda tiny=0 wheels="" mnist=""  # no --mnist: config.yaml's sources (the official mirror; needs network)
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=${2:-}; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --wheels) wheels=${2:-}; shift 2 ;;
    --mnist) mnist=${2:-}; shift 2 ;;
    *) echo "device-check: error: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
done
case "$device" in cuda|cpu) ;; *) echo "device-check: error: --device must be cuda or cpu, got '$device'" >&2; exit 2 ;; esac
mkdir -p "$out" && out=$(cd "$out" && pwd) || { echo "device-check: error: cannot create $out" >&2; exit 2; }
exec > >(tee "$out/device-check.log") 2> >(tee -a "$out/device-check.log" >&2)
cd "$repo"
failed=()
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, record the outcome
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   $name: exit $rc after $((SECONDS - start)) s (log: $out/$name.log)"
  echo "$name $rc $((SECONDS - start))" >> "$out/steps.txt"
  [ $rc -eq 0 ] || failed+=("$name")
}
: > "$out/steps.txt"

# 1. Python with everything the project imports: this checkout's .venv, else the machine's python3 plus wheels.
python=${PYTHON:-}
[ -n "$python" ] || { [ -x .venv/bin/python ] && python=$repo/.venv/bin/python || python=python3; }
needed="torch torchvision numpy pandas seaborn matplotlib sklearn threadpoolctl yaml jsonschema filelock tqdm \
pyautoattack snakemake pytest hypothesis"
missing() { "$python" - $needed <<'EOF'
import importlib.util, sys
print(" ".join(name for name in sys.argv[1:] if importlib.util.find_spec(name) is None))
EOF
}
lacking=$(missing)
if [ -n "$lacking" ]; then
  echo "== install: $python lacks: $lacking"
  [ -n "$wheels" ] && [ -d "$wheels" ] || { echo "device-check: error: $python lacks $lacking and no --wheels DIR was given (scripts/prepare-wheels.sh makes one)" >&2; exit 2; }
  # Into a folder of their own, first on PYTHONPATH: the machine's packages (torch and the rest) stay as installed,
  # and no venv module is needed (Debian's system Python may lack it).
  pins=$(grep -E '^(snakemake|pyautoattack|jsonschema|filelock|tqdm|pyyaml|threadpoolctl|pytest|hypothesis)==' requirements.txt)
  # shellcheck disable=SC2086
  "$python" -m pip install --quiet --no-index --find-links "$wheels" --target "$out/site" $pins > "$out/install.log" 2>&1 \
    || { echo "device-check: error: installing from $wheels failed (see $out/install.log)" >&2; exit 2; }
  export PYTHONPATH="$out/site${PYTHONPATH:+:$PYTHONPATH}"
  lacking=$(missing)
  [ -z "$lacking" ] || { echo "device-check: error: still missing after the install: $lacking" >&2; exit 2; }
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "python: $python"
{ command -v nvidia-smi > /dev/null && nvidia-smi; "$python" -c "from advprune.runtime import library_versions; print(library_versions(('snakemake', 'pandas', 'seaborn')))"; } \
  > "$out/machine.txt" 2>&1

# 2. GPU tests (on a CPU they skip, and say so).
# In this process, whatever pyproject's addopts say: the GPU tests share one device, and the wheel set has no xdist.
step pytest-gpu "$python" -m pytest -o addopts="" -m gpu tests/test_gpu.py -p no:cacheprovider -rA -s --junitxml "$out/pytest-gpu.xml"

# 3. Two real models through the workflow: MNIST on a GPU (an offline copy with --mnist, else downloaded), the
# digits on a CPU with --tiny.
workflow=$out/workflow
rm -rf "$workflow" && mkdir -p "$workflow"
cp -r Snakefile rules schemas report profiles envs config.yaml src "$workflow"/
if [ "$tiny" = 1 ]; then
  dataset=digits-mnist n=10 overlay="datasets: {mnist: digits-mnist, cifar10: digits-cifar}"
else
  dataset=mnist n=1000 overlay="datasets: {mnist: mnist, cifar10: cifar10}
sources: {${mnist:+mnist: $mnist, }cifar10: null}"
fi
cat > "$workflow/device-check.yaml" <<EOF
$overlay
roles: [mnist]
device: $device
n_examples: $n
gpus: 1
jobs_per_gpu: 2
EOF
targets=("results/models/$dataset/fp32/full/seed0/autoattack-n$n.json" "results/models/$dataset/fp32/full/seed1/autoattack-n$n.json")
step workflow "$python" -m snakemake --directory "$workflow" --snakefile "$workflow/Snakefile" --cores 2 \
  --configfile "$workflow/config.yaml" "$workflow/device-check.yaml" --show-failed-logs -- "${targets[@]}"

# 4. The benchmark, last and given what is left of the budget (DEVICE_CHECK_SECONDS, default 480): stopped there,
# it stops its jobs and leaves bench.json with every measurement it finished ("complete": false).
size=(); [ "$tiny" = 1 ] && size=(--tiny)
left=$(( ${DEVICE_CHECK_SECONDS:-480} - SECONDS )); [ $left -gt 60 ] || left=60
echo "   bench gets ${left} s"
step bench "$python" -m advprune bench "${size[@]}" --device "$device" --max-seconds "$left" --out "$out/bench.json"

# Summary: what each step gave, in one file.
"$python" - "$out" "$workflow" "${targets[@]}" > "$out/summary.txt" 2>&1 <<'EOF'
import json, sys
from pathlib import Path
out, workflow, targets = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
print("steps (name, exit code, seconds):")
print((out / "steps.txt").read_text())
print((out / "machine.txt").read_text().strip().splitlines()[-1])
for target in targets:
    metrics, train = workflow / target, (workflow / target).with_name("train.json")
    if metrics.exists() and train.exists():
        m, t = json.loads(metrics.read_text()), json.loads(train.read_text())
        print(f"{target}: train {t['train_seconds']:.1f} s on {t['device']} (gpu {t['provenance'].get('gpu')}, "
              f"jobs_on_device {t['jobs_on_device']}), clean {m['clean_acc']:.3f}, AutoAttack {m['autoattack_acc']:.3f}"
              f" in {m['attack_seconds']:.1f} s")
    else:
        print(f"{target}: not made")
if (out / "bench.json").exists():
    bench = json.loads((out / "bench.json").read_text())
    print(f"bench ({bench['size']}, {bench['device']}, complete: {bench['complete']}):")
    for shape, row in bench["shapes"].items():
        print(f"  {shape}: reference-style {row['reference']['seconds_per_model_epoch']:.2f} s per model-epoch")
        for job in row["jobs"]:
            print(f"  {shape}: k={job['k']}: {job['seconds_per_model_epoch']:.2f} s per model-epoch, "
                  f"{job['throughput_vs_reference']:.2f}x the reference")
        aa = row["autoattack"]
        if aa:
            print(f"  {shape}: AutoAttack {aa['seconds_per_1000']:.1f} s per 1000 points (robust {aa['robust_acc']:.2f})")
EOF
cat "$out/summary.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "device-check: failed steps: ${failed[*]} (logs in $out)"
  exit 1
fi
echo "device-check: every step passed; results in $out"
