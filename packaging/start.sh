#!/usr/bin/env bash
# Set up (idempotent) and launch the sheetaudio window; the first start indexes the demo library
# shipped in resources/demo into the default library folder. Extra arguments go to the app
# (e.g. --library DIR, --model PATH, --no-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/setup.sh
VENV="${SHEETAUDIO_VENV:-.venv}"
if [[ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}${QT_QPA_PLATFORM:-}" ]]; then
  if command -v xvfb-run >/dev/null; then
    echo "no display found: running the window inside xvfb-run (nothing visible on screen)" >&2
    exec xvfb-run -a "$VENV/bin/python" -m sheetaudio_gui "$@"
  fi
  echo "no display found (DISPLAY/WAYLAND_DISPLAY unset): start it from a desktop session," >&2
  echo "or use the command line: $VENV/bin/sheetaudio --help" >&2
  exit 2
fi
exec "$VENV/bin/python" -m sheetaudio_gui "$@"
