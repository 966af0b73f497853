#!/usr/bin/env bash
# Set up (idempotent) and launch sheetaudio on the demo material shipped in resources/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/setup.sh
VENV="${SHEETAUDIO_VENV:-.venv}"
SA="$VENV/bin/sheetaudio"
if "$VENV/bin/python" -c "import sheetaudio_gui.gui.app" 2>/dev/null; then
  exec "$VENV/bin/python" -m sheetaudio_gui "$@"
fi
# The desktop window is not built yet: show what the engine reads from the demo material.
out="${TMPDIR:-/tmp}/sheetaudio-demo"
mkdir -p "$out"
for score in resources/demo/*.pdf; do
  "$SA" inspect score "$score" --png "$out"
done
for audio in resources/demo/*.flac; do
  "$SA" inspect audio "$audio" --png "$out"
done
echo "Pictures of the detected systems and spectrograms: $out"
