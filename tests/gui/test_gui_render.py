"""Rendering the in/out range: progress, pause/resume, cancel, the cache, and closing mid-render."""

import numpy as np
import pytest
from gui_helpers import open_clip, shown_pixels
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from pipeline.cache import FrameCache, render_key
from pipeline.engines import create_engine
from pipeline.render import cache_description
from pipeline.request import RenderRequest, StyleParams
from pipeline.video import probe
from vdiff_gui.render_worker import RenderWorker

pytestmark = pytest.mark.gui


def cache_entry(path, params, start=0):
    """The cache entry a render of `path` from `start` with `params` fills."""
    return FrameCache().entry(render_key(probe(path), cache_description(create_engine(params), start)))


def record(worker):
    events = []
    worker.render_started.connect(lambda total, cached: events.append(("started", total, cached)))
    worker.progress_changed.connect(lambda done, total, fps: events.append(("progress", done, total)))
    worker.render_finished.connect(lambda result: events.append(("finished", result["total"])))
    worker.render_cancelled.connect(lambda: events.append(("cancelled",)))
    worker.render_failed.connect(lambda message, kind: events.append(("failed", message)))
    return events


def test_render_gives_progress_in_order_and_a_complete_cache(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.state.edit(style="4")
    window.state.set_range(3, 12)
    events = record(window.worker)
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        qtbot.mouseClick(window.findChild(QPushButton, "renderButton"), Qt.MouseButton.LeftButton)
    assert events[0][0] == "started" and events[0][1] == 10
    assert [e[1] for e in events if e[0] == "progress"] == list(range(1, 11))
    assert events[-1] == ("finished", 10)
    assert set(range(3, 13)) <= cache_entry(small_clip, window.state.params, 3).indices()
    qtbot.waitUntil(lambda: window.jobs.job_state == "idle" and window.timeline.rendered_count >= 10)
    assert "done: 10 frames" in window.render_bar.status.text()
    # the after view followed the render to its last frame, which is the cached one
    assert window.state.frame == 12 and window.actions["follow_render"].isChecked()
    qtbot.waitUntil(lambda: window.compare.after_view.frame_index == 12)
    assert np.array_equal(shown_pixels(window.compare.after_view), cache_entry(small_clip, window.state.params, 3).load(12))


def test_pause_holds_the_render_and_resume_finishes_it(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.state.edit(style="9")
    events = record(window.worker)
    window.worker.pause()  # takes hold before the first frame, so the render cannot finish first
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.render_bar.render_button.click()
    window.render_bar.pause_button.click()
    assert window.jobs.job_state == "paused" and window.render_bar.pause_button.text() == "Resume"
    qtbot.wait(300)
    assert not [e for e in events if e[0] == "progress"]
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.render_bar.pause_button.click()
    assert [e[1] for e in events if e[0] == "progress"] == list(range(1, 17))


def test_cancel_gives_cancelled_and_never_finished(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.state.edit(style="11")
    events = record(window.worker)
    window.worker.pause()
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.render_bar.render_button.click()
    assert window.render_bar.cancel_button.isEnabled()
    with qtbot.waitSignal(window.worker.render_cancelled, timeout=10000):
        window.render_bar.cancel_button.click()
    qtbot.waitUntil(lambda: window.jobs.job_state == "idle")
    qtbot.wait(200)
    assert [e[0] for e in events] == ["started", "cancelled"]
    assert "cancelled" in window.render_bar.status.text()
    # the window is usable afterwards: a new render runs to the end
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.render_bar.render_button.click()


def test_closing_during_an_export_stops_the_worker_and_leaves_no_file(make_window, qtbot, small_clip, tmp_path):
    window = make_window()
    open_clip(qtbot, window, small_clip)
    out = tmp_path / "export"
    out.mkdir()
    window.worker.pause()
    dialog = window.open_export_dialog()
    dialog.path.setText(str(out / "clip.mp4"))
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        dialog.accept()
    window.auto_answer = False  # "Stop the render and close?" -> No: nothing happens
    assert not window.close()
    assert window.isVisible() and window.worker.isRunning() and window.jobs.busy
    window.auto_answer = True
    window.close()  # does not block: the window says "closing…" until the worker has stopped
    assert window.closing and "closing…" in window.windowTitle() and window.banner.isVisible()
    assert window.banner.label.text().startswith("Closing… waiting for the render")
    assert not window.centralWidget().isEnabled()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10000)
    assert not window.worker.isRunning()
    assert list(out.iterdir()) == []  # neither the file nor a partial temp file


def test_worker_previews_latest_wins(qtbot, small_clip):
    worker = RenderWorker()
    worker.start()
    try:
        info, params = probe(small_clip), StyleParams(style="2")
        arrived = []
        worker.preview_ready.connect(lambda index, image, cached, params: arrived.append(index))
        for index in range(10):
            worker.submit_preview(info, params, index)
        qtbot.waitUntil(lambda: 9 in arrived, timeout=10000)
        qtbot.wait(200)
        assert arrived[-1] == 9 and len(arrived) <= 2  # the replaced ones never ran
        with qtbot.waitSignal(worker.render_failed, timeout=10000) as failed:
            worker.submit_render(RenderRequest(small_clip, params, start=40))
        assert "outside the clip" in failed.args[0]
    finally:
        worker.stop()
    assert not worker.isRunning()


def test_the_same_preview_asked_again_while_it_is_made_goes_on(qtbot, small_clip):
    """Asked again between its draft and its exact frame (from the worker's thread, so at that very moment),
    the preview in flight is not restarted: one draft, one exact frame. A different request would stop it."""
    worker = RenderWorker()
    worker.idle_previews = False
    worker.start()
    try:
        info, params = probe(small_clip), StyleParams(style="2")
        drafts, ready = [], []

        def on_draft(index, image, draft_params):
            drafts.append(index)
            if len(drafts) == 1:
                worker.submit_preview(info, params, 7, box=(160, 90))  # the same request, still in flight

        worker.preview_draft.connect(on_draft, Qt.ConnectionType.DirectConnection)
        worker.preview_ready.connect(lambda index, image, cached, p: ready.append(index))
        worker.submit_preview(info, params, 7, box=(160, 90))
        qtbot.waitUntil(lambda: ready == [7], timeout=20000)
        qtbot.wait(300)
        assert drafts == [7] and ready == [7]
    finally:
        worker.stop()


def test_flicker_meter_gives_vdiff_metrics_number_on_its_sampled_pairs(window, qtbot, small_clip, tmp_path):
    import json
    import subprocess
    import sys

    from pipeline.render import render_frames
    from pipeline.request import OutputSpec

    open_clip(qtbot, window, small_clip)
    window.state.edit(style="6")
    window.state.set_range(2, 11)  # the out point is inclusive: frames 2..11
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.render_bar.render_button.click()
    qtbot.waitUntil(lambda: window.render_bar.score is not None)
    assert window.render_bar.flicker.text().startswith("flicker ")
    qtbot.waitUntil(lambda: window.render_bar.pairs == len(window.worker.flicker_pairs))
    sampled = list(window.worker.flicker_pairs)  # first frame of each pair the meter's thread measured
    assert sampled and sampled[0] == 2 and all(b - a >= 4 for a, b in zip(sampled, sampled[1:]))
    # the same frames, exported losslessly from the cache, measured by the CLI
    frames = tmp_path / "frames"
    request = RenderRequest(small_clip, window.state.params, 2, 12, OutputSpec(frames, codec="png"))
    assert list(render_frames(request))[-1].rendered == 0  # all from the cache the GUI filled
    result = subprocess.run([sys.executable, "-m", "pipeline", "metrics", str(small_clip), str(frames), "--start", "2", "--per-frame"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)["warp_error"]
    assert measured["pairs"] == 9
    # the clip is smaller than the meter's 320 px: its sampled pairs are vdiff metrics' pairs, exactly
    expected = np.mean([measured["output_per_pair"][index - 2] for index in sampled])
    assert window.render_bar.score == pytest.approx(expected, rel=1e-9)
