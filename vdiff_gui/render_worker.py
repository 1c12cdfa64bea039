"""The one thread that owns the engine (and the GPU): every preview and every render goes through it.

The GUI talks to it through plain thread-safe methods, never queued slots: a thread busy in a render
loop cannot run queued slots. Previews are latest-wins: a newer one replaces a pending one and cancels
one in flight. Each render ends with exactly one of render_finished / render_cancelled / render_failed.
Frames leave this thread as numpy arrays; QImages are made on the GUI thread.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from pipeline.cache import CacheEntry, FrameCache
from pipeline.editing.region import RegionEdit, has_region
from pipeline.engines import Engine, create_engine
from pipeline.errors import CancelledError, OutOfMemoryError, VdiffError
from pipeline.events import Cancelled, CancelToken, Failed, Finished, FrameReady, Started, Step
from pipeline.render import open_cache_entry, preview_frame, render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.temporal import FlickerMeter
from pipeline.video import VideoInfo, VideoReader, probe

log = logging.getLogger(__name__)

FPS_WINDOW = 12  # computed frames the frames-per-second figure averages over
FRAME_SIGNAL_INTERVAL = 0.04  # s; frame_rendered carries the newest frame at most ~25 times a second
FEED_BYTES = 256 * 1024 * 1024  # frames waiting for the flicker meter; beyond this it skips frames


@dataclass(frozen=True)
class PreviewRequest:
    info: VideoInfo
    params: StyleParams
    index: int
    start: int = 0  # where a render of this range starts: temporally consistent frames depend on it


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


class RenderWorker(QThread):
    """Owns one engine, recreated only when the StyleParams change and kept prepared between previews."""

    preview_ready = Signal(int, object, bool, object)  # index, HxWx3 uint8 RGB, from_cache, its StyleParams
    preview_failed = Signal(str, str)  # message, kind ('error' or 'out_of_memory')
    render_started = Signal(int, int)  # total, already cached
    step_changed = Signal(int, int, int)  # frame index, denoising step, steps
    frame_rendered = Signal(int, object)  # newest frame of the render (throttled), HxWx3 uint8 RGB
    progress_changed = Signal(int, int, float)  # done, total, computed frames per second
    render_finished = Signal(dict)  # pipeline.events.Finished as a dict (output, verification, ...)
    render_cancelled = Signal()
    render_failed = Signal(str, str)  # message, kind
    device_changed = Signal(str)
    loading_changed = Signal(str)  # what is loading ("" when done)
    cache_entry_changed = Signal(str, object, int)  # cache folder, the StyleParams and range start it holds frames for
    flicker_changed = Signal(float, float, int)  # running warp error of the render, of its source (the floor), pairs

    def __init__(self, cache: FrameCache | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("renderWorker")
        self._cache = cache or FrameCache()
        self._cond = threading.Condition()
        self._preview: PreviewRequest | None = None
        self._preview_token = CancelToken()
        self._render: RenderRequest | None = None
        self._render_token: CancelToken | None = None
        self._paused = False
        self._stopping = False
        # owned by the worker thread only
        self._engine: Engine | None = None
        self._engine_params: StyleParams | None = None
        self._failed: tuple[StyleParams, VdiffError] | None = None
        self._reader: VideoReader | None = None
        self._reader_info: VideoInfo | None = None
        self._entry: CacheEntry | None = None
        self._entry_for: tuple | None = None

    # -- thread-safe API (any thread) ------------------------------------------------------------

    def submit_preview(self, info: VideoInfo, params: StyleParams, index: int, start: int = 0) -> None:
        """Ask for stylized frame `index` (of a range starting at `start`, whose render it may find in the
        cache); replaces a pending preview and cancels a different one in flight."""
        request = PreviewRequest(info, params, index, start)
        with self._cond:
            if self._preview != request:
                self._preview_token.cancel()
            self._preview = request
            self._cond.notify_all()

    def submit_render(self, request: RenderRequest) -> None:
        """Queue a render (with request.output set: an export). Runs before any pending preview."""
        with self._cond:
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

    def stop(self) -> None:
        """Cancel everything, close the engine and join the thread. Partial outputs are removed."""
        with self._cond:
            self._stopping = True
            self._preview_token.cancel()
            if self._render_token is not None:
                self._render_token.cancel()
            self._cond.notify_all()
        if self.isRunning():
            self.wait()

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
                    while not (self._stopping or self._render or self._preview):
                        self._cond.wait()
                    if self._stopping:
                        dropped, self._render = self._render, None
                        break
                    render, self._render = self._render, None
                    preview = None
                    if render is not None:
                        self._render_token = token = CancelToken()
                    else:
                        preview, self._preview = self._preview, None
                        self._preview_token = token = CancelToken()
                if render is not None:
                    self._run_render(render, token)
                else:
                    self._run_preview(preview, token)
            if dropped is not None:
                self.render_cancelled.emit()
        except Exception:  # never die silently: the GUI would wait forever
            log.error("render worker crashed:\n%s", traceback.format_exc())
        finally:
            self._close_engine()
            if self._reader is not None:
                self._reader.close()

    def _wait_while_paused(self, cancel: CancelToken) -> None:
        with self._cond:
            while self._paused and not cancel.cancelled and not self._stopping:
                self._cond.wait(0.1)

    def _ensure_engine(self, params: StyleParams, cancel: CancelToken) -> Engine:
        if self._engine is not None and self._engine_params == params:
            return self._engine
        self._close_engine()
        if self._failed is not None and self._failed[0] == params:
            raise self._failed[1]  # do not reload a model that just failed for the same settings
        self.loading_changed.emit(f"loading the {params.engine} engine…")
        try:
            engine = create_engine(params)
            engine.prepare(cancel)
        except VdiffError as exc:
            self._failed = (params, exc)
            raise
        finally:
            self.loading_changed.emit("")
        self._engine, self._engine_params = engine, params
        self.device_changed.emit(engine.device)
        return engine

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

    def _run_preview(self, request: PreviewRequest, token: CancelToken) -> None:
        try:
            engine = self._ensure_engine(request.params, token)
            entry = self._entry_of(request.info, engine, request.start)
            on_step = lambda step, steps: self.step_changed.emit(request.index, step, steps)  # noqa: E731
            edit = self._region_of(request.params, request.info)
            image, from_cache = preview_frame(engine, self._reader_of(request.info), request.index, token, entry, on_step,
                                              edit=edit, start=request.start)
        except CancelledError:
            return
        except VdiffError as exc:
            self.preview_failed.emit(str(exc), error_kind(exc))
        except OSError as exc:
            self.preview_failed.emit(f"cannot read or write the frame cache: {exc.strerror or exc}", "error")
        except Exception as exc:
            log.error("preview failed:\n%s", traceback.format_exc())
            self.preview_failed.emit(f"internal error: {type(exc).__name__}: {exc}", "error")
        else:
            self.preview_ready.emit(request.index, image, from_cache, request.params)

    def _region_of(self, params: StyleParams, info: VideoInfo) -> RegionEdit | None:
        """The region edit previews use, tracked once over the whole clip and kept while it is unchanged."""
        if not has_region(params):
            return None
        key = (str(info.path), params.mask, params.mask_anchors, params.mask_feather)
        if getattr(self, "_region", (None, None))[0] != key:
            self._region = (key, RegionEdit(params, info, 0, info.frame_count))
        return self._region[1]

    def _run_render(self, request: RenderRequest, token: CancelToken) -> None:
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
        loop (its event queue is bounded), so the flicker meter runs on its own thread (FlickerFeed)."""
        computed: deque[float] = deque(maxlen=FPS_WINDOW)
        last_frame_signal = 0.0
        feed = FlickerFeed(request.source, self.flicker_changed.emit)
        try:
            for event in events:
                if isinstance(event, FrameReady):
                    feed.offer(event.index, event.image)
                    now = time.perf_counter()
                    if not event.from_cache:
                        computed.append(now)
                    if now - last_frame_signal >= FRAME_SIGNAL_INTERVAL or event.done == event.total:
                        last_frame_signal = now
                        self.frame_rendered.emit(event.index, event.image)
                    self.progress_changed.emit(event.done, event.total, _rate(computed))
                    self._serve_cached_preview(request)
                elif isinstance(event, Step):
                    self.step_changed.emit(event.index, event.step, event.steps)
                elif isinstance(event, Started):
                    self.device_changed.emit(event.device)
                    self.render_started.emit(event.total, event.cached)
                elif isinstance(event, Finished):
                    feed.close()  # the last pairs are measured before the render is reported done
                    if self._engine is not None:
                        self.device_changed.emit(self._engine.device)  # a low-memory fallback changes it
                    self.render_finished.emit(dataclasses.asdict(event))
                elif isinstance(event, Cancelled):
                    self.render_cancelled.emit()
                elif isinstance(event, Failed):
                    self.render_failed.emit(event.message, event.kind)
        finally:
            feed.close()

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
        self.preview_ready.emit(preview.index, image, True, preview.params)


