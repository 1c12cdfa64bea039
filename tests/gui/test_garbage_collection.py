"""Cyclic garbage is freed on the GUI thread, never on the worker thread whose allocations made it due.

Reference cycles hold the Python side of Qt objects, which Qt does not allow deleting off the GUI thread;
Python's automatic collector ran in render, slicer and download threads (collections of up to 12,000
objects there during the GUI tests) and the suite died of a SIGSEGV now and then.
"""

import gc
import os
import subprocess
import sys
import threading
import types

import pytest

from pipeline.garbage import collect_garbage
from vdiff_gui.garbage import GuiGarbageCollector

pytestmark = pytest.mark.gui


class Cycle:
    """Unreachable as soon as it is made: only the cyclic collector frees it; says on which thread."""

    def __init__(self, freed_on: list):
        self.me, self.freed_on = self, freed_on

    def __del__(self):
        self.freed_on.append(threading.current_thread().name)


def test_cyclic_garbage_made_on_a_worker_thread_is_freed_on_the_gui_thread(qtbot, gui_garbage_collector):
    freed_on, kept = [], []

    def work():
        Cycle(freed_on)
        kept.extend([] for _ in range(50_000))  # objects that stay: past Python's thresholds many times over

    worker = threading.Thread(target=work, name="render-like worker")
    worker.start()
    worker.join()
    assert freed_on == []  # not on the worker: it waits for the GUI thread's timer
    qtbot.waitUntil(lambda: bool(freed_on), timeout=5000)
    assert freed_on == [threading.main_thread().name]


def test_a_collection_the_pipeline_asks_for_on_its_thread_is_made_on_the_gui_thread(qtbot, gui_garbage_collector):
    freed_on = []

    def close_an_engine():  # as DiffusionEngine.close() does, on the render worker's thread
        Cycle(freed_on)
        collect_garbage()

    worker = threading.Thread(target=close_an_engine, name="render-like worker")
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: bool(freed_on), timeout=5000)
    assert freed_on == [threading.main_thread().name]


def due_for_a_full_collection(collector):
    for _ in range(collector.threshold[2] + 1):
        gc.collect(1)  # each counts one towards a full collection
    for _ in range(collector.threshold[1] + 1):
        gc.collect(0)


def test_a_full_collection_runs_only_after_the_memory_in_use_grew_by_a_quarter(qapp):
    collector = GuiGarbageCollector(qapp)  # its timer is not started: check() is called by hand
    gc.collect()
    collector._blocks_at_full = sys.getallocatedblocks()
    due_for_a_full_collection(collector)
    collector.check()
    assert collector.collections == [0, 1, 0]  # as while scrubbing: nothing grew, no full scan
    grown = [[] for _ in range(collector._blocks_at_full // 3)]  # long-lived objects: a third more blocks
    due_for_a_full_collection(collector)
    collector.check()
    assert collector.collections == [0, 1, 1] and len(grown) > 0
    collector.deleteLater()


def test_after_imports_everything_is_frozen_and_a_thorough_collection_still_frees_frozen_garbage(
        qapp, monkeypatch):
    collector = GuiGarbageCollector(qapp)
    for number in range(120):  # a library's modules, as torch's import adds them
        monkeypatch.setitem(sys.modules, f"vdiff_test_imported_{number}", types.ModuleType(f"imported_{number}"))
    freed_on = []
    holder = [Cycle(freed_on)]  # a window's object, say: in use when everything is frozen ...
    frozen_before = gc.get_freeze_count()
    collector.check()
    assert collector.freezes == 1 and collector.collections == [0, 0, 0]  # frozen, not scanned
    assert gc.get_freeze_count() >= frozen_before + 120  # the modules too: later full scans skip them
    holder.clear()  # ... then closed: frozen garbage
    gc.collect()
    assert freed_on == []
    collector.collect_from_any_thread()  # what the pipeline asks for when an engine closes
    assert freed_on == ["MainThread"] and collector.collections[2] == 1 and collector.freezes == 2
    collector.deleteLater()


APPLICATION = """
import gc
from vdiff_gui.app import make_application
from vdiff_gui.garbage import GuiGarbageCollector
app, loop = make_application()
make_application()
print(gc.isenabled(), len(app.findChildren(GuiGarbageCollector)))
"""


def test_the_application_collects_on_its_gui_thread():
    run = subprocess.run([sys.executable, "-c", APPLICATION], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "1"]  # automatic collection (in any thread) off; one collector
