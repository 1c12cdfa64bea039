"""Scrubbing, the compare view, live previews, the debounce, the timeline and playback."""

import numpy as np
import pytest
from gui_helpers import core_stylized, open_clip, shown_pixels, wait_stylized, wait_view_settled
from PySide6.QtCore import QPoint, Qt

from pipeline.video import VideoReader

pytestmark = pytest.mark.gui


def test_scrub_shows_the_source_frame_and_the_cores_stylized_frame(window, qtbot, sample_clip):
    open_clip(qtbot, window, sample_clip)
    wait_stylized(qtbot, window, 0)
    timeline = window.findChild(type(window.timeline), "timeline")
    index = 30
    with window.preview.slicer.force_sync():  # the slicer reads on this thread: the frame is there at once
        qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(timeline.x_of(index + 0.5)), timeline.height() // 2))
    assert window.state.frame == index
    before = window.findChild(type(window.compare.before_view), "beforeView")
    after = window.findChild(type(window.compare.after_view), "afterView")
    # the original first (before any preview arrives), frame-accurately
    assert before.frame_index == index
    with VideoReader(sample_clip) as reader:
        assert np.array_equal(shown_pixels(before), reader.frame(index))
    wait_stylized(qtbot, window, index)
    assert np.array_equal(shown_pixels(after), core_stylized(sample_clip, window.state.params, index))


