"""The frame slicer (off-thread reads, latest wins, view-size frames, playback's ring), the proxy in the window, Follow Render."""

import threading
import time

import numpy as np
import pytest
from gui_helpers import core_stylized, open_clip, shown_pixels, wait_stylized

from pipeline.cache import CacheEntry
from pipeline.engines.base import resize_to
from pipeline.video import VideoReader, probe
from vdiff_gui.frame_slicer import PLAYBACK, RING_FRAMES, FrameSlicer
from vdiff_gui.images import qimage_to_array

pytestmark = pytest.mark.gui


@pytest.fixture
def slicer(qapp, small_clip):
    made = FrameSlicer()
    made.set_source(probe(small_clip))
    yield made
    made.close()


def test_frames_come_scaled_to_the_view_with_the_cached_stylized_frame(slicer, small_clip, tmp_path):
    (tmp_path / "entry").mkdir()
    entry = CacheEntry(tmp_path / "entry")
    stylized = np.full((64, 96, 3), 77, np.uint8)
    entry.store(5, stylized)
    slicer.set_entry(entry)
    slicer.set_display_size((48, 40))  # 96x64 fits as 48x32
    got = []
    slicer.frame_sliced.connect(got.append)
    with slicer.force_sync():
        slicer.request(5)
        slicer.request(6)
    five, six = got
    with VideoReader(small_clip) as reader:
        assert np.array_equal(qimage_to_array(five.before), resize_to(reader.frame(5), (48, 32)))
    assert np.array_equal(qimage_to_array(five.after), np.full((32, 48, 3), 77, np.uint8))
    assert six.after is None  # not in the cache


class _GatedEntry(CacheEntry):
    """A cache entry whose reads wait for a gate: the test changes the slicer's entry during one."""

    def __init__(self, folder, reading, gate):
        super().__init__(folder)
        self.reading, self.gate = reading, gate

    def load(self, index):
        self.reading.set()
        self.gate.wait(10)
        return super().load(index)


