#!/usr/bin/env bash
# Build the stand-alone one-folder app dist/sheetaudio/ (PyInstaller); safe to run again.
#   bash packaging/build_app.sh                  build (reuses .venv, creates it if missing)
#   bash packaging/build_app.sh --install-desktop  build, then add the menu entry and icon for
#                                                 this user (~/.local/share), pointing at dist/
# Result: dist/sheetaudio/sheetaudio-gui (window), dist/sheetaudio/sheetaudio (command line),
# dist/sheetaudio/share/ (desktop file, AppStream metainfo, icons in the hicolor layout).
# The build needs no display and no network beyond PyPI (for PyInstaller itself, once).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
APP_ID="io.github.sheetaudio"
VENV="${SHEETAUDIO_VENV:-.venv}"
INSTALL_DESKTOP=0
for arg in "$@"; do
  case "$arg" in
    --install-desktop) INSTALL_DESKTOP=1 ;;
    *) echo "build_app: unknown option $arg" >&2; exit 2 ;;
  esac
done

if [[ ! -x "$VENV/bin/python" ]]; then
  bash packaging/setup.sh
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  echo "build_app: installing PyInstaller into $VENV"
  "$PY" -m pip install -q "pyinstaller>=6.10"
fi

started=$(date +%s)
# build/pyinstaller keeps PyInstaller's analysis cache: a second build is much faster.
"$PY" -m PyInstaller --noconfirm --log-level WARN \
  --workpath build/pyinstaller --distpath dist packaging/sheetaudio.spec

# Desktop integration files, laid out as under /usr/share (for a package or ~/.local/share).
APP="dist/sheetaudio"
install -D -m 644 packaging/sheetaudio.desktop "$APP/share/applications/$APP_ID.desktop"
install -D -m 644 "packaging/$APP_ID.metainfo.xml" "$APP/share/metainfo/$APP_ID.metainfo.xml"
install -D -m 644 resources/icons/sheetaudio.svg \
  "$APP/share/icons/hicolor/scalable/apps/$APP_ID.svg"
for size in 64 128 256; do
  install -D -m 644 "resources/icons/sheetaudio-$size.png" \
    "$APP/share/icons/hicolor/${size}x${size}/apps/$APP_ID.png"
done

elapsed=$(($(date +%s) - started))
echo "build_app: $APP built in ${elapsed} s, $(du -sh "$APP" | cut -f1)" \
  "(version $("$APP/sheetaudio" --version))"

if ((INSTALL_DESKTOP)); then
  share="${XDG_DATA_HOME:-$HOME/.local/share}"
  install -D -m 644 "$APP/share/applications/$APP_ID.desktop" "$share/applications/$APP_ID.desktop"
  # The desktop file says Exec=sheetaudio-gui; point it at this build.
  sed -i "s|^Exec=sheetaudio-gui|Exec=$ROOT/$APP/sheetaudio-gui|" "$share/applications/$APP_ID.desktop"
  install -D -m 644 "$APP/share/icons/hicolor/scalable/apps/$APP_ID.svg" \
    "$share/icons/hicolor/scalable/apps/$APP_ID.svg"
  for size in 64 128 256; do
    install -D -m 644 "$APP/share/icons/hicolor/${size}x${size}/apps/$APP_ID.png" \
      "$share/icons/hicolor/${size}x${size}/apps/$APP_ID.png"
  done
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$share/applications" || true
  echo "build_app: menu entry installed in $share/applications/$APP_ID.desktop"
fi
