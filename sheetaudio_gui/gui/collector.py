"""Garbage collection in the GUI thread only, at timer ticks.

Python's automatic collector runs in whichever thread happens to allocate past a threshold. In
this application that is often a worker thread (a model being built, a library being indexed),
and a collection there may finalise Qt wrappers owned by the GUI thread, while Qt objects must be
destroyed in their own thread: such a collection crashed the test suite once (SIGSEGV inside the
collector). So automatic collection is switched off and the GUI thread collects on a timer,
with the same generation thresholds Python itself would use. Reference counting still frees
everything that is not in a cycle at once; only cycles wait for the next tick.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

COLLECT_INTERVAL_MS = 500  # how often the GUI thread checks whether a collection is due


class GuiThreadCollector(QObject):
    """Disables automatic collection and collects from the GUI thread's event loop instead."""

    def __init__(self, parent: QObject, interval_ms: int = COLLECT_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.setObjectName(type(self).__name__)
        self._thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_if_due)
        self._timer.start(interval_ms)

    def collect_if_due(self) -> int:
        """Collect the oldest generation whose count passed its threshold; -1 when none did."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return generation
        return -1


def collect_in_gui_thread(app: QCoreApplication) -> GuiThreadCollector:
    """Install the collector on the application once; later calls return the same one."""
    existing = app.findChild(GuiThreadCollector, GuiThreadCollector.__name__)
    if existing is not None:
        return existing
    return GuiThreadCollector(app)
