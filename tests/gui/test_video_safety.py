"""The app side of issue #10: playback keeps the clip's rate, time steps follow timestamps, and an export
into a folder that is not empty never removes anything."""

import sys
import time
from pathlib import Path

import pytest
from gui_helpers import open_clip

pytestmark = pytest.mark.gui

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/real_clips.py
from real_clips import make_clip  # noqa: E402


def test_playback_advances_at_the_clips_rate(window, qtbot, small_clip, monkeypatch):
    """Clip time shown per second of wall time stays near 1 (loosely, ±25%: the machine is shared)."""
    monkeypatch.setenv("VDIFF_NO_AUDIO", "1")  # no sound device here; the clock is the elapsed timer
    open_clip(qtbot, window, small_clip)
    info = window.state.info
    shown = []
    window.state.frame_changed.connect(lambda index: shown.append((time.perf_counter(), index)))
    window.actions["play"].trigger()
    qtbot.waitUntil(lambda: bool(shown) and shown[-1][1] >= 10, timeout=5000)  # 16 frames at 12 fps: no loop yet
    window.actions["play"].trigger()
    (t0, first), (t1, last) = shown[0], shown[-1]
    rate = (info.frame_time(last) - info.frame_time(first)) / (t1 - t0)
    assert 0.75 <= rate <= 1.25, (rate, shown)


def test_a_second_step_follows_the_timestamps_on_a_variable_rate_clip(window, qtbot, tmp_path):
    times = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(20)]  # 30 fps, then 10 fps
    clip = make_clip(tmp_path / "vfr.mp4", frames=50, fps=30, frame_times=times)
    open_clip(qtbot, window, clip)
    window.state.set_frame(30)  # t = 1.0 s
    window.actions["forward_second"].trigger()
    assert window.state.frame == 40  # t = 2.0 s, not 30 + 1 s x the average rate
    window.actions["back_second"].trigger()
    assert window.state.frame == 30


def test_a_png_export_into_a_folder_that_is_not_empty_keeps_everything_in_it(window, qtbot, small_clip, tmp_path):
    folder = tmp_path / "Pictures"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    open_clip(qtbot, window, small_clip)
    window.state.set_range(0, 2)
    dialog = window.open_export_dialog()
    dialog.set_format("png")
    dialog.path.setText(str(folder))
    dialog.accept()  # refused inside the dialog, before any job starts
    assert "choose an empty or new folder" in dialog.error.text() and dialog.isVisible() and not window.jobs.busy
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    dialog.reject()
    dialog = window.open_export_dialog()
    dialog.set_format("png")
    dialog.path.setText(str(folder))
    dialog.overwrite.setChecked(True)
    with qtbot.waitSignal(window.jobs.export_done, timeout=20000) as done:
        dialog.accept()
    assert done.args[0]["verification"]["ok"]
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png", "frame_000002.png", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "keep me"
