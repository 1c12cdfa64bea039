"""The one thread that owns the engine (and the GPU): every preview and every render goes through it.

The GUI talks to it through plain thread-safe methods, never queued slots: a thread busy in a render
loop cannot run queued slots. Previews are latest-wins: a newer one replaces a pending one and cancels
one in flight. Each render ends with exactly one of render_finished / render_cancelled / render_failed.
Frames leave this thread as numpy arrays; QImages are made on the GUI thread. With nothing else to
do, it renders preview frames around the last preview's frame (pipeline.previews.prepare_previews),
stopped within milliseconds by any request.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from pipeline.cache import CacheEntry, FrameCache
from pipeline.editing.region import RegionEdit, has_region
from pipeline.engines import Engine, FrameContext, create_engine
from pipeline.errors import CancelledError, OutOfMemoryError, VdiffError
from pipeline.events import Cancelled, CancelToken, Failed, Finished, FrameReady, Started, Step
from pipeline.previews import prepare_previews, preview_frame, preview_needs_keyframes
from pipeline.render import open_cache_entry, render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.engines.base import resize_to
from pipeline.temporal.flicker_sampler import FlickerSampler
from pipeline.video import VideoInfo, VideoReader
from pipeline.video.proxy import proxy_size
from vdiff_gui.frame_slicer import fit_within, proxy_fits

log = logging.getLogger(__name__)

FPS_WINDOW = 12  # computed frames the frames-per-second figure averages over
FRAME_SIGNAL_INTERVAL = 0.04  # s; frame_rendered carries the newest frame at most ~25 times a second
DRAFT_SCALE = 0.5  # a draft preview has half the view's width and height: a quarter of the engine's work


@dataclass(frozen=True)
class PreviewRequest:
    info: VideoInfo
    params: StyleParams
    index: int
    start: int = 0  # where a render of this range starts: temporally consistent frames depend on it
    box: tuple[int, int] | None = None  # the view's size in device pixels: previewed at that size (None: full size)
    proxy: tuple[Path, int] | None = None  # the scrubbing proxy (path, width) to read the source from, when sharp enough


def error_kind(exc: BaseException) -> str:
    """'out_of_memory' for an out-of-memory failure (the GUI then offers low-memory settings), else 'error'."""
    return "out_of_memory" if isinstance(exc, OutOfMemoryError) else "error"


class _WorkerEngine:
    """The worker's prepared engine as render_frames sees it: prepare() does not load it again, and
    process() waits first while the render is paused (pause = blocking between frames)."""

    def __init__(self, engine: Engine, wait_while_paused):
        self._engine = engine
        self._wait_while_paused = wait_while_paused

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def prepare(self, cancel: CancelToken | None = None) -> None:
        if cancel is not None and cancel.cancelled:
            raise CancelledError()

    def process(self, frame, ctx):
        self._wait_while_paused(ctx.cancel)
        ctx.check_cancelled()
        return self._engine.process(frame, ctx)

    def process_batch(self, frames, contexts):
        self._wait_while_paused(contexts[0].cancel)
        contexts[0].check_cancelled()
        return self._engine.process_batch(frames, contexts)

    def close(self) -> None:
        """The worker closes the real engine when the parameters change or it stops."""


class _LoadCancel:
    """The cancel token of a model load for a preview: set when the worker stops or when the preview now
    pending needs another model. A newer preview that only changes per-call settings (a prompt typed
    meanwhile) lets the load finish, instead of starting it over."""

    def __init__(self, worker: "RenderWorker", params: StyleParams):
        self._worker, self._settings = worker, params.load_settings()

    @property
    def cancelled(self) -> bool:
        worker = self._worker
        with worker._cond:
            pending = worker._preview
            return worker._stopping or (pending is not None and pending.params.load_settings() != self._settings)


class RenderWorker(QThread):
    """Owns one engine, recreated only when the StyleParams change and kept prepared between previews."""

    preview_ready = Signal(int, object, bool, object)  # index, HxWx3 uint8 RGB, from_cache, its StyleParams
    preview_draft = Signal(int, object, object)  # index, a quick lower-resolution look at it, its StyleParams
    preview_failed = Signal(str, str, int, object)  # message, kind ('error', 'out_of_memory'), frame, params
    render_started = Signal(int, int)  # total, already cached
    step_changed = Signal(int, int, int)  # frame index, denoising step, steps
    frame_rendered = Signal(int, object, object, int)  # newest frame (throttled, RGB uint8), its StyleParams, start
    progress_changed = Signal(int, int, float)  # done, total, computed frames per second
    render_finished = Signal(dict)  # pipeline.events.Finished as a dict (output, verification, ...)
    render_cancelled = Signal()
    render_failed = Signal(str, str)  # message, kind
    device_changed = Signal(str)
    loading_changed = Signal(str)  # what is loading ("" when done)
    cache_entry_changed = Signal(str, object, int)  # cache folder, the StyleParams and range start it holds frames for
    flicker_changed = Signal(float, float, int)  # warp error of the render's sampled pairs, of its source (the floor), pairs
    flicker_measured = Signal(int, float, float)  # frame index, its warp error from the frame before, the source's
    cluster_changed = Signal(str)  # a cluster render's per-worker progress line, or a lost worker (pipeline.cluster)

    def __init__(self, cache: FrameCache | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("renderWorker")
        self._cache = cache or FrameCache()
        self._cond = threading.Condition()
        self._preview: PreviewRequest | None = None
        self._preview_token = CancelToken()
        self._running_preview: PreviewRequest | None = None  # the preview being made (under _preview_token)
        self._render: RenderRequest | None = None
        self._render_token: CancelToken | None = None
        self.idle_previews = True  # prepare previews around the last one while idle (prepare_previews)
        self._ahead: PreviewRequest | None = None  # idle work: prepare previews around this one's frame
        self._ahead_token = CancelToken()
        self._paused = False
        self._stopping = False
        # owned by the worker thread only
        self._engine: Engine | None = None
        self._engine_params: StyleParams | None = None
        self._failed: tuple[StyleParams, VdiffError] | None = None
        self._reader: VideoReader | None = None
        self._reader_info: VideoInfo | None = None
        self._proxy_reader: tuple[Path, VideoReader] | None = None
        self._entry: CacheEntry | None = None
        self._entry_for: tuple | None = None
        self.flicker_pairs: list[int] = []  # the first index of each pair the last render's flicker meter measured

    # -- thread-safe API (any thread) ------------------------------------------------------------

    def submit_preview(self, info: VideoInfo, params: StyleParams, index: int, start: int = 0,
                       box: tuple[int, int] | None = None, proxy: tuple[Path, int] | None = None) -> None:
        """Ask for stylized frame `index` (of a range starting at `start`, whose render it may find in the
        cache), made at the size that fits `box` (renders and exports stay full size), reading the source
        from `proxy` when that is sharp enough; replaces a pending preview and cancels a different one in flight
        (the same one in flight goes on)."""
        request = PreviewRequest(info, params, index, start, box, proxy)
        with self._cond:
            self._stop_ahead()
            if request == self._running_preview and not self._preview_token.cancelled:
                self._preview = None  # the preview in flight is this one: its result answers both (newest wins)
                return
            self._preview_token.cancel()  # a different preview in flight is stale
            self._preview = request
            self._cond.notify_all()

    def prepare_around(self, info: VideoInfo, params: StyleParams, index: int, start: int = 0,
                       box: tuple[int, int] | None = None, proxy: tuple[Path, int] | None = None) -> None:
        """Idle work from now (until any other request): prepare previews around frame `index` with these
        settings (e.g. once the scrubbing proxy is ready, which makes reading frames out of order cheap)."""
        with self._cond:
            self._prepare_if_idle(PreviewRequest(info, params, index, start, box, proxy))

    def stop_preparing(self) -> None:
        """No idle work until the next preview or prepare_around (playback needs the cores to decode ahead)."""
        with self._cond:
            if self._ahead is not None:
                self._stop_ahead()

    def submit_render(self, request: RenderRequest) -> None:
        """Queue a render (with request.output set: an export). Runs before any pending preview."""
        with self._cond:
            self._stop_ahead()
            self._render = request
            self._failed = None  # an explicit render retries a model that failed to load
            self._cond.notify_all()

    def forget_failure(self) -> None:
        """Let the next job load a model that failed for the same settings (e.g. it was just downloaded)."""
        with self._cond:
            self._failed = None

    def pause(self) -> None:
        """The current (or next) render waits before its next frame until resume() or cancel()."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def cancel(self) -> None:
        """Cancel the running render (and one not started yet); the cache keeps what was done."""
        with self._cond:
            dropped = self._render is not None
            self._render = None
            self._paused = False
            if self._render_token is not None:
                self._render_token.cancel()
            self._cond.notify_all()
        if dropped:
            self.render_cancelled.emit()

    def request_stop(self) -> None:
        """Ask the thread to cancel everything and end, without waiting (see stop)."""
        with self._cond:
            self._stopping = True
            self._paused = False
            self._preview_token.cancel()
            self._stop_ahead()
            if self._render_token is not None:
                self._render_token.cancel()
            self._cond.notify_all()

    def stop(self, timeout_ms: int | None = None) -> bool:
        """Cancel everything, close the engine and join the thread (at most `timeout_ms`, when given).
        Partial outputs are removed. False when the thread is still running (stuck in a model load)."""
        self.request_stop()
        if self.isRunning():
            return self.wait(timeout_ms) if timeout_ms is not None else self.wait()
        return True

    def _prepare_if_idle(self, request: PreviewRequest) -> None:
        """(holding the lock) Idle work around `request`'s frame, unless another request waits."""
        if self._preview is None and self._render is None and not self._stopping and self.idle_previews:
            self._stop_ahead()
            self._ahead = request
            self._cond.notify_all()

    def _stop_ahead(self) -> None:
        """(holding the lock) Stop the idle preparing: a request has come."""
        self._ahead = None
        self._ahead_token.cancel()

    @property
    def preparing(self) -> bool:
        """Idle work is pending: previews are being prepared around the last scrub."""
        with self._cond:
            return self._ahead is not None

    @property
    def rendering(self) -> bool:
        with self._cond:
            return self._render_token is not None or self._render is not None

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused

    # -- the worker thread -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._stopping or self._render or self._preview or self._ahead):
                        self._cond.wait()
                    if self._stopping:
                        dropped, self._render = self._render, None
                        break
                    render, self._render = self._render, None
                    preview = ahead = None
                    if render is not None:
                        self._render_token = token = CancelToken()
                    elif self._preview is not None:
                        preview, self._preview = self._preview, None
                        self._preview_token = token = CancelToken()
                        self._running_preview = preview
                    else:
                        ahead, self._ahead_token = self._ahead, CancelToken()
                        token = self._ahead_token
                if render is not None:
                    self._run_render(render, token)
                elif preview is not None:
                    try:
                        self._run_preview(preview, token)
                    finally:
                        with self._cond:
                            self._running_preview = None
                else:
                    self._prepare_ahead(ahead, token)
            if dropped is not None:
                self.render_cancelled.emit()
        except Exception:  # never die silently: the GUI would wait forever
            log.error("render worker crashed:\n%s", traceback.format_exc())
            message = "the render worker stopped after an internal error (details in the log); restart vdiff"
            self.render_failed.emit(message, "error")  # ends a running job
            self.preview_failed.emit(message, "error", -1, None)  # and says so in the window (-1: no frame)
        finally:
            self._close_engine()
            if self._reader is not None:
                self._reader.close()
            if self._proxy_reader is not None:
                self._proxy_reader[1].close()

    def _wait_while_paused(self, cancel: CancelToken) -> None:
        with self._cond:
            while self._paused and not cancel.cancelled and not self._stopping:
                self._cond.wait(0.1)

    def _ensure_engine(self, params: StyleParams, cancel: CancelToken) -> Engine:
        if self._engine is not None and self._engine_params == params:
            return self._engine
        if self._engine is not None and self._engine.update(params):  # a per-call change: the model stays loaded
            self._engine_params = params
            self.device_changed.emit(self._engine.device)
            return self._engine
        self._close_engine()
        if self._failed is not None and self._failed[0] == params:
            raise self._failed[1]  # do not reload a model that just failed for the same settings
        self.loading_changed.emit(f"loading the {params.engine} engine…")
        try:
            engine = create_engine(params)
            engine.on_load_progress = self._on_load_progress  # engines that load in parts report each part
            engine.prepare(cancel)
        except VdiffError as exc:
            self._failed = (params, exc)
            raise
        finally:
            self.loading_changed.emit("")
        self._engine, self._engine_params = engine, params
        self.device_changed.emit(engine.device)
        return engine

    def _on_load_progress(self, component: str, done: int, total: int) -> None:
        if component:
            self.loading_changed.emit(f"loading the model: {component} ({done + 1}/{total})…")

    def _close_engine(self) -> None:
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception:
                log.warning("closing the engine failed:\n%s", traceback.format_exc())
        self._engine = self._engine_params = None
        self._entry = self._entry_for = None

    def _entry_of(self, info: VideoInfo, engine: Engine, start: int) -> CacheEntry:
        """The cache entry a render of this clip from `start` with this engine uses; previews read it
        (and preview_frame stores into it when frames do not depend on the frames before them)."""
        wanted = (info.path, info.frame_count, self._engine_params, start)
        if self._entry is None or self._entry_for != wanted:
            self._entry = open_cache_entry(self._cache, info, engine, start)
            self._entry_for = wanted
            self.cache_entry_changed.emit(str(self._entry.folder), self._engine_params, start)
        return self._entry

    def _reader_of(self, info: VideoInfo) -> VideoReader:
        if self._reader is None or self._reader_info is not info:
            if self._reader is not None:
                self._reader.close()
            self._reader, self._reader_info = VideoReader(info.path, info), info
        return self._reader

    def _preview_reader(self, request: PreviewRequest, box: tuple[int, int] | None = None) -> VideoReader:
        """The proxy's reader when the proxy is sharp enough for the view (or `box`), else the source's."""
        proxy = request.proxy
        if not _proxy_serves(request, box):
            return self._reader_of(request.info)
        if self._proxy_reader is None or self._proxy_reader[0] != proxy[0]:
            if self._proxy_reader is not None:
                self._proxy_reader[1].close()
            self._proxy_reader = (proxy[0], VideoReader(proxy[0]))
        return self._proxy_reader[1]

    def _run_preview(self, request: PreviewRequest, token: CancelToken) -> None:
        failed = (request.index, request.params)  # which preview a failure is of
        try:
            engine = self._ensure_engine(request.params, _LoadCancel(self, request.params))
            entry = self._entry_of(request.info, engine, request.start)
            if self._drafts_first(engine, request, entry):
                self.preview_draft.emit(request.index, self._draft(engine, request, token), request.params)
                with self._cond:
                    if self._preview is not None or token.cancelled:  # scrubbed on: the exact one would be stale
                        return
            on_step = lambda step, steps: self.step_changed.emit(request.index, step, steps)  # noqa: E731
            info = request.info
            # the proxy's pixels when it is sharp enough for the view; keyframes are planned on the source's
            image, from_cache = preview_frame(engine, self._preview_reader(request), request.index, token, entry,
                                              on_step, edit=self._region_of(request.params, info), start=request.start,
                                              size=self._preview_size(request), source=info)
            image = resize_to(image, fit_within(image.shape[1], image.shape[0], request.box))
        except CancelledError:
            return
        except VdiffError as exc:
            self.preview_failed.emit(str(exc), error_kind(exc), *failed)
        except OSError as exc:
            self.preview_failed.emit(f"cannot read or write the frame cache: {exc.strerror or exc}", "error", *failed)
        except Exception as exc:
            log.error("preview failed:\n%s", traceback.format_exc())
            self.preview_failed.emit(f"internal error: {type(exc).__name__}: {exc}", "error", *failed)
        else:
            self.preview_ready.emit(request.index, image, from_cache, request.params)
            with self._cond:
                self._prepare_if_idle(request)  # idle from now: prepare the frames around this one

    def _prepare_ahead(self, request: PreviewRequest, token: CancelToken) -> None:
        """One step of idle work: one more preview frame near `request`'s; none left ends it."""
        more = False
        try:
            engine = self._engine
            if engine is None or self._engine_params != request.params:
                return  # no model is loaded for idle work; the finally ends it
            # a long-GOP original (its proxy not made yet) seeks up to a second a frame: keyframes read in order
            more = prepare_previews(engine, self._preview_reader(request), request.index, token,
                                    self._entry_of(request.info, engine, request.start), request.start,
                                    self._preview_size(request), request.info, in_order=not _reads_cheaply(request))
        except CancelledError:
            more = True  # a request came and set what comes next
        except Exception:  # background work: the next preview reports what is wrong
            log.warning("preparing previews failed:\n%s", traceback.format_exc())
        finally:
            if not more:
                with self._cond:
                    if self._ahead is request:
                        self._ahead = None

    def _preview_size(self, request: PreviewRequest) -> tuple[int, int] | None:
        """The size a preview is rendered at: the view's pixels (None: the frame's own size)."""
        info = request.info
        size = fit_within(info.width, info.height, request.box)
        return None if size == (info.width, info.height) else size

    def _drafts_first(self, engine: Engine, request: PreviewRequest, entry: CacheEntry) -> bool:
        """A draft when it is much cheaper than the exact preview: a per-frame engine, fitted to a view,
        no region edit (a draft would change the whole frame), the frame not in the cache, and the exact
        one needing a keyframe's network run (an in-between of kept keyframes costs about a draft)."""
        return (engine.draft_previews and engine.temporal_radius == 0 and request.box is not None
                and not has_region(request.params) and not entry.has(request.index)
                and preview_needs_keyframes(engine, request.info, request.index, entry, request.start,
                                            self._preview_size(request)))

    def _draft(self, engine: Engine, request: PreviewRequest, token: CancelToken):
        """The frame through the engine on its own, at DRAFT_SCALE of the view's size (from the proxy when
        it is sharp enough): what a scrub shows first."""
        info = request.info
        width, height = fit_within(info.width, info.height, request.box)
        size = (max(16, round(width * DRAFT_SCALE)), max(16, round(height * DRAFT_SCALE)))
        frame = resize_to(self._preview_reader(request, size).frame(request.index), size)
        return engine.process(frame, FrameContext(index=request.index, cancel=token))

    def _region_of(self, params: StyleParams, info: VideoInfo) -> RegionEdit | None:
        """The region edit previews use, tracked once over the whole clip and kept while it is unchanged."""
        if not has_region(params):
            return None
        key = (str(info.path), params.mask, params.mask_anchors, params.mask_feather)
        if getattr(self, "_region", (None, None))[0] != key:
            self._region = (key, RegionEdit(params, info, 0, info.frame_count))
        return self._region[1]

    def _run_render(self, request: RenderRequest, token: CancelToken) -> None:
        if request.cluster:  # the frames are made on the cluster's workers: no engine to load here
            try:
                from pipeline.cluster import render_on_cluster

                self._dispatch(render_on_cluster(request, cancel=token, cache=self._cache), request)
            finally:
                with self._cond:
                    self._render_token = None
                    self._paused = False
            return
        try:
            try:
                engine = self._ensure_engine(request.params, token)
            except CancelledError:
                self.render_cancelled.emit()
                return
            except VdiffError as exc:
                self.render_failed.emit(str(exc), error_kind(exc))
                return
            except Exception as exc:
                log.error("loading the engine failed:\n%s", traceback.format_exc())
                self.render_failed.emit(f"internal error: {type(exc).__name__}: {exc}", "error")
                return
            self._dispatch(render_frames(request, token, self._cache, _WorkerEngine(engine, self._wait_while_paused)), request)
        finally:
            with self._cond:
                self._render_token = None
                self._paused = False

    def _dispatch(self, events, request: RenderRequest) -> None:
        """Turn each pipeline event into a signal. Nothing slow happens here: the render waits for this
        loop (its event queue is bounded), so the flicker meter runs on its own thread (FlickerSampler:
        sampled pairs at reduced size, skipped while it is busy)."""
        def on_score(score: float, floor: float, pairs: int) -> None:  # on the sampler's thread
            self.flicker_changed.emit(score, floor, pairs)
            self.flicker_measured.emit(meter.measured[-1] + 1, meter.output_errors[-1], meter.input_errors[-1])

        meter = FlickerSampler(request.source, on_score, start=request.start)
        self.flicker_pairs = meter.measured
        computed: deque[float] = deque(maxlen=FPS_WINDOW)
        last_frame_signal = 0.0
        try:
            for event in events:
                if isinstance(event, FrameReady):
                    meter.offer(event.index, event.image, getattr(event, "source", None))
                    now = time.perf_counter()
                    if not event.from_cache:
                        computed.append(now)
                    if now - last_frame_signal >= FRAME_SIGNAL_INTERVAL or event.done == event.total:
                        last_frame_signal = now
                        self.frame_rendered.emit(event.index, event.image, request.params, request.start)
                    self.progress_changed.emit(event.done, event.total, _rate(computed))
                    self._serve_cached_preview(request)
                elif isinstance(event, Step):
                    self.step_changed.emit(event.index, event.step, event.steps)
                elif hasattr(event, "summary"):  # pipeline.cluster's ClusterProgress and WorkerLost
                    self.cluster_changed.emit(event.summary())
                elif isinstance(event, Started):
                    self.device_changed.emit(event.device)
                    self.render_started.emit(event.total, event.cached)
                elif isinstance(event, Finished):
                    meter.close(wait=True)  # the pair already queued is measured before the render is reported done
                    if self._engine is not None and not request.cluster:
                        self.device_changed.emit(self._engine.device)  # a low-memory fallback changes it
                    self.render_finished.emit(dataclasses.asdict(event))
                elif isinstance(event, Cancelled):
                    self.render_cancelled.emit()
                elif isinstance(event, Failed):
                    self.render_failed.emit(event.message, event.kind)
        finally:
            meter.close()

    def _serve_cached_preview(self, request: RenderRequest) -> None:
        """While a render runs, answer a pending preview at once when its frame is already cached."""
        with self._cond:
            preview = self._preview
        if preview is None or preview.params != request.params or preview.info.path != request.source:
            return
        if self._engine is None or self._engine_params != preview.params or preview.start != request.start:
            return
        image = self._entry_of(preview.info, self._engine, preview.start).load(preview.index)
        if image is None:
            return
        with self._cond:
            if self._preview is preview:
                self._preview = None
        image = resize_to(image, fit_within(image.shape[1], image.shape[0], preview.box))
        self.preview_ready.emit(preview.index, image, True, preview.params)


def _proxy_serves(request: PreviewRequest, box: tuple[int, int] | None = None) -> bool:
    """The request's scrubbing proxy is there and sharp enough for the view (or `box`)."""
    proxy = request.proxy
    return proxy is not None and proxy_fits(proxy[1], request.info, box or request.box)


def _reads_cheaply(request: PreviewRequest) -> bool:
    """Frames of the request's clip read out of order in milliseconds: from its scrubbing proxy, or a source
    that seeks cheaply enough to need none. A long-GOP original costs up to a second a seek: read in order."""
    return _proxy_serves(request) or proxy_size(request.info) is None


def _rate(times: deque) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])
