#!/usr/bin/env bash
# Train and evaluate the models a reproduction record lacks, a few per Snakemake call, seed by seed, so that a run
# stopped at any point leaves whole seeds and loses at most one call's unfinished models. Run it from a clean
# checkout of a commit (a `git worktree add --detach`), so that every model names that commit and is not dirty; publish
# what finished into the record with `advprune publish` (README: "On a CPU").
#
# Usage: bash scripts/run-record.sh RECORD LOGDIR MISSING_ARGS...
#   RECORD        the record whose models are skipped, e.g. ../main/docs/results/mnist-cpu
#   LOGDIR        one Snakemake console log per call (chunk-NNN.log; `advprune publish --log` reads them)
#   MISSING_ARGS  the arguments of `advprune missing` after RECORD (--configfile, --set, --artefact, --only, and
#                 --new-record for a record not yet published)
# Environment: CHUNK (models per call, default 6), PROFILE (default profiles/cpu), SNAKEMAKE_ARGS (more arguments,
# e.g. "--config 'sources={mnist: /data/mnist-raw}'"), NICE (default 10), CODE_CHECKOUT (the checkout whose code
# trains the models, default this one: e.g. a worktree of the commit that the record's earlier rows name, so that every
# row of a run names one commit; the targets come from this checkout's `advprune missing`, as model paths are the same
# in every commit). A file LOGDIR/STOP ends the loop before the next call.
set -euo pipefail
[ $# -ge 3 ] || { echo "run-record: error: usage: bash scripts/run-record.sh RECORD LOGDIR MISSING_ARGS..." >&2; exit 2; }
record=$(realpath -m "$1") logs=$(realpath -m "$2")
shift 2
code=$(realpath -m "${CODE_CHECKOUT:-$(dirname "$0")/..}")
[ -f "$code/Snakefile" ] || { echo "run-record: error: CODE_CHECKOUT $code has no Snakefile" >&2; exit 2; }
cd "$(dirname "$0")/.."
inherited=${PYTHONPATH:-}
mkdir -p "$logs"
python=$PWD/.venv/bin/python
# This checkout's package lists the targets (also where .venv was made by another checkout, a worktree sharing it).
listing=$(PYTHONPATH="$PWD/src${inherited:+:$inherited}" "$python" -m advprune missing "$record" "$@")  # fails here
mapfile -t targets <<< "$listing"
[ -n "$listing" ] || targets=()
# The code checkout's package plans and trains them (its Snakefile puts its src first; its jobs get it too).
snakemake=$PWD/.venv/bin/snakemake
cd "$code"
export PYTHONPATH="$code/src${inherited:+:$inherited}"
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
  eval "nice -n ${NICE:-10} \"$snakemake\" --profile ${PROFILE:-profiles/cpu}" '"${todo[@]}"' \
    "${SNAKEMAKE_ARGS:-}" > "$log" 2>&1 || echo "$(date -Is) $log: snakemake failed (see the log)" >> "$logs/driver.log"
done
