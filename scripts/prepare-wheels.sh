#!/usr/bin/env bash
# Wheels for a GPU machine without network that has torch, torchvision, pandas, seaborn and scikit-learn but not
# the rest (snakemake, pyautoattack, ...): run this where PyPI is reachable, then carry DIR with the checkout and
# pass it to scripts/device-check.sh --wheels DIR (docs/gpu.md). pyautoattack is repacked without its 44 MB
# examples/ folder. PYTHON_VERSION (e.g. 3.10) picks binary wheels for the GPU machine's Python if it differs.
# Usage: bash scripts/prepare-wheels.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: bash scripts/prepare-wheels.sh DIR}
python=${PYTHON:-python3}
target=()
[ -n "${PYTHON_VERSION:-}" ] && target=(--python-version "$PYTHON_VERSION" --only-binary=:all:)
mkdir -p "$dir"
# The pins of requirements.txt, less what the GPU machine has (the torch stack, pandas, seaborn, scikit-learn).
mapfile -t wanted < <(grep -E '^(snakemake|jsonschema|filelock|tqdm|pyyaml|threadpoolctl|pytest|hypothesis)==' requirements.txt)
"$python" -m pip download --quiet --dest "$dir" "${target[@]}" "${wanted[@]}"
# A package published only as source (connection_pool) is built into a wheel here: offline, pip could not fetch
# the build tools it needs.
for sdist in "$dir"/*.tar.gz; do
  [ -e "$sdist" ] || continue
  "$python" -m pip wheel --quiet --no-deps --wheel-dir "$dir" "$sdist" && rm "$sdist"
done
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
"$python" -m pip download --quiet --no-deps --dest "$raw" "${target[@]}" "$(grep -E '^pyautoattack==' requirements.txt)"
"$python" scripts/repack_wheel.py "$raw"/pyautoattack-*.whl --drop pyautoattack/examples/ --out "$dir"
du -sh "$dir"
