"""Export…: the dialog's choices become one request; missing frames are rendered; the file is verified."""

import pytest
from gui_helpers import open_clip
from PySide6.QtWidgets import QLabel, QPushButton

from pipeline.video import probe
from vdiff_gui.widgets.dialogs import verification_lines

pytestmark = pytest.mark.gui


def test_export_writes_a_verified_file_with_audio(window, qtbot, small_clip, tmp_path):
    open_clip(qtbot, window, small_clip)
    # part of the range is rendered already: the export reuses those frames and renders the rest
    window.state.set_range(2, 7)
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.jobs.render_range()
    window.state.set_range(2, 13)
    qtbot.waitUntil(lambda: not window.jobs.busy)
    window.findChild(QPushButton, "exportButton").click()
    dialog = window.export_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.set_format("h264")
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "styled.mp4"
    dialog.path.setText(str(target))
    assert dialog.audio.isChecked()
    with qtbot.waitSignal(window.jobs.export_done, timeout=30000) as done:
        dialog.accept()
    result = done.args[0]
    assert result["output"] == str(target)
    assert result["verification"]["ok"], result["verification"]
    # frames 2-7 came from the cache, and keyframe 10, which closed the first range's last segment
    assert result["total"] == 12 and result["rendered"] == 5
    info = probe(target)
    assert info.frame_count == 12 and info.has_audio
    assert (info.width, info.height) == (96, 64)
    box = window.export_box
    assert box is not None and box.isVisible()
    assert "Open Folder" in [b.text() for b in box.buttons()]
    assert "✓ audio: yes" in box.text() and "✓ frames: 12" in box.text()
    assert list(target.parent.iterdir()) == [target]  # no temporary file left beside it


def test_export_png_sequence_without_audio_and_a_bad_path_is_refused(window, qtbot, small_clip, tmp_path):
    open_clip(qtbot, window, small_clip)
    window.state.set_range(0, 3)
    dialog = window.open_export_dialog()
    dialog.set_format("prores")
    assert dialog.path.text().endswith(".mov") and not dialog.crf.isEnabled()
    dialog.path.setText(str(tmp_path / "missing-folder" / "x.mov"))
    dialog.accept()  # refused inside the dialog, which stays open; nothing starts
    error = dialog.findChild(QLabel, "exportError")
    assert dialog.isVisible() and error.isVisible() and "does not exist" in error.text()
    assert dialog.windowTitle() == "Export" and not window.jobs.busy and not window.banner.isVisible()
    dialog.path.setText(str(tmp_path / "x.mp4"))
    dialog.accept()
    assert "ProRes goes in a .mov file" in error.text() and dialog.isVisible()
    dialog.reject()
    dialog = window.open_export_dialog()
    dialog.set_format("png")
    assert not dialog.audio.isEnabled()
    dialog.path.setText(str(tmp_path / "frames"))
    with qtbot.waitSignal(window.jobs.export_done, timeout=20000) as done:
        dialog.accept()
    assert done.args[0]["verification"]["ok"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:06d}.png" for i in range(4)]


def test_verification_lines_say_what_mismatched():
    lines = verification_lines({"ok": False, "checks": [
        {"name": "frames", "expected": 12, "actual": 12, "ok": True},
        {"name": "audio", "expected": True, "actual": False, "ok": False},
    ]})
    assert lines == ["✓ frames: 12", "✗ audio: no (expected yes)"]
