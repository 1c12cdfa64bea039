"""Settings persist (and bad stored values fall back); project files round-trip and bad ones change nothing."""

import json
import logging

import pytest
from gui_helpers import open_clip

from pipeline.request import StyleParams
from vdiff_gui.project_file import ProjectFileError, load_project
from vdiff_gui.settings import AppSettings, settings_path

pytestmark = pytest.mark.gui


def test_settings_round_trip(make_window, qtbot, small_clip):
    window = make_window()
    open_clip(qtbot, window, small_clip)
    window.state.edit(style="7", strength=0.5, device="cpu")
    window.actions["mode_wipe"].trigger()
    window.resize(900, 640)
    size = window.size()
    assert window.close()
    assert settings_path().exists()
    again = make_window()
    assert again.state.params.style == "7" and again.state.params.strength == 0.5
    assert again.state.params.device == "cpu" and again.param_panel.device.currentText() == "cpu"
    assert again.compare.mode == "wipe" and again.actions["mode_wipe"].isChecked()
    assert again.size() == size
    assert AppSettings().recent_files() == [str(small_clip.resolve())]


def test_bad_stored_values_fall_back_to_defaults_with_a_log_line(make_window, caplog):
    stored = AppSettings()
    stored.set_raw("render/params", "{this is not json")
    stored.set_raw("render/device", "tpu")
    stored.set_raw("view/compare_mode", "sideways")
    stored.set_raw("window/geometry", "garbage")
    stored.sync()
    with caplog.at_level(logging.WARNING, logger="vdiff_gui.settings"):
        window = make_window()
    assert window.state.params == StyleParams()
    assert window.compare.mode == "side-by-side"
    logged = caplog.text
    assert "render/params" in logged and "render/device" in logged and "view/compare_mode" in logged
    stored.set_raw("render/params", json.dumps({"engine": "fast-style", "strength": 7}))
    with caplog.at_level(logging.WARNING, logger="vdiff_gui.settings"):
        assert AppSettings().params() == StyleParams()  # strength 7 is out of range


def test_project_save_and_open_resumes_the_render(make_window, qtbot, small_clip, tmp_path):
    window = make_window()
    open_clip(qtbot, window, small_clip)
    window.state.edit(style="5")
    window.state.set_range(3, 8)
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.jobs.render_range()
    qtbot.waitUntil(lambda: not window.jobs.busy)
    window.state.set_frame(4)
    path = window.documents.save_project(tmp_path / "scene")
    assert path == tmp_path / "scene.vdiff" and window.windowTitle().endswith("scene.vdiff[*]")
    assert not window.isWindowModified()  # saved: no unsaved-changes mark
    data = json.loads(path.read_text())
    assert data["version"] == 2 and data["params"]["style"] == "5" and (data["in"], data["out"]) == (3, 8)
    assert window.close()

    reopened = make_window()
    with qtbot.waitSignal(reopened.documents.clip_opened, timeout=15000):
        reopened.documents.open_project(path)
    state = reopened.state
    assert state.params.style == "5" and (state.in_point, state.out_point, state.frame) == (3, 8, 4)
    assert state.undo_stack.count() == 0
    # the rendered frames are found again (same cache key): the band shows them and a render resumes
    qtbot.waitUntil(lambda: reopened.timeline.rendered_count >= 6, timeout=10000)
    with qtbot.waitSignal(reopened.worker.render_started, timeout=10000) as started:
        reopened.jobs.render_range()
    assert started.args == [6, 6]
    qtbot.waitUntil(lambda: not reopened.jobs.busy, timeout=10000)


@pytest.mark.reliability
@pytest.mark.parametrize("content, message", [
    ("{ not json", "not valid JSON"),
    (json.dumps({"version": 99, "source": "x.mp4", "params": {}}), "newer vdiff"),
    (json.dumps({"source": "x.mp4"}), "no version field"),
    (json.dumps({"version": 1, "source": "x.mp4", "params": {"strength": "high"}}), "bad parameters"),
])
def test_a_bad_project_file_gives_a_message_and_changes_nothing(window, qtbot, small_clip, tmp_path, content, message):
    open_clip(qtbot, window, small_clip)
    window.state.edit(style="3")
    window.state.set_range(2, 9)
    before = (window.state.params, window.state.in_point, window.state.out_point, window.state.clip_path)
    bad = tmp_path / "bad.vdiff"
    bad.write_text(content)
    assert window.documents.open_project(bad) is None
    assert message in window.banner.label.text() and window.banner.isVisible()
    assert (window.state.params, window.state.in_point, window.state.out_point, window.state.clip_path) == before
    assert bad.read_text() == content and window.documents.project_path is None
    with pytest.raises(ProjectFileError):
        load_project(bad)


def test_a_project_whose_video_is_missing_is_refused(window, tmp_path):
    path = tmp_path / "lost.vdiff"
    path.write_text(json.dumps({"version": 1, "source": str(tmp_path / "gone.mp4"), "params": {}}))
    assert window.documents.open_project(path) is None
    assert "is missing" in window.banner.label.text()
    assert window.state.info is None
