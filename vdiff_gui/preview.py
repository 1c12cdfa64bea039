"""What the compare view shows for the current frame, without ever blocking the GUI thread.

The frame slicer (frame_slicer.py) reads the original (from the scrubbing proxy once it is made),
reads the stylized frame from the cache when it is there, scales both to the view's pixel size and
makes the QImages, all off the GUI thread; the newest request wins and the view keeps the last frame
meanwhile. A frame not in the cache is asked of the worker at the view's size (renders and exports
stay full size). Parameter edits are debounced before a preview is asked for. Playback takes frames
the slicer decoded ahead and counts the ones it had to drop. During a render the view follows the
newest frame while "Follow render" is on; moving the playhead yourself (scrub, step, play) turns it off.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer, Signal

from pipeline.cache import CacheEntry
from vdiff_gui.frame_slicer import PLAYBACK, RESTART_GAP, FrameSlicer, SlicedFrame
from vdiff_gui.images import array_to_qimage, qimage_to_array
from vdiff_gui.project_state import ProjectState
from vdiff_gui.render_worker import RenderWorker
from vdiff_gui.widgets.compare_view import CompareView
from vdiff_gui.widgets.timeline import TimelineWidget

DEBOUNCE_MS = 250
RESIZE_SETTLE_MS = 150  # a window being resized asks for frames at its new size once it stops
PENDING = "rendering preview…"
NOT_RENDERED = "not rendered: showing the original"
UPDATING = "updating…"
DRAFT = "draft: sharpening…"  # a scrub's quick look, until the exact preview replaces it
FAILED = "no preview: see the message above"


class PreviewController(QObject):
    dropped_changed = Signal(int)  # frames playback could not show in time since it started
    follow_changed = Signal(bool)  # the "Follow render" toggle
    proxy_changed = Signal(object)  # (path, width) of the clip's scrubbing proxy, or None
    source_shown = Signal(object)  # the source frame now on screen (HxWx3 uint8, view size), for the control preview

    def __init__(self, state: ProjectState, worker: RenderWorker, compare: CompareView,
                 timeline: TimelineWidget, report_error, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.worker, self.compare, self.timeline = state, worker, compare, timeline
        self._report_error = report_error
        self.slicer = FrameSlicer(self)
        self.entry: CacheEntry | None = None  # the worker's cache entry for state.params and the in point
        self._entry_start = 0
        self._rendered: set[int] = set()
        self.proxy: tuple[Path, int] | None = None
        self.box: tuple[int, int] | None = None  # the view's size in device pixels (None: 100% zoom)
        self.playing = False
        self.follow_render = True
        self.rendering = False
        self.dropped = 0
        self.previews_requested = 0
        self._moving_playhead = False  # set while following the render moves the playhead
        self._last_submitted: tuple | None = None
        self._fresh: tuple | None = None  # (index, array) of the newest rendered frame
        self._stylized: tuple | None = None  # (index, QImage) of the worker's newest preview
        self._draft: tuple | None = None  # (index, QImage) of its newest draft (a quick, smaller look)
        self._failed: tuple | None = None  # (index, params) of the preview that failed, until asked again
        self._due: tuple[int, bool] | None = None  # playback: (frame due, shown yet)
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self.request_preview)
        self._band_timer = QTimer(self, singleShot=True, interval=200)
        self._band_timer.timeout.connect(self.refresh_rendered)
        self._resize_timer = QTimer(self, singleShot=True, interval=RESIZE_SETTLE_MS)
        self._resize_timer.timeout.connect(self._update_box)
        state.clip_changed.connect(self._on_clip_changed)
        state.frame_changed.connect(self._on_frame_changed)
        state.params_changed.connect(self._on_params_changed)
        state.range_changed.connect(self._on_range_changed)
        worker.preview_ready.connect(self._on_preview_ready)
        worker.preview_draft.connect(self._on_preview_draft)
        worker.cache_entry_changed.connect(self._on_cache_entry_changed)
        worker.frame_rendered.connect(self._on_frame_rendered)
        worker.render_started.connect(self._on_render_started)
        worker.preview_failed.connect(self._on_preview_failed)
        worker.step_changed.connect(self._on_step)
        timeline.scrub_started.connect(self._on_user_moved)
        self.slicer.frame_sliced.connect(self._on_frame_sliced)
        compare.after_view.installEventFilter(self)
        compare.fit_changed.connect(lambda _: self._update_box())
        self._update_box()

    @property
    def debounce_active(self) -> bool:
        return self._debounce.isActive()

    def close(self) -> None:
        self.slicer.close()

    def set_playing(self, playing: bool) -> None:
        self.playing = playing
        if playing:
            self._on_user_moved()
            self.worker.stop_preparing()  # playback shows rendered frames only, and its decoding needs the cores
            self.dropped, self._due = 0, None
            self.dropped_changed.emit(0)
            fps = float(self.state.info.fps) if self.state.info is not None else 24.0
            self.slicer.play(self.state.frame, self.state.in_point, self.state.out_point, fps)
        else:
            self.slicer.stop_playback()
            self.show_current()

    def set_follow_render(self, follow: bool) -> None:
        """The "Follow render" toggle; turned on during a render, it jumps to the newest rendered frame."""
        if follow == self.follow_render:
            return
        self.follow_render = follow
        self.follow_changed.emit(follow)
        if follow and self.rendering and self._fresh is not None and not self.playing:
            self._move_playhead(self._fresh[0])

    def set_proxy(self, info, path: Path | None, width: int = 0) -> None:
        """The scrubbing proxy of `info` is ready (ignored if another clip was opened since)."""
        if info is not self.state.info or path is None:
            return
        self.proxy = (Path(path), width)
        self.slicer.set_proxy(path, width)
        self.proxy_changed.emit(self.proxy)
        self.prepare_while_idle(info)  # frames now read cheaply out of order: in-betweens too

    def prepare_while_idle(self, info) -> None:
        """Let the worker prepare previews around the playhead of `info` (ignored if another clip was opened
        since), e.g. once its shots are measured: keyframe plans then read nothing."""
        if info is self.state.info and not self.playing and not self.rendering:
            self.worker.prepare_around(info, self.state.params, self.state.frame, self.state.in_point, self.box,
                                       self.proxy)

    # showing frames
    def show_current(self, *_) -> None:
        info, index = self.state.info, self.state.frame
        if info is None:
            return
        if self.playing:
            self._show_due(index)
            return
        fresh = self._fresh[1] if self._fresh is not None and self._fresh[0] == index else None
        self.slicer.request(index, after=fresh, read_cache=index in self._rendered)
        if fresh is None and index not in self._rendered and not self._following:
            self.request_preview()  # in parallel with the slicer's read of the original

    @property
    def _following(self) -> bool:
        return self.rendering and self.follow_render

    def _on_frame_sliced(self, frame: SlicedFrame) -> None:
        if frame.serial == PLAYBACK:
            if self.playing and self._due == (frame.index, False):
                taken = self.slicer.take(frame.index)
                if taken is not None:
                    self._show_playback_frame(taken)
            return
        if frame.serial != self.slicer.latest_serial or frame.index != self.state.frame or self.playing:
            return  # stale: a newer request is on its way
        if frame.error is not None:
            self._report_error(frame.error, "error")
            return
        self.source_shown.emit(qimage_to_array(frame.before))  # a view-size copy: cheap
        after = frame.after
        if after is None and self._stylized is not None and self._stylized[0] == frame.index:
            after = self._stylized[1]  # the worker's preview came first
        if after is not None:
            self.compare.show_frame(frame.index, frame.before, after)
        elif self._draft is not None and self._draft[0] == frame.index:  # ... or its draft did
            self.compare.show_frame(frame.index, frame.before, self._draft[1], DRAFT)
        else:
            if frame.index in self._rendered and not self._following:
                self.request_preview()  # listed in the cache but unreadable: render it again
            self.compare.show_frame(frame.index, frame.before, None, self._marker_for(frame.index))

    def _marker_for(self, index: int) -> str:
        """What the after half says over the original of frame `index` while it has no stylized frame."""
        if self._following:
            return NOT_RENDERED
        return FAILED if self._failed == (index, self.state.params) else PENDING

    def _show_due(self, index: int) -> None:
        """Playback: show frame `index` if decoded ahead; count the frames the clock passed unshown."""
        if self._due is not None and index != self._due[0]:
            passed = self.slicer.distance(self._due[0], index)
            if passed <= RESTART_GAP:  # further: the user moved the playhead
                self.dropped += passed - 1 + (not self._due[1])
                self.dropped_changed.emit(self.dropped)
        self._due = (index, False)
        frame = self.slicer.take(index)
        if frame is not None:
            self._show_playback_frame(frame)

    def _show_playback_frame(self, frame: SlicedFrame) -> None:
        self._due = (frame.index, True)
        if frame.error is None:
            self.compare.show_frame(frame.index, frame.before, frame.after, None if frame.after else NOT_RENDERED)

    def request_preview(self) -> None:
        """Ask the worker for the current frame (latest wins there); skipped if just asked for."""
        self._debounce.stop()
        if self.state.info is None:
            return
        wanted = (self.state.info.path, self.state.params, self.state.frame, self.state.in_point, self.box)
        if wanted == self._last_submitted:
            return
        self._last_submitted, self._failed = wanted, None
        self.previews_requested += 1
        self.worker.submit_preview(self.state.info, self.state.params, self.state.frame, self.state.in_point,
                                   self.box, self.proxy)

    # the view's size
    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            self._resize_timer.start()
        return False

    def fitted_box(self) -> tuple[int, int] | None:
        """The after view's size in device pixels, which previews fit (None: zoomed to 100%, full size)."""
        if not self.compare.fit:
            return None
        view = self.compare.after_view
        ratio = view.devicePixelRatioF()
        return max(16, round(view.width() * ratio)), max(16, round(view.height() * ratio))

    def _update_box(self) -> None:
        box = self.fitted_box()
        if box != self.box:
            self.box = box
            self.slicer.set_display_size(box)
            if self.state.info is not None and not self.playing:
                self.show_current()

    # state and worker events
    def _on_clip_changed(self, info) -> None:
        self.entry, self._rendered, self._last_submitted, self._fresh, self._stylized = None, set(), None, None, None
        self._draft = None
        self.proxy = None
        self.slicer.set_source(info)
        self.timeline.set_rendered(set())
        if info is None:
            self.compare.clear("Open a video: File ▸ Open…, or drop a file here")
        # show_current follows from frame_changed, which set_clip emits after this

    def _on_frame_changed(self, index: int) -> None:
        if not self._moving_playhead:
            self._on_user_moved()
        self.show_current()

    def _on_user_moved(self) -> None:
        """The user moved the playhead (scrub, step, play) during a render: stop following it."""
        if self.rendering and not self._moving_playhead:
            self.set_follow_render(False)

    def _move_playhead(self, index: int) -> None:
        self._moving_playhead = True
        try:
            self.state.set_frame(index)  # show_current takes the fresh frame, no cache read
        finally:
            self._moving_playhead = False

    def _forget_entry(self) -> None:
        self.entry, self._rendered, self._fresh, self._stylized, self._draft = None, set(), None, None, None
        self.slicer.set_entry(None)
        self.timeline.set_rendered(set())
        self.timeline.set_keyframes([])

    def _on_params_changed(self, params) -> None:
        if self.rendering:
            self.set_follow_render(False)  # the render goes on with the settings it began with
        self._forget_entry()
        if self.state.info is not None:
            self.compare.set_after_marker(UPDATING)
            self._debounce.start()

    def _on_range_changed(self, in_point: int, out_point: int) -> None:
        # a consistent render's frames depend on where its range starts: another start, another cache entry
        if self.entry is not None and in_point != self._entry_start:
            if self.rendering:
                self.set_follow_render(False)  # the render's frames belong to the range it began with
            self._forget_entry()
            self._debounce.start()

    def _on_preview_ready(self, index: int, image, from_cache: bool, params) -> None:
        if params != self.state.params:  # made for settings edited since: the newer preview is coming
            return
        if self.entry is not None and self.entry.has(index):  # stored (frames with no history are)
            self._rendered.add(index)
            self.timeline.set_rendered(self._rendered)
        self.refresh_keyframes()
        if index == self.state.frame and not self.playing:
            self._stylized = (index, array_to_qimage(image))  # the view's size: a small copy
            self.compare.show_after(index, self._stylized[1])

    def _on_preview_draft(self, index: int, image, params) -> None:
        if params != self.state.params or index != self.state.frame or self.playing:
            return
        if self._stylized is not None and self._stylized[0] == index:  # the exact preview is there already
            return
        self._draft = (index, array_to_qimage(image))
        if self.compare.before_view.frame_index == index:  # else the slicer's original shows it when it comes
            self.compare.show_frame(index, self.compare.before_view.image(), self._draft[1], DRAFT)

    def _on_step(self, index: int, step: int, steps: int) -> None:
        """A diffusion preview's progress in its marker (a keyframed preview counts each keyframe's steps)."""
        if self.rendering or index != self.state.frame or self.playing:
            return  # a render's steps: the render bar shows those
        marker = self.compare.after_view.marker() or ""
        waiting = next((m for m in (PENDING, UPDATING) if marker.startswith(m)), None)
        if waiting is not None and self.compare.after_view.frame_index == index:
            self.compare.set_after_marker(f"{waiting} step {step} / {steps}")

    def _holds_current(self, params, start: int) -> bool:
        """Whether frames made with `params` from range start `start` are the window's settings' frames."""
        return params == self.state.params and start == self.state.in_point

    def _on_cache_entry_changed(self, folder: str, params, start: int) -> None:
        if self._holds_current(params, start):
            self.entry, self._entry_start = CacheEntry(Path(folder)), start
            self.slicer.set_entry(self.entry)
            self.refresh_rendered()
            if self.state.frame in self._rendered:
                self.show_current()

    def _on_preview_failed(self, message: str, kind: str, index: int, params) -> None:
        if index >= 0:  # a frame's preview: marked once that frame shows (its original may still be coming)
            if params != self.state.params or index != self.state.frame:
                return  # asked for before an edit or a scrub: the newer request answers for the view
            self._failed = (index, params)
        view = self.compare.before_view
        if view.image() is not None and view.frame_index is not None and (index < 0 or view.frame_index == index):
            self.compare.show_frame(view.frame_index, view.image(), None, FAILED)

    def refresh_rendered(self) -> None:
        self._rendered = self.entry.indices() if self.entry is not None else set()
        self.timeline.set_rendered(self._rendered)
        self.refresh_keyframes()

    def refresh_keyframes(self) -> None:
        """Mark the keyframes a render or a preview planned for this entry (none: every frame is one)."""
        plan = self.entry.read_meta().get("keyframes", {}) if self.entry is not None else {}
        self.timeline.set_keyframes(plan.get("keyframes", []))

    def _on_render_started(self, total: int, cached: int) -> None:
        self.rendering = True

    def render_ended(self) -> None:
        self.rendering = False
        self._fresh = None
        self.refresh_rendered()
        self.show_current()

    def _on_frame_rendered(self, index: int, image, params, start: int) -> None:
        if not self._holds_current(params, start):
            return  # the settings were edited since the render began: its frames are not theirs
        self._rendered.add(index)
        self._fresh = (index, image)
        if not self._band_timer.isActive():
            self._band_timer.start()
        if self.follow_render and self.rendering and not self.playing and self.state.info is not None:
            if index == self.state.frame:
                self.slicer.request(index, after=image)
            else:
                self._move_playhead(index)
