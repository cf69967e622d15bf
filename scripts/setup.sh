#!/usr/bin/env bash
# Create .venv with the pinned dependencies (requirements.txt) and advprune installed editable.
# Idempotent: a second run with unchanged requirements does nothing. PYTHON and VENV may be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
# The first Python >= 3.11 found (PYTHON, if set, is the only one tried): the pins are tested on 3.11 and later.
is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ ! -x "$venv/bin/python" ]; then
  python=
  candidates=${PYTHON:-python3 python3.14 python3.13 python3.12 python3.11 python}
  for candidate in $candidates; do
    if command -v "$candidate" >/dev/null && is_new_enough "$candidate"; then python=$candidate; break; fi
  done
  if [ -z "$python" ]; then
    echo "scripts/setup.sh: error: needs Python 3.11 or newer, and none of $candidates on PATH is;" \
         "install one, or point PYTHON at it: PYTHON=/path/to/python3.12 bash scripts/setup.sh" >&2
    exit 2
  fi
  "$python" -m venv "$venv"
fi
stamp="$venv/.installed-requirements"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -e . 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > "$stamp"
fi
echo "environment ready: $venv ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
