#!/usr/bin/env bash
# Set up (idempotent) and run every check CI runs: lint, format, types, import contract, tests.
# Extra arguments go to pytest, e.g. `bash packaging/test.sh -m slow` runs the slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/setup.sh train,test
VENV="${SHEETAUDIO_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"
export QT_QPA_PLATFORM=offscreen
echo "== ruff";        ruff check sheetaudio_gui tests benchmarks
echo "== ruff format"; ruff format --check sheetaudio_gui tests benchmarks
echo "== mypy (strict on core)"; mypy sheetaudio_gui/core sheetaudio_gui/config.py
echo "== import contract"; lint-imports
echo "== pytest"
if (($#)); then
  exec pytest "$@"
else
  exec pytest -m "not slow" -q
fi
