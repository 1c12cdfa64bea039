"""Python's cyclic garbage collector, run on the GUI thread only.

CPython runs a collection in whichever thread passes an allocation threshold: a render worker, the
frame slicer, a download. Reference cycles hold the Python side of Qt objects (a closed window's
widgets, timers, pixmaps), and Qt does not allow deleting those off the GUI thread: the GUI tests
measured collections of up to 12,000 objects on QThreads, and the suite died of a SIGSEGV now and then.
As pyqtgraph's GarbageCollector does, `GuiGarbageCollector` switches automatic collection off and a timer
on the GUI thread collects with Python's own thresholds.

A full collection scans every object Python tracks: about 500 ms on the GUI thread once torch and
diffusers are imported (bench/gc_pause.py, 2 cores), nearly all of them modules, classes and functions,
which are never garbage. So once a library has been imported (a hundred modules more), what exists is frozen
(`gc.freeze`, no scan) and later scans skip it. Like Python, a full collection runs only when the memory
blocks in use have grown by a quarter since the last (Python's count of long-lived objects is not
exposed): after a model loaded, never while the same clip is scrubbed and played. A cycle frozen while
still in use waits for the next thorough collection: the ones the pipeline asks for (a closed engine's
model that a cycle still holds, an out-of-memory retry) unfreeze, collect everything and freeze again. The
engine's thread asks and goes on (waiting would deadlock a GUI thread that is joining it, closing the window).
A closed diffusion model is normally freed by reference counting, with no collection (tests/test_conditioning.py).
"""

from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from pipeline.garbage import set_garbage_collector

CHECK_INTERVAL_MS = 500  # cycles wait at most this long; a young generation stays small
FULL_GROWTH = 1.25  # Python's rule: a full collection once long-lived objects grew by 25 %
IMPORTED_MODULES = 100  # this many modules more: a library was imported, freeze what it made


class GuiGarbageCollector(QObject):
    """Collects cyclic garbage from the GUI thread; `start()` turns Python's automatic collection off."""

    collect_asked = Signal()  # from any thread: a full collection, on the GUI thread

    def __init__(self, parent: QObject | None = None, interval_ms: int = CHECK_INTERVAL_MS):
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        self.collections = [0, 0, 0]  # made by this collector, per generation
        self.freezes = 0  # after imports and thorough collections
        self._blocks_at_full = sys.getallocatedblocks()
        self._modules_at_freeze = len(sys.modules)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self.collect_asked.connect(self._collect_thoroughly)

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self) -> None:
        if self.running:
            return
        gc.disable()
        set_garbage_collector(self.collect_from_any_thread)
        self._timer.start()

    def stop(self) -> None:
        """Collect everything here, then give collection back to Python (automatic, in any thread)."""
        if not self.running:
            return
        self._timer.stop()
        set_garbage_collector(None)
        gc.unfreeze()
        gc.collect()
        gc.enable()

    def check(self) -> None:
        """Freeze after imports, else collect the oldest generation that is due, as Python would have."""
        counts = gc.get_count()
        if len(sys.modules) >= self._modules_at_freeze + IMPORTED_MODULES:
            self._freeze()
        elif counts[1] > self.threshold[1] and counts[2] >= self.threshold[2] and self._grown():
            self._collect(2)  # the objects not frozen
            self._blocks_at_full = sys.getallocatedblocks()
        elif counts[1] > self.threshold[1]:
            self._collect(1)
        elif counts[0] > self.threshold[0]:
            self._collect(0)

    def collect_from_any_thread(self) -> None:
        """A thorough collection: now on the GUI thread, else as soon as the GUI thread gets to it."""
        if QThread.currentThread() == self.thread():
            self._collect_thoroughly()
        else:
            self.collect_asked.emit()  # queued to the GUI thread

    def _collect_thoroughly(self) -> None:
        """Every object, the frozen ones too; then freeze what is left."""
        gc.unfreeze()
        self._collect(2)
        self._freeze()

    def _freeze(self) -> None:
        gc.freeze()  # moves the generations' lists: no scan
        self.freezes += 1
        self._modules_at_freeze = len(sys.modules)
        self._blocks_at_full = sys.getallocatedblocks()

    def _grown(self) -> bool:
        return sys.getallocatedblocks() > FULL_GROWTH * self._blocks_at_full

    def _collect(self, generation: int) -> None:
        gc.collect(generation)
        self.collections[generation] += 1
