"""sheetaudio: find recordings from score pages and score pages from recordings."""

__version__ = "0.1.0"
