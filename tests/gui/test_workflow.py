"""Projects and exports as an editor user expects: the unsaved marker and prompt, remembered export
choices, overwrite confirmation, past exports; the diffusion strength; failures and closing mid-load."""

import asyncio

import numpy as np
import pytest
from gui_helpers import open_clip
from PySide6.QtWidgets import QLabel

from pipeline.footage import footage_frames
from pipeline.video import VideoReader
from vdiff_gui import startup
from vdiff_gui.settings import AppSettings
from vdiff_gui.tasks import start_task

pytestmark = pytest.mark.gui


def test_unsaved_edits_mark_the_title_and_closing_asks(window, qtbot, small_clip, tmp_path):
    open_clip(qtbot, window, small_clip)
    assert not window.isWindowModified() and window.windowTitle().endswith("small.mp4[*]")
    window.state.edit(style="8")
    assert window.isWindowModified()
    window.auto_save_answer = "cancel"
    assert not window.close() and window.isVisible()  # Cancel: nothing happens
    window.documents.project_path = tmp_path / "scene.vdiff"  # "Save" saves to the project's file
    window.auto_save_answer = "save"
    assert window.close()
    assert (tmp_path / "scene.vdiff").exists() and not window.state.modified


def test_discarding_closes_and_saving_clears_the_marker(window, qtbot, small_clip, tmp_path):
    open_clip(qtbot, window, small_clip)
    window.state.set_in_point(3)
    assert window.isWindowModified()
    window.documents.save_project(tmp_path / "p.vdiff")
    assert not window.isWindowModified() and window.windowTitle().endswith("p.vdiff[*]")
    window.state.edit(style="2")
    window.auto_save_answer = "discard"
    assert window.close()


def test_export_remembers_its_choices_confirms_overwriting_and_lists_past_exports(window, qtbot, small_clip, tmp_path):
    open_clip(qtbot, window, small_clip)
    window.state.set_range(0, 3)
    folder = tmp_path / "exports"
    folder.mkdir()
    dialog = window.open_export_dialog()
    assert dialog.history.item(0).text() == "(none yet)" and not dialog.show_folder.isEnabled()
    dialog.set_format("h265")
    dialog.crf.setValue(24)
    dialog.range_all.setChecked(True)
    dialog.path.setText(str(folder / "first.mp4"))
    with qtbot.waitSignal(window.jobs.export_done, timeout=30000):
        dialog.accept()
    qtbot.waitUntil(lambda: not window.jobs.busy)
    again = window.open_export_dialog()
    assert again.codec == "h265" and again.crf.value() == 24 and again.range_all.isChecked()
    assert again.path.text() == str(folder / "small-vdiff.mp4")  # the last folder
    entry = again.history.item(0)
    assert entry.text().startswith("✓ first.mp4 · 16 frames")
    assert "✓ frames: 16" in entry.toolTip()
    again.history.setCurrentItem(entry)
    assert again.show_folder.isEnabled() and again.selected_folder() == folder
    # the file is there: No keeps it and the dialog open with the reason
    again.path.setText(str(folder / "first.mp4"))
    made = (folder / "first.mp4").stat().st_mtime_ns
    again.auto_answer = False
    again.accept()
    assert again.isVisible() and not window.jobs.busy
    assert "Not exported" in again.findChild(QLabel, "exportError").text()
    again.auto_answer = True
    with qtbot.waitSignal(window.jobs.export_done, timeout=30000):
        again.accept()
    assert (folder / "first.mp4").stat().st_mtime_ns != made
    assert [e["output"] for e in AppSettings().export_history()] == [str(folder / "first.mp4")] * 2


def test_switching_to_diffusion_sets_strength_one_half_as_the_cli(window, qtbot):
    combo = window.param_panel.engine
    assert window.state.params.strength == 1.0
    combo.activated.emit(combo.findData("diffusion"))
    assert window.state.params.engine == "diffusion" and window.state.params.strength == 0.5
    window.state.undo_stack.undo()  # engine and strength: one step
    assert window.state.params.engine == "fast-style" and window.state.params.strength == 1.0
    window.state.edit(strength=0.8)  # a strength the user chose is kept
    combo.activated.emit(combo.findData("diffusion"))
    assert window.state.params.strength == 0.8
    window.state.edit(strength=0.5)
    combo.activated.emit(combo.findData("classical"))
    assert window.state.params.strength == 1.0


def test_a_failing_background_task_shows_in_the_window(window, qtbot):
    async def broken():
        await asyncio.sleep(0)
        raise OSError("disk unplugged")

    start_task(broken())
    qtbot.waitUntil(window.banner.isVisible, timeout=5000)
    assert "background task failed: OSError: disk unplugged" in window.banner.label.text()


def test_closing_during_a_model_load_says_closing_and_stops_the_worker(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    qtbot.waitUntil(lambda: window.device != "", timeout=30000)  # the first engine is loaded
    seen = []

    def close_while_loading(text):
        if text and not seen:
            seen.append((text, window.close()))  # the window's own slot saw the load begin first

    window.worker.loading_changed.connect(close_while_loading)
    window.state.edit(style="12")  # another style network: the worker loads a new engine
    qtbot.waitUntil(lambda: bool(seen), timeout=30000)
    assert seen[0] == ("loading the fast-style engine…", False)  # not closed yet: stopping first
    assert window.closing and window.banner.label.text().startswith("Closing… waiting for loading the fast-style")
    assert window.statusBar().currentMessage() == "closing…"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=15000)
    assert not window.worker.isRunning()


def test_the_first_launch_sample_is_a_photograph_on_a_camera_path(window, qtbot, monkeypatch):
    monkeypatch.setitem(startup.SAMPLE, "width", 128)
    monkeypatch.setitem(startup.SAMPLE, "height", 72)
    monkeypatch.setitem(startup.SAMPLE, "frames", 6)
    with qtbot.waitSignal(window.documents.clip_opened, timeout=30000):
        start_task(startup.startup(window, None))
    expected = list(footage_frames(6, 128, 72, scene=startup.SAMPLE["scene"]))
    with VideoReader(startup.sample_clip_path()) as reader:
        for index in (0, 5):
            error = np.abs(reader.frame(index).astype(int) - expected[index].astype(int)).mean()
            assert error < 4.0, index  # the footage, through the encoder
    assert not np.array_equal(expected[0], expected[5])  # the camera moves
