"""`python -m sheetaudio_gui` opens the desktop application."""

from sheetaudio_gui.gui.app import main

if __name__ == "__main__":
    raise SystemExit(main())
