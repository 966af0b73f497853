#!/usr/bin/env bash
# Set up everything sheetaudio needs on a Debian/Ubuntu machine; safe to run again (idempotent).
#   bash packaging/setup.sh            runtime only (the app and the CLI)
#   bash packaging/setup.sh train,test with extras (training corpus tools, test tools)
# System libraries are installed with apt-get when run as root, otherwise listed for you to install.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
VENV="${SHEETAUDIO_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

# PortAudio (sound), Qt's X11/EGL platform libraries, Xvfb (screenshots, headless GUI tests),
# FluidSynth and General MIDI soundfonts (the synthetic training corpus).
APT_PACKAGES=(libportaudio2 libsndfile1 libegl1 libgl1 libxkbcommon-x11-0 libxkbcommon0 libfontconfig1
  libdbus-1-3 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 xvfb)
if [[ ",$EXTRAS," == *",train,"* || ",$EXTRAS," == *",test,"* ]]; then
  APT_PACKAGES+=(libfluidsynth3 fluid-soundfont-gm musescore-general-soundfont timgm6mb-soundfont)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages (as root): apt-get install ${missing[*]}" >&2
  fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when pyproject.toml or the extras changed.
stamp="$VENV/.sheetaudio-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$EXTRAS"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$PY" -m pip install -q --upgrade pip
  # The CPU build of torch: an unpinned install would pull a multi-GB CUDA build.
  if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.*" || "$PY" -m pip install -q "torch>=2.3,<2.14"
  fi
  spec="."
  [[ -n "$EXTRAS" ]] && spec=".[$EXTRAS]"
  "$PY" -m pip install -q -e "$spec"
  echo "$want" >"$stamp"
fi
echo "setup: ready ($("$PY" -c 'import sheetaudio_gui as s; print("sheetaudio", s.__version__)'))"