def test_an_edit_triggers_exactly_one_preview_after_the_debounce(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    arrived = []
    window.worker.preview_ready.connect(lambda index, image, cached, params: arrived.append((index, cached)))
    requested = window.preview.previews_requested
    slider = window.param_panel.strength
    for value in (90, 75, 60):  # three quick edits
        slider.setValue(value)
    assert window.state.params.strength == 0.6
    assert window.preview.debounce_active and not arrived
    assert window.compare.after_view.marker() == "updating…"
    qtbot.waitUntil(lambda: len(arrived) == 1, timeout=5000)
    qtbot.wait(400)  # well past another debounce: nothing more comes
    assert arrived == [(0, False)]
    assert window.preview.previews_requested == requested + 1
    wait_stylized(qtbot, window, 0)
    expected = core_stylized(small_clip, window.state.params, 0)
    assert np.array_equal(shown_pixels(window.compare.after_view), expected)


def test_cached_frames_appear_at_once(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    with qtbot.waitSignal(window.worker.render_finished, timeout=15000):
        window.jobs.render_range()
    qtbot.waitUntil(lambda: window.timeline.rendered_count == 16)
    requested = window.preview.previews_requested
    for index in (3, 9, 15):
        window.state.set_frame(index)
        # read from the cache by the frame slicer, off the GUI thread: no request to the worker
        wait_stylized(qtbot, window, index, timeout=5000)
    with window.preview.slicer.force_sync():
        window.state.set_frame(4)
        assert window.compare.after_view.frame_index == 4 and not window.compare.after_view.showing_original
    assert window.preview.previews_requested == requested


def test_keyboard_moves_the_playhead_and_sets_in_out(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow())
    window.timeline.setFocus()
    keys = qtbot.keyClick
    keys(window.timeline, Qt.Key.Key_Right)
    keys(window.timeline, Qt.Key.Key_Right)
    assert window.state.frame == 2
    keys(window.timeline, Qt.Key.Key_I)
    keys(window.timeline, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)  # one second = 12 frames
    assert window.state.frame == 14
    keys(window.timeline, Qt.Key.Key_O)
    assert (window.state.in_point, window.state.out_point) == (2, 14)
    keys(window.timeline, Qt.Key.Key_Left)
    assert window.state.frame == 13
    keys(window.timeline, Qt.Key.Key_End)
    assert window.state.frame == 15
    keys(window.timeline, Qt.Key.Key_Home)
    assert window.state.frame == 0
    keys(window.timeline, Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier)
    assert window.state.frame == 0


def test_wipe_and_after_only_modes(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    window.actions["mode_wipe"].trigger()
    after = window.compare.after_view
    assert not window.compare.before_view.isVisible() and after.wiping
    rect = after.image_rect(window.compare.before_view.image())
    qtbot.mousePress(after, Qt.MouseButton.LeftButton, pos=QPoint(int(rect.left() + rect.width() * 0.25), int(rect.center().y())))
    qtbot.mouseRelease(after, Qt.MouseButton.LeftButton)
    assert after.split() == pytest.approx(0.25, abs=0.02)
    window.actions["mode_after"].trigger()
    assert not window.compare.before_view.isVisible() and not after.wiping
    window.actions["zoom_100"].trigger()
    assert after.image_rect().width() == 96  # 100%: one image pixel per screen pixel
    window.actions["mode_side-by-side"].trigger()
    assert window.compare.before_view.isVisible()


def test_playback_runs_at_the_source_rate_and_marks_unrendered_frames(window, qtbot, small_clip, monkeypatch):
    monkeypatch.setenv("VDIFF_NO_AUDIO", "1")  # no sound device here; the clock is the elapsed timer
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    window.actions["play"].trigger()
    assert window.playback.playing
    qtbot.waitUntil(lambda: window.state.frame >= 6, timeout=3000)
    assert window.compare.after_view.marker() == "not rendered: showing the original"
    assert window.compare.before_view.frame_index == window.compare.after_view.frame_index == window.state.frame
    window.actions["play"].trigger()
    assert not window.playback.playing


def test_a_scrub_shows_a_draft_first_then_the_exact_frame(window, qtbot, sample_clip):
    from vdiff_gui.preview import DRAFT

    window.worker.idle_previews = False  # frame 37 must not be prepared ahead (that skips the draft)
    open_clip(qtbot, window, sample_clip)
    wait_stylized(qtbot, window, 0)
    wait_view_settled(qtbot, window)  # a resize after this would ask for frame 37 again: a second draft
    assert window.preview.box is not None  # fitted to the view: drafts are made for it
    drafts, exact = [], []
    window.worker.preview_draft.connect(lambda index, image, params: drafts.append((index, image)))
    window.worker.preview_ready.connect(lambda index, image, cached, params: exact.append((index, image)))
    after = window.compare.after_view
    seen = []  # (marker, shown size) at each poll

    def exact_shown():
        image = after.image()
        seen.append((after.marker(), (image.width(), image.height()) if image is not None else None))
        return after.frame_index == 37 and after.marker() is None and not after.showing_original

    window.state.set_frame(37)
    # the frame can be on screen before this test's slot gets the worker's signal: receivers of a signal from
    # another thread are posted one at a time, the window's first (docs/desktop.md)
    qtbot.waitUntil(lambda: exact_shown() and bool(exact), timeout=15000)
    assert [i for i, _ in drafts] == [37] and [i for i, _ in exact] == [37]
    draft, final = drafts[0][1], exact[0][1]
    assert draft.shape[1] <= final.shape[1] // 2 + 1 and draft.shape[0] <= final.shape[0] // 2 + 1  # a quarter
    assert (DRAFT, (draft.shape[1], draft.shape[0])) in seen  # the draft was on screen, marked, before the exact one
    assert np.array_equal(shown_pixels(after), final)
    assert np.array_equal(final, core_stylized(sample_clip, window.state.params, 37))  # the view fits the clip


def test_a_scrub_between_keyframes_already_made_needs_no_draft(window, qtbot, sample_clip):
    from pipeline.keyframes import plan_keyframes

    window.worker.idle_previews = False  # only the scrubs below make keyframes
    open_clip(qtbot, window, sample_clip)
    wait_stylized(qtbot, window, 0)
    wait_view_settled(qtbot, window)  # keyframes are kept per view size
    plan = plan_keyframes(sample_clip, window.state.params, 0, window.state.info.frame_count)
    a, b = next((a, b) for a, b in zip(plan.keyframes, plan.keyframes[1:]) if a > 0 and b - a >= 3)
    drafts, exact = [], []
    window.worker.preview_draft.connect(lambda index, image, params: drafts.append(index))
    window.worker.preview_ready.connect(lambda index, image, cached, params: exact.append((index, image)))
    window.state.set_frame(a + 1)  # its keyframes are made for it: a draft first
    wait_stylized(qtbot, window, a + 1)
    window.state.set_frame(a + 2)  # the same keyframes, kept: one in-between, as cheap as a draft
    wait_stylized(qtbot, window, a + 2)
    qtbot.waitUntil(lambda: len(exact) >= 2, timeout=5000)  # on screen first, the signal may come after
    assert drafts == [a + 1] and [i for i, _ in exact] == [a + 1, a + 2]
    assert np.array_equal(exact[1][1], core_stylized(sample_clip, window.state.params, a + 2))


def shrink_views(qtbot, window, monkeypatch):
    """Views smaller than the 320x180 sample clip: previews are then made at the view's size, and prepared
    (into a store of this test's: the process keeps what other tests prepared)."""
    from pipeline.keyframes import preview as keyframe_previews

    monkeypatch.setattr(keyframe_previews, "_frames", keyframe_previews.PreviewFrames())
    window.resize(560, 420)
    qtbot.waitUntil(lambda: window.preview.box is not None and window.preview.box[1] < 170, timeout=5000)


def test_idle_time_prepares_previews_and_a_scrub_onto_one_needs_no_draft(window, qtbot, sample_clip, monkeypatch):
    from pipeline.engines import create_engine
    from pipeline.previews import preview_frame
    from vdiff_gui.frame_slicer import fit_within

    shrink_views(qtbot, window, monkeypatch)
    open_clip(qtbot, window, sample_clip)
    wait_stylized(qtbot, window, 0)
    info, params = window.state.info, window.state.params
    size = fit_within(info.width, info.height, window.preview.box)
    assert size[0] < info.width
    qtbot.waitUntil(lambda: not window.worker.preparing, timeout=60000)  # the whole clip fits in memory
    drafts = []
    window.worker.preview_draft.connect(lambda index, image, params: drafts.append(index))
    window.state.set_frame(30)
    wait_stylized(qtbot, window, 30)
    assert drafts == []  # prepared: shown at once, no draft first
    engine = create_engine(params)
    engine.prepare()
    with VideoReader(sample_clip) as reader:
        expected = preview_frame(engine, reader, 30, size=size)[0]  # the scrub preview at the view's size
    engine.close()
    assert np.array_equal(shown_pixels(window.compare.after_view), expected)


def test_a_scrub_while_previews_are_prepared_is_answered(window, qtbot, sample_clip, monkeypatch):
    shrink_views(qtbot, window, monkeypatch)
    open_clip(qtbot, window, sample_clip)
    wait_stylized(qtbot, window, 0)
    for index in (47, 3, 25):  # each stops the idle work; the work goes on around the new frame after
        window.state.set_frame(index)
        wait_stylized(qtbot, window, index)
    qtbot.waitUntil(lambda: not window.worker.preparing, timeout=60000)


@pytest.fixture(scope="module")
def long_gop_clip(tmp_path_factory):
    """48 frames 640x360 in one GOP: out of order, each frame is decoded from the clip's start."""
    from pipeline.footage import make_footage_clip

    return make_footage_clip(tmp_path_factory.mktemp("gop") / "gop.mp4", frames=48, width=640, height=360, gop=240,
                             audio=False)


def test_before_its_proxy_a_long_gop_clip_gets_its_keyframes_prepared(window, qtbot, long_gop_clip, monkeypatch):
    # reading its original out of order costs a seek from the clip's start a frame: keyframes in reading order
    from pipeline.engines import create_engine
    from pipeline.keyframes import plan_keyframes
    from pipeline.keyframes.preview import prepared
    from pipeline.previews import preview_frame
    from vdiff_gui.frame_slicer import fit_within

    clip = long_gop_clip
    shrink_views(qtbot, window, monkeypatch)
    window.proxies.enabled = False  # the proxy never comes: the original is read throughout
    open_clip(qtbot, window, clip)
    wait_stylized(qtbot, window, 0)
    info, params = window.state.info, window.state.params
    size = fit_within(info.width, info.height, window.preview.box)
    qtbot.waitUntil(window.proxies.scanned, timeout=30000)
    engine = create_engine(params)
    keyframes = plan_keyframes(clip, params, 0, info.frame_count).keyframes
    # the scan's end is posted to the window, which only then starts the preparation: wait for its work
    qtbot.waitUntil(lambda: all(prepared(engine, clip, k, 0, size) for k in keyframes), timeout=60000)
    qtbot.waitUntil(lambda: not window.worker.preparing, timeout=10000)  # then it ends
    between = next(i for i in range(info.frame_count) if i not in keyframes and i > 24)
    assert not prepared(engine, clip, between, 0, size)  # frames between wait for cheap reads
    drafts = []
    window.worker.preview_draft.connect(lambda index, image, params: drafts.append(index))
    window.state.set_frame(between)
    wait_stylized(qtbot, window, between)
    assert drafts == []  # its two keyframes kept: one in-between, no draft
    engine.prepare()
    with VideoReader(clip) as reader:
        expected = preview_frame(engine, reader, between, size=size)[0]
    engine.close()
    assert np.array_equal(shown_pixels(window.compare.after_view), expected)


def test_playing_stops_the_idle_preparation_and_stopping_resumes_it(window, qtbot, long_gop_clip, monkeypatch):
    from pipeline.engines import create_engine
    from pipeline.keyframes import plan_keyframes
    from pipeline.keyframes import preview as keyframe_previews
    from pipeline.keyframes.preview import prepared
    from vdiff_gui.frame_slicer import fit_within

    monkeypatch.setenv("VDIFF_NO_AUDIO", "1")
    shrink_views(qtbot, window, monkeypatch)
    window.proxies.enabled = False
    open_clip(qtbot, window, long_gop_clip)
    wait_stylized(qtbot, window, 0)
    qtbot.waitUntil(window.proxies.scanned, timeout=30000)
    info, params, preview = window.state.info, window.state.params, window.preview
    size, engine = fit_within(info.width, info.height, preview.box), create_engine(params)
    keyframes = plan_keyframes(long_gop_clip, params, 0, info.frame_count).keyframes

    def kept() -> int:
        return sum(prepared(engine, long_gop_clip, k, 0, size) for k in keyframes)

    qtbot.waitUntil(lambda: kept() == len(keyframes), timeout=60000)  # what the scan's end started
    qtbot.waitUntil(lambda: not window.worker.preparing, timeout=10000)
    monkeypatch.setattr(keyframe_previews, "_frames", keyframe_previews.PreviewFrames())  # from nothing again
    window.worker.prepare_around(info, params, 0, 0, preview.box, preview.proxy)
    window.actions["play"].trigger()  # playback shows rendered frames only: its decoding gets the cores
    qtbot.waitUntil(lambda: not window.worker.preparing, timeout=2000)
    during = kept()
    qtbot.wait(300)
    assert kept() == during
    window.actions["play"].trigger()
    qtbot.waitUntil(lambda: kept() == len(keyframes), timeout=60000)  # the paused frame's preview resumes it
    assert during < len(keyframes)