def test_a_frame_read_from_the_entry_of_settings_edited_since_comes_without_its_stylized_frame(slicer, qtbot,
                                                                                               tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    reading, gate = threading.Event(), threading.Event()
    entry = _GatedEntry(old, reading, gate)
    entry.store(5, np.full((64, 96, 3), 77, np.uint8))
    slicer.set_entry(entry)
    got = []
    slicer.frame_sliced.connect(got.append)
    slicer.request(5)
    assert reading.wait(10)  # the slicer's thread reads the old settings' frame now
    slicer.set_entry(CacheEntry(new))  # the settings were edited: their entry has no frame 5 yet
    gate.set()
    qtbot.waitUntil(lambda: bool(got))
    assert got[0].index == 5 and not got[0].before.isNull()
    assert got[0].after is None  # the old look is not shown as the new settings' frame
    slicer.set_entry(CacheEntry(old))  # the same folder as a frame's entry: its stylized frame is kept
    slicer.request(5)
    qtbot.waitUntil(lambda: len(got) == 2)
    assert got[1].after is not None


def test_a_frame_delivered_after_an_edit_comes_without_the_stylized_frame_of_the_settings_before(slicer, qtbot,
                                                                                               tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    entry = CacheEntry(old)
    entry.store(5, np.full((64, 96, 3), 77, np.uint8))
    slicer.set_entry(entry)
    got = []
    slicer.frame_sliced.connect(got.append)
    slicer.request(5)
    assert slicer.wait_until_idle()  # no events handled meanwhile: the frame read waits in the GUI's queue
    time.sleep(0.1)  # (sent just after the slicer's thread went idle)
    slicer.set_entry(CacheEntry(new))  # an edit, handled before the queued frame
    qtbot.waitUntil(lambda: bool(got))
    assert got[0].index == 5 and not got[0].before.isNull()
    assert got[0].after is None  # the old look is not shown as the new settings' frame


def test_frames_decoded_ahead_from_the_entry_of_settings_edited_since_come_without_their_stylized_frames(
        slicer, qtbot, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    entry = CacheEntry(old)
    for index in range(40):
        entry.store(index, np.full((64, 96, 3), 77, np.uint8))
    slicer.set_entry(entry)
    slicer.play(0, 0, 39)
    frames = []
    qtbot.waitUntil(lambda: (frame := slicer.take(0)) is not None and frames.append(frame) is None)
    qtbot.waitUntil(lambda: len(slicer._ring) == RING_FRAMES)  # decoded ahead with the old settings' frames
    slicer.set_entry(CacheEntry(new))
    frames.append(slicer.take(1))
    slicer.stop_playback()
    assert frames[0].after is not None and frames[1].index == 1 and frames[1].after is None


@pytest.mark.parametrize("loop", [1, 2, 6, 12])
def test_a_loop_shorter_than_the_ring_is_decoded_ahead_in_order(slicer, qtbot, loop):
    """Round a short loop, the frame after the clock's is also a few frames before it: it is ahead, not
    behind (taken as behind, the slicer decoded the due frame again and again, and playback showed none)."""
    in_point = 8
    slicer.play(in_point, in_point, in_point + loop - 1)
    qtbot.waitUntil(lambda: slicer.take(in_point) is not None)
    qtbot.waitUntil(lambda: len(slicer._ring) == RING_FRAMES)
    order = [in_point + (step % loop) for step in range(1, RING_FRAMES + 1)]
    assert [frame.index for frame in slicer._ring] == order
    taken = [slicer.take(index) for index in order]  # each one due in turn, and there at once
    slicer.stop_playback()
    assert [frame.index if frame is not None else None for frame in taken] == order


def test_the_newest_request_wins(slicer, qtbot):
    got = []
    slicer.frame_sliced.connect(got.append)
    for index in range(16):
        slicer.request(index)
    assert slicer.wait_until_idle()
    qtbot.waitUntil(lambda: bool(got) and got[-1].index == 15)
    qtbot.wait(100)
    assert [f.index for f in got][-1] == 15 and len(got) < 16  # superseded requests were dropped
    assert all(f.serial == slicer.latest_serial for f in got)


def test_playback_decodes_ahead_in_order_and_loops(slicer, qtbot):
    slicer.play(10, 8, 15)
    frames = []
    for index in (10, 11, 12, 13, 14, 15, 8, 9):
        qtbot.waitUntil(lambda: (frame := slicer.take(index)) is not None and frames.append(frame) is None)
    assert [f.index for f in frames] == [10, 11, 12, 13, 14, 15, 8, 9]
    assert all(f.serial == PLAYBACK and not f.before.isNull() for f in frames)
    # frames the clock passed are discarded: the next one due comes next
    slicer.play(2, 0, 15)
    qtbot.waitUntil(lambda: slicer.take(2) is not None)
    qtbot.waitUntil(lambda: (frame := slicer.take(14)) is not None and frames.append(frame) is None)
    assert frames[-1].index == 14
    slicer.stop_playback()


def test_a_large_clip_is_scrubbed_from_its_proxy(make_window, qtbot, sample_clip):
    window = make_window()
    window.proxies.box = (160, 90)  # the 320x180 sample is "large" next to this box
    open_clip(qtbot, window, sample_clip)
    qtbot.waitUntil(lambda: window.preview.proxy is not None, timeout=30000)
    path, width = window.preview.proxy
    assert width == 160 and window.findChild(type(window.proxy_label), "proxyLabel").text() == "scrub proxy ready"
    # a view narrower than the proxy (as a small window has): the frames are read from the proxy
    window.preview.box = (120, 80)
    window.preview.slicer.set_display_size(window.preview.box)
    with window.preview.slicer.force_sync():
        window.state.set_frame(20)
    shown = shown_pixels(window.compare.before_view)
    with VideoReader(path) as proxy:
        assert np.array_equal(shown, resize_to(proxy.frame(20), (shown.shape[1], shown.shape[0])))
    wait_stylized(qtbot, window, 20)  # and the stylized preview at that size
    assert window.compare.after_view.image().width() == shown.shape[1]


def test_stepping_during_a_render_stops_following_it(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    follow = window.actions["follow_render"]
    assert follow.isChecked()
    window.state.edit(style="3")
    window.worker.pause()  # takes hold before the first frame
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.render_bar.render_button.click()
    window.actions["next_frame"].trigger()
    assert window.state.frame == 1 and not follow.isChecked()
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.worker.resume()
    qtbot.wait(200)
    assert window.state.frame == 1  # not pulled to the render's frames
    # turned on again during the next render, the view jumps to the render's newest frame
    window.state.edit(style="8")
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.render_bar.render_button.click()
    qtbot.waitUntil(lambda: window.preview._fresh is not None, timeout=20000)
    follow.trigger()
    assert follow.isChecked() and window.state.frame == window.preview._fresh[0]
    qtbot.waitUntil(lambda: window.jobs.job_state == "idle", timeout=20000)


def test_settings_edited_during_a_render_are_not_shown_the_renders_frames(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    window.state.edit(style="3")
    window.worker.pause()  # takes hold before the first frame
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.render_bar.render_button.click()
    window.state.edit(style="8")  # the render goes on with style 3
    seen = []  # the after view as each of the render's frames arrives (after the preview took it)
    window.worker.frame_rendered.connect(
        lambda *_: seen.append((window.compare.after_view.marker(), window.compare.after_view.showing_original)))
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.worker.resume()
    assert not window.actions["follow_render"].isChecked()  # the render's frames are not the settings' on screen
    assert seen and all(marker is not None or original for marker, original in seen)
    wait_stylized(qtbot, window, 0)  # not pulled to the render's frames; once it is done, the new look's preview
    assert np.array_equal(shown_pixels(window.compare.after_view), core_stylized(small_clip, window.state.params, 0))
    assert window.timeline.rendered_count < 16  # the render's frames are not marked as the new settings'


def test_playback_shows_dropped_frames(window, qtbot, small_clip, monkeypatch):
    monkeypatch.setenv("VDIFF_NO_AUDIO", "1")
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    window.actions["play"].trigger()
    qtbot.waitUntil(lambda: window.state.frame >= 8, timeout=5000)
    # the clock jumps ahead 5 frames (as when the machine stalls): they are counted, not shown late
    before = window.preview.dropped
    window.playback._restart_clock(window.playback._now() + 5 / 12)
    qtbot.waitUntil(lambda: window.preview.dropped >= before + 4, timeout=3000)
    window.actions["play"].trigger()
    label = window.findChild(type(window.dropped_label), "droppedLabel")
    assert label.text() == f"dropped {window.preview.dropped}"
