"""What the compare view shows for the current frame.

Scrubbing shows the original at once (decoded here, on the GUI thread, frame-accurately), and the
stylized frame from the cache at once when it is there, else as soon as the worker has it. Parameter
edits are debounced before a preview is asked for. During a render the view follows the newest frame.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer

from pipeline.cache import CacheEntry
from pipeline.errors import VdiffError
from pipeline.video import VideoReader
from vdiff_gui.images import array_to_qimage
from vdiff_gui.project_state import ProjectState
from vdiff_gui.render_worker import RenderWorker
from vdiff_gui.widgets.compare_view import CompareView
from vdiff_gui.widgets.timeline import TimelineWidget

DEBOUNCE_MS = 250
PENDING = "rendering preview…"
NOT_RENDERED = "not rendered: showing the original"
UPDATING = "updating…"


class PreviewController(QObject):
    def __init__(self, state: ProjectState, worker: RenderWorker, compare: CompareView,
                 timeline: TimelineWidget, report_error, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.worker, self.compare, self.timeline = state, worker, compare, timeline
        self._report_error = report_error
        self._reader: VideoReader | None = None
        self.entry: CacheEntry | None = None  # the worker's cache entry for state.params and the in point
        self._entry_start = 0
        self._rendered: set[int] = set()
        self.playing = False
        self.follow_render = False
        self.previews_requested = 0
        self._last_submitted: tuple | None = None
        self._fresh: tuple | None = None  # (index, image) of the newest rendered frame
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self.request_preview)
        self._band_timer = QTimer(self, singleShot=True, interval=200)
        self._band_timer.timeout.connect(self.refresh_rendered)
        state.clip_changed.connect(self._on_clip_changed)
        state.frame_changed.connect(self.show_current)
        state.params_changed.connect(self._on_params_changed)
        state.range_changed.connect(self._on_range_changed)
        worker.preview_ready.connect(self._on_preview_ready)
        worker.cache_entry_changed.connect(self._on_cache_entry_changed)
        worker.frame_rendered.connect(self._on_frame_rendered)
        worker.render_started.connect(self._on_render_started)
        worker.preview_failed.connect(self._on_preview_failed)
        timeline.scrub_started.connect(self._stop_following)

    @property
    def debounce_active(self) -> bool:
        return self._debounce.isActive()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def set_playing(self, playing: bool) -> None:
        self.playing = playing
        if not playing:
            self.show_current()

    # showing frames
    def show_current(self, *_) -> None:
        info, index = self.state.info, self.state.frame
        if info is None or self._reader is None:
            return
        try:
            before = array_to_qimage(self._reader.frame(index))
        except VdiffError as exc:
            self._report_error(str(exc), "error")
            return
        after = self._fresh[1] if self._fresh is not None and self._fresh[0] == index else self._cached(index)
        if after is not None:
            self.compare.show_frame(index, before, array_to_qimage(after))
        elif self.playing or self.follow_render:
            self.compare.show_frame(index, before, None, NOT_RENDERED)
        else:
            self.compare.show_frame(index, before, None, PENDING)
            self.request_preview()

    def _cached(self, index: int):
        if self.entry is None or index not in self._rendered:
            return None
        return self.entry.load(index)

    def request_preview(self) -> None:
        """Ask the worker for the current frame (latest wins there); skipped if just asked for."""
        self._debounce.stop()
        if self.state.info is None:
            return
        wanted = (self.state.info.path, self.state.params, self.state.frame, self.state.in_point)
        if wanted == self._last_submitted:
            return
        self._last_submitted = wanted
        self.previews_requested += 1
        self.worker.submit_preview(self.state.info, self.state.params, self.state.frame, self.state.in_point)

    # state and worker events
    def _on_clip_changed(self, info) -> None:
        self.close()
        self.entry, self._rendered, self._last_submitted, self._fresh = None, set(), None, None
        self.timeline.set_rendered(set())
        if info is None:
            self.compare.clear("Open a video: File ▸ Open…, or drop a file here")
            return
        self._reader = VideoReader(info.path, info)
        # show_current follows from frame_changed, which set_clip emits after this

    def _on_params_changed(self, params) -> None:
        self.entry, self._rendered, self._fresh = None, set(), None
        self.timeline.set_rendered(set())
        self.timeline.set_keyframes([])
        if self.state.info is not None:
            self.compare.set_after_marker(UPDATING)
            self._debounce.start()

    def _on_range_changed(self, in_point: int, out_point: int) -> None:
        # a consistent render's frames depend on where its range starts: another start, another cache entry
        if self.entry is not None and in_point != self._entry_start:
            self.entry, self._rendered, self._fresh = None, set(), None
            self.timeline.set_rendered(set())
            self._debounce.start()

    def _on_preview_ready(self, index: int, image, from_cache: bool, params) -> None:
        if params != self.state.params:  # made for settings edited since: the newer preview is coming
            return
        if self.entry is not None and self.entry.has(index):  # stored (frames with no history are)
            self._rendered.add(index)
            self.timeline.set_rendered(self._rendered)
        self.refresh_keyframes()
        if index == self.state.frame and not self.playing:
            self.compare.show_after(index, array_to_qimage(image))

    def _on_cache_entry_changed(self, folder: str, params, start: int) -> None:
        if params == self.state.params and start == self.state.in_point:
            self.entry, self._entry_start = CacheEntry(Path(folder)), start
            self.refresh_rendered()
            if self.state.frame in self._rendered:
                self.show_current()

    def _on_preview_failed(self, message: str, kind: str) -> None:
        view = self.compare.before_view
        if view.image() is not None and view.frame_index is not None:
            self.compare.show_frame(view.frame_index, view.image(), None, "no preview: see the message above")

    def refresh_rendered(self) -> None:
        self._rendered = self.entry.indices() if self.entry is not None else set()
        self.timeline.set_rendered(self._rendered)
        self.refresh_keyframes()

    def refresh_keyframes(self) -> None:
        """Mark the keyframes a render or a preview planned for this entry (none: every frame is one)."""
        plan = self.entry.read_meta().get("keyframes", {}) if self.entry is not None else {}
        self.timeline.set_keyframes(plan.get("keyframes", []))

    def _on_render_started(self, total: int, cached: int) -> None:
        self.follow_render = True

    def _stop_following(self) -> None:
        self.follow_render = False

    def render_ended(self) -> None:
        self.follow_render = False
        self._fresh = None
        self.refresh_rendered()
        self.show_current()

    def _on_frame_rendered(self, index: int, image) -> None:
        self._rendered.add(index)
        self._fresh = (index, image)
        if not self._band_timer.isActive():
            self._band_timer.start()
        if self.follow_render and self.state.info is not None:
            if index == self.state.frame:
                self.compare.show_after(index, array_to_qimage(image))
            else:
                self.state.set_frame(index)  # show_current takes the fresh frame, no cache read
