"""The app as a user meets it: first launch, the contract object names, errors, models, drag and drop."""

from pathlib import Path

import pytest
from gui_helpers import open_clip, wait_stylized
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QPushButton, QWidget

from pipeline import __version__
from vdiff_gui import startup
from vdiff_gui.tasks import start_task

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def test_first_launch_opens_the_sample_clip_with_a_fast_style_preview(make_window, qtbot, monkeypatch):
    monkeypatch.setitem(startup.SAMPLE, "width", 128)  # the real one is 480x270; small keeps the test quick
    monkeypatch.setitem(startup.SAMPLE, "height", 72)
    monkeypatch.setitem(startup.SAMPLE, "frames", 12)
    window = make_window()
    with qtbot.waitSignal(window.documents.clip_opened, timeout=20000):
        start_task(startup.startup(window, None))
    sample = startup.sample_clip_path()
    assert window.state.clip_path == sample and window.state.params.engine == "fast-style"
    wait_stylized(qtbot, window, 0)
    assert window.device_label.text() == "device: cpu"
    assert window.windowTitle() == f"vdiff {__version__} — vdiff-sample.mp4[*]" and not window.isWindowModified()
    made = sample.stat().st_mtime_ns
    assert startup.ensure_sample_clip() == sample and sample.stat().st_mtime_ns == made  # generated once


def test_contract_object_names(window):
    for name in ("timeline", "beforeView", "afterView", "paramPanel"):
        assert window.findChild(QWidget, name) is not None, name
    for name in ("renderButton", "exportButton"):
        assert isinstance(window.findChild(QPushButton, name), QPushButton), name
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Edit", "View", "Help"]


def test_a_file_that_is_not_a_video_shows_a_message_and_the_app_goes_on(window, qtbot, tmp_path, small_clip):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    window.documents.open_clip(bad)
    qtbot.waitUntil(window.banner.isVisible, timeout=10000)
    assert "Cannot open the video" in window.banner.label.text() and "not a video file" in window.banner.label.text()
    assert window.state.info is None
    open_clip(qtbot, window, small_clip)
    assert not window.banner.isVisible()


def test_dropping_a_video_on_the_window_opens_it(window, qtbot, small_clip):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(small_clip))])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(50, 50), *args)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(window.documents.clip_opened, timeout=10000):
        QApplication.sendEvent(window, QDropEvent(QPointF(50, 50), *args))
    assert window.state.clip_path == small_clip


def test_a_model_that_is_not_cached_offline_shows_the_model_error(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.state.edit(engine="diffusion", model="nobody/no-such-model")
    qtbot.waitUntil(window.banner.isVisible, timeout=180000)
    text = window.banner.label.text()
    assert text.startswith("Preview failed:") and "nobody/no-such-model" in text
    assert window.compare.after_view.showing_original
    qtbot.waitUntil(lambda: window.param_panel.model.hint.text() != "", timeout=10000)
    assert "not in the local cache" in window.param_panel.model.hint.text()


def test_out_of_memory_offers_the_lower_memory_settings(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.show_error("Render failed: the CUDA ran out of memory at 512x512", "out_of_memory", retry_render=False)
    assert window.banner.button_texts()[0] == "Use lower memory and retry"
    window.banner.trigger("Use lower memory and retry")
    assert window.state.params.low_memory and not window.banner.isVisible()


def test_diffusion_preview_loads_the_model_on_the_worker(window, qtbot, small_clip, tmp_path):
    import tiny_models

    model = tiny_models.make_tiny_sd_folder(tmp_path / "tiny-sd")
    open_clip(qtbot, window, small_clip)
    markers = []  # the after view's marker after each step event (the window's slot runs first)
    window.worker.step_changed.connect(lambda *_: markers.append(window.compare.after_view.marker()))
    window.state.edit(engine="diffusion", model=str(model), steps=4, strength=0.5, guidance=1.0, max_side=64)
    assert window.compare.after_view.marker() == "updating…"
    wait_stylized(qtbot, window, 0, timeout=60000)
    # the preview's progress, shown (over the last frame shown, or over the original when none was stylized yet)
    assert [m.replace("rendering preview…", "updating…") for m in markers[:2]] == [
        "updating… step 1 / 2", "updating… step 2 / 2"]
    assert window.compare.after_view.image().width() == 64
    assert window.device_label.text() == "device: cpu"
    assert window.param_panel.model.hint.text() == "✓ diffusers folder"


def test_about_shows_versions_device_and_gpu_memory(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    window.actions["about"].trigger()
    qtbot.waitUntil(lambda: getattr(window, "about_box", None) is not None and window.about_box.isVisible(), timeout=30000)
    text = window.about_box.text()
    assert f"vdiff {__version__}" in text and "PySide6" in text and "torch" in text
    assert "Engine device" in text and ">cpu<" in text and "GPU memory" in text


def test_recent_files_menu_reopens_a_clip(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.recent_menu.aboutToShow.emit()
    entries = [a.text() for a in window.recent_menu.actions() if a.text()]
    assert entries[0] == str(small_clip.resolve()) and "Clear Recent" in entries
    window.state.set_clip(None)
    with qtbot.waitSignal(window.documents.clip_opened, timeout=10000):
        window.recent_menu.actions()[0].trigger()
    assert window.state.clip_path == small_clip.resolve()


def test_a_preview_that_failed_is_marked_so_not_left_rendering(window, qtbot, small_clip):
    # no model fails at once, usually before the slicer's original arrives: that original must not say "rendering"
    open_clip(qtbot, window, small_clip)
    after = window.compare.after_view
    for index in (0, 9):
        window.banner.hide()
        window.state.edit(engine="diffusion", model="") if index == 0 else window.state.set_frame(index)
        qtbot.waitUntil(window.banner.isVisible, timeout=20000)
        qtbot.waitUntil(lambda: window.compare.before_view.frame_index == index, timeout=10000)
        qtbot.wait(300)  # the slicer's frame and any late event are in
        assert after.frame_index == index and after.showing_original
        assert after.marker() == "no preview: see the message above"
        assert "needs a model" in window.banner.label.text()
    window.state.edit(engine="fast-style")  # a preview that works: the failure's banner goes
    wait_stylized(qtbot, window, 9)
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=5000)


def test_a_render_that_failed_keeps_its_banner_until_a_render_is_asked_for_again(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    window.state.edit(engine="diffusion", model="")
    qtbot.waitUntil(lambda: window.banner.text().startswith("Preview failed:"), timeout=20000)
    with qtbot.waitSignal(window.jobs.failed, timeout=20000):
        window.jobs.render_range()
    qtbot.waitUntil(lambda: window.banner.text().startswith("Render failed:"), timeout=5000)
    window.state.edit(engine="fast-style")
    wait_stylized(qtbot, window, 0)
    assert window.banner.text().startswith("Render failed:")  # a preview working says nothing of the render
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.jobs.render_range()
    assert not window.banner.isVisible()
    qtbot.waitUntil(lambda: window.jobs.job_state == "idle", timeout=30000)
