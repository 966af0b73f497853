"""About (with the model card's measured metrics) and Help (shortcuts and the three query moves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from sheetaudio_gui import __version__, config

MODEL_CARD = config.MODELS_DIR / "MODEL_CARD.md"

HELP_TEXT = """\
# Using sheetaudio

**Score → recordings.** Open a score (Ctrl+O, or drop a PDF/image on the window).
Then *click a staff system*, *drag a rectangle*, or press **Query whole page**.
The results list the recordings and the time spans that play it; choose one to hear it,
with a cursor following on the score.

**Recording → scores.** Open an audio file or record from the microphone, drag the blue region over
the passage and press **Find this passage in the scores**. Choose a result to see the page with the
matching system highlighted.

**Library.** Drop files or folders on the library pane (or *Add files…*). Indexing runs in the
background; files that cannot be read are listed with the reason and skipped.

| key | action |
|---|---|
| Space | play / pause |
| Esc | stop |
| Ctrl+O | open a score or a recording |
| Ctrl+F | go to the query (score page or audio region) |
| Ctrl+L | loop the passage |
| Ctrl+C | copy the chosen result's reference |
| Ctrl+wheel, middle-drag | zoom and pan the page |
| F1 | this help |
"""


def about_markdown(model: Any = None, model_path: Path | None = None) -> str:
    """The About text: version, the model in use, and the model card if it is shipped."""
    parts = [
        f"# sheetaudio {__version__}",
        "Cross-modal retrieval between score pages and recordings "
        "(Carvalho & Widmer, ISMIR 2023; Dorfer et al., TISMIR 2018).",
    ]
    if model is not None:
        parts.append(f"**Model** `{getattr(model, 'model_id', '?')}` from `{model_path}`")
    else:
        parts.append(f"**Model**: not loaded (expected at `{model_path}`)")
    if MODEL_CARD.is_file():
        parts.append(MODEL_CARD.read_text(encoding="utf-8"))
    else:
        parts.append("*No model card found in models/ — the metrics are not available.*")
    return "\n\n".join(parts)


class TextDialog(QDialog):
    def __init__(self, title: str, markdown: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(640, 560)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setMarkdown(markdown)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
