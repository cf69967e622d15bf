#!/usr/bin/env bash
# Train and evaluate the models a reproduction record lacks, a few per Snakemake call, seed by seed, so that a run
# stopped at any point leaves whole seeds and loses at most one call's unfinished models. Run it from a clean
# checkout of a commit (a `git worktree add --detach`), so that every model names that commit and is not dirty; publish
# what finished into the record with `advprune publish` (README: "On a CPU").
#
# Usage: bash scripts/run-record.sh RECORD LOGDIR MISSING_ARGS...
#   RECORD        the record whose models are skipped, e.g. ../main/docs/results/mnist-cpu
#   LOGDIR        one Snakemake console log per call (chunk-NNN.log; `advprune publish --log` reads them)
#   MISSING_ARGS  the arguments of `advprune missing` after RECORD (--configfile, --set, --artefact, --only)
# Environment: CHUNK (models per call, default 6), PROFILE (default profiles/cpu), SNAKEMAKE_ARGS (more arguments,
# e.g. "--config 'sources={mnist: /data/mnist-raw}'"), NICE (default 10). A file LOGDIR/STOP ends the loop before the
# next call.
set -euo pipefail
[ $# -ge 3 ] || { echo "run-record: error: usage: bash scripts/run-record.sh RECORD LOGDIR MISSING_ARGS..." >&2; exit 2; }
record=$1 logs=$2
shift 2
cd "$(dirname "$0")/.."
# This checkout's package, also where .venv was made by another checkout (a worktree sharing it).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$logs"
python=.venv/bin/python
mapfile -t targets < <("$python" -m advprune missing "$record" "$@")
chunk=${CHUNK:-6}
count=$(find "$logs" -maxdepth 1 -name "chunk-*.log" | wc -l)
for ((i = 0; i < ${#targets[@]}; i += chunk)); do
  todo=()
  for target in "${targets[@]:i:chunk}"; do [ -f "$target" ] || todo+=("$target"); done
  [ ${#todo[@]} -eq 0 ] && continue
  [ -f "$logs/STOP" ] && { echo "run-record: $logs/STOP exists; not starting another call"; exit 0; }
  count=$((count + 1))
  log=$logs/chunk-$(printf %03d "$count").log
  echo "$(date -Is) $log: ${#todo[@]} models" >> "$logs/driver.log"
  # The targets before SNAKEMAKE_ARGS: Snakemake's --config takes every word after it.
  eval "nice -n ${NICE:-10} .venv/bin/snakemake --profile ${PROFILE:-profiles/cpu}" '"${todo[@]}"' \
    "${SNAKEMAKE_ARGS:-}" > "$log" 2>&1 || echo "$(date -Is) $log: snakemake failed (see the log)" >> "$logs/driver.log"
done