class FlickerFeed:
    """The flicker meter on its own thread, fed the render's frames without ever blocking the render.

    Frames wait in a queue bounded by memory (FEED_BYTES); when the meter falls behind, a frame is
    dropped (the meter sees a gap and starts a new run of pairs), so a slow meter never grows memory
    and never slows the render. It decodes the source frames with its own reader (readers are not
    thread-safe). close() measures what is queued and stops.
    """

    def __init__(self, source, on_score):
        self._source, self._on_score = Path(source), on_score
        self._queue: queue.Queue = queue.Queue()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="vdiff-flicker", daemon=True)
        self._thread.start()

    def offer(self, index: int, image) -> None:
        with self._lock:
            if self._queued_bytes + image.nbytes > FEED_BYTES and self._queued_bytes > 0:
                self.dropped += 1
                return
            self._queued_bytes += image.nbytes
        self._queue.put((index, image))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        meter, reader = FlickerMeter(), None  # the same measure as `vdiff metrics`
        try:
            while (item := self._queue.get()) is not None:
                index, image = item
                with self._lock:
                    self._queued_bytes -= image.nbytes
                if reader is None:
                    reader = VideoReader(self._source, probe(self._source))
                score = meter.add(index, reader.frame(index), image)
                if score is not None:
                    self._on_score(score, meter.floor, meter.pairs)
        except Exception:  # a measurement problem must not end the render
            log.warning("the flicker meter stopped:\n%s", traceback.format_exc())
            while self._queue.get() is not None:
                pass
        finally:
            if reader is not None:
                reader.close()


def _rate(times: deque) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])
