"""The render loop: a generator of typed events over a frame range, driven by one RenderRequest.

Numbered steps, as in a diffusers pipeline: 1. check inputs, 2. prepare (probe, engine, cache, writer),
3. the loop, 4. finish (flush, verify, rename). Decoding, inference and cache/encode run in three
threads joined by bounded queues, so the engine never waits on I/O and memory does not grow with the
clip's length. The generator always ends with exactly one of Finished, Cancelled or Failed; closing it
early (or Ctrl+C) cancels the threads and leaves the cache intact for a resume.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from pipeline.cache import CacheEntry, FrameCache, render_key
from pipeline.engines import Engine, FrameContext, create_engine
from pipeline.errors import BadInputError, CancelledError, OutputError, VdiffError
from pipeline.events import Cancelled, CancelToken, Event, Failed, Finished, FrameReady, Started, Step
from pipeline.request import RenderRequest
from pipeline.temporal.stabilizer import Stabilizer, is_stateful
from pipeline.video import VideoInfo, VideoReader, VideoWriter, probe, verify_output
from pipeline.video.probe import check_renderable
from pipeline.video.writer import check_output_path, even_size

log = logging.getLogger(__name__)

QUEUE_FRAMES = 6  # frames buffered between stages: enough to overlap, small enough to bound memory
_DONE = object()


@dataclass
class _Plan:
    info: VideoInfo
    start: int
    end: int
    engine: Engine
    entry: CacheEntry | None
    out_size: tuple[int, int]
    stabilizer: Stabilizer | None = None  # the consistency state carried from frame to frame, if any


def resolve_range(info: VideoInfo, start: int, end: int | None) -> tuple[int, int]:
    """Check a [start, end) range against the clip; end None means the clip's end."""
    end = info.frame_count if end is None else end
    if not 0 <= start < info.frame_count:
        raise BadInputError(f"start frame {start} is outside the clip (0 to {info.frame_count - 1})")
    if not start < end <= info.frame_count:
        raise BadInputError(f"end frame {end} must be after the start ({start}) and at most {info.frame_count}")
    return start, end


def cache_description(engine: Engine, start: int = 0) -> dict:
    """What the cached pixels depend on: the engine's parameters and, when a frame depends on the frames
    before it (pipeline.temporal), the range start its history begins at."""
    description = engine.params.relevant()
    if is_stateful(engine.params):
        description["history_from"] = start
    return description


def render_frames(
    request: RenderRequest,
    cancel: CancelToken | None = None,
    cache: FrameCache | None = None,
    engine: Engine | None = None,
) -> Iterator[Event]:
    """Render request.source[start:end] (and write request.output, if set), yielding events.

    Pass `engine` to reuse an engine that is already prepared (the GUI keeps one loaded); otherwise
    one is created from request.params and closed at the end.
    """
    cancel = cancel or CancelToken()
    own_engine = engine is None
    writer = None
    done = 0
    try:
        # 1. check inputs
        request.params.validate()
        if request.output is not None:
            check_output_path(request.output)
        info = probe(request.source)
        check_renderable(info)
        start, end = resolve_range(info, request.start, request.end)
        # 2. prepare
        engine = engine or create_engine(request.params)
        engine.prepare(cancel)
        out_size = engine.output_size(info.width, info.height)
        entry = None
        if request.use_cache:
            cache = cache or FrameCache()
            entry = cache.entry(render_key(info, cache_description(engine, start)))
            entry.write_meta({"source": str(info.path), "params": request.describe(), "frames": info.frame_count})
            cache.evict(keep={entry.key})
        plan = _Plan(info, start, end, engine, entry, out_size)
        if is_stateful(request.params):
            plan.stabilizer = Stabilizer(request.params, start, lambda index: _decode_one(plan, index)[0])
        cached = len(entry.indices() & set(range(start, end))) if entry else 0
        yield Started(total=end - start, cached=cached, device=engine.device)
        if request.output is not None:
            writer = VideoWriter(
                request.output,
                out_size,
                info.fps,
                info.time_base,
                source=info,
                audio_range=(info.frame_time(start), info.frame_time(start) + info.range_duration(start, end)),
            )
        # 3. the loop
        began = time.perf_counter()
        rendered = 0
        for event in _run_stages(plan, cancel, writer):
            if isinstance(event, FrameReady):
                done = event.done
                rendered += not event.from_cache
            yield event
        if cancel.cancelled:
            raise CancelledError()
        # 4. finish
        verification = None
        output = None
        if writer is not None:
            output = str(writer.finish())
            verification = verify_output(
                writer.target,
                frames=end - start,
                fps=info.fps,
                duration=info.range_duration(start, end),
                audio=request.output.audio and info.has_audio and request.output.codec != "png",
                size=writer.size,
                timestamps=[info.frame_time(i) - info.frame_time(start) for i in range(start, end)] if info.vfr else None,
            ).to_json()
            writer = None
        if entry is not None:
            entry.write_meta({"complete_ranges": _merge_range(entry.read_meta().get("complete_ranges", []), start, end)})
        yield Finished(
            total=end - start,
            rendered=rendered,
            seconds=time.perf_counter() - began,
            output=output,
            verification=verification,
        )
    except CancelledError:
        yield Cancelled(done=done, total=_total(request))
    except VdiffError as exc:
        yield Failed(str(exc), exit_code=exc.exit_code, done=done)
    except OSError as exc:  # the frame cache could not be written
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            message = "the disk is full while writing the frame cache; free some space and run again (it resumes)"
        else:
            message = f"cannot write the frame cache: {exc.strerror or exc}"
        yield Failed(message, exit_code=2, done=done)
    except Exception as exc:  # an internal error: keep the traceback in the log, show one line
        log.error("render failed: %s: %s", type(exc).__name__, exc)
        log.debug("render failed:\n%s", traceback.format_exc())
        yield Failed(f"internal error: {type(exc).__name__}: {exc}", exit_code=1, done=done)
    finally:
        if writer is not None:  # not finished: drop the partial output, keep the target as it was
            writer.abort()
        if own_engine and engine is not None:
            engine.close()


def _total(request: RenderRequest) -> int:
    return (request.end or 0) - request.start if request.end else 0


def _merge_range(ranges: list, start: int, end: int) -> list:
    merged = []
    for a, b in sorted([*map(tuple, ranges), (start, end)]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _run_stages(plan: _Plan, cancel: CancelToken, writer: VideoWriter | None) -> Iterator[Event]:
    """Run decode -> engine -> cache/encode in three threads and yield their events in order."""
    frames_q: queue.Queue = queue.Queue(QUEUE_FRAMES)
    results_q: queue.Queue = queue.Queue(QUEUE_FRAMES)
    events_q: queue.Queue = queue.Queue()
    stop = threading.Event()  # set by any stage that fails, or by the consumer leaving
    failure: list[BaseException] = []

    def guarded(stage, *args):
        try:
            stage(*args)
        except BaseException as exc:  # forwarded to the consumer, which re-raises it
            failure.append(exc)
            stop.set()
        finally:
            events_q.put(_DONE)

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue):
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _DONE

    def decode() -> None:
        for item in _frames_with_neighbors(plan):
            if cancel.cancelled or not put(frames_q, item):
                break
        put(frames_q, _DONE)

    def infer() -> None:
        while True:
            item = get(frames_q)
            if item is _DONE or cancel.cancelled:
                break
            index, frame, neighbors, center = item
            image = plan.entry.load(index) if plan.entry is not None and frame is None else None
            from_cache = image is not None
            if from_cache and plan.stabilizer is not None:
                plan.stabilizer.remember(index, image)
            if image is None:
                if frame is None:  # listed in the cache but unreadable: decode it now
                    frame, neighbors, center = _decode_one(plan, index)
                ctx = FrameContext(
                    index=index,
                    cancel=cancel,
                    on_step=lambda step, steps, i=index: events_q.put(Step(i, step, steps)),
                    neighbors=neighbors,
                    center=center,
                )
                if plan.stabilizer is not None:
                    image = plan.stabilizer.process(plan.engine, frame, ctx)
                else:
                    image = plan.engine.process(frame, ctx)
            if not put(results_q, (index, image, from_cache)):
                break
        put(results_q, _DONE)

    def store() -> None:
        done = 0
        total = plan.end - plan.start
        while True:
            item = get(results_q)
            if item is _DONE:
                break
            index, image, from_cache = item
            if plan.entry is not None and not from_cache:
                plan.entry.store(index, image)
            if writer is not None:
                writer.write(image, plan.info.pts[index] - plan.info.pts[plan.start])
            done += 1
            events_q.put(FrameReady(index, image, from_cache, done, total))

    threads = [
        threading.Thread(target=guarded, args=(stage,), name=f"vdiff-{stage.__name__}", daemon=True)
        for stage in (decode, infer, store)
    ]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < len(threads):
            try:
                event = events_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if event is _DONE:
                finished += 1
                continue
            yield event
    finally:
        if finished < len(threads):  # the consumer left early, or Ctrl+C: wind the stages down
            cancel.cancel()
            stop.set()
        for thread in threads:
            thread.join()
    if failure:
        raise failure[0]


def _frames_with_neighbors(plan: _Plan) -> Iterator[tuple]:
    """(index, frame or None if cached, neighbours, centre) for each frame of the range, in order."""
    radius = plan.engine.temporal_radius
    cached = plan.entry.indices() if plan.entry is not None else set()
    wanted = set(range(plan.start, plan.end)) - cached
    if not wanted:  # everything is cached: no need to decode at all
        for index in range(plan.start, plan.end):
            yield index, None, [], 0
        return
    first = max(0, plan.start - radius)
    last = min(plan.info.frame_count, plan.end + radius)
    window: deque = deque(maxlen=2 * radius + 1)  # (index, frame), this frame's neighbourhood

    def emit(index: int) -> tuple:
        if index not in wanted:
            return index, None, [], 0
        base = window[0][0]
        frames = [frame for _, frame in window]
        return index, frames[index - base], frames, index - base

    with VideoReader(plan.info.path, plan.info) as reader:
        for index, frame in reader.iter_frames(first, last):
            window.append((index, frame))
            ready = index - radius  # its right-hand neighbours are all read now
            if plan.start <= ready < plan.end:
                yield emit(ready)
    for ready in range(max(plan.start, last - radius), plan.end):  # the clip's end clamps these windows
        yield emit(ready)


def _decode_one(plan: _Plan, index: int) -> tuple[np.ndarray, list, int]:
    radius = plan.engine.temporal_radius
    with VideoReader(plan.info.path, plan.info) as reader:
        lo, hi = max(0, index - radius), min(plan.info.frame_count, index + radius + 1)
        frames = [reader.frame(i) for i in range(lo, hi)]
    return frames[index - lo], frames, index - lo


def preview_frame(
    engine: Engine,
    reader: VideoReader,
    index: int,
    cancel: CancelToken | None = None,
    entry: CacheEntry | None = None,
    on_step=None,
) -> tuple[np.ndarray, bool]:
    """The stylized frame `index` for a scrub preview: from the cache when there, else rendered and stored.

    A rendered preview is per-frame (no temporal consistency); it is stored only when the engine's
    frames do not depend on the frames before them, so it never stands in for a consistent render's.
    Returns (image, from_cache). The engine must be prepared; the caller's thread owns it.
    """
    check_renderable(reader.info)
    if entry is not None:
        image = entry.load(index)
        if image is not None:
            return image, True
    radius = engine.temporal_radius
    lo, hi = max(0, index - radius), min(reader.info.frame_count, index + radius + 1)
    frames = [reader.frame(i) for i in range(lo, hi)]
    ctx = FrameContext(index=index, cancel=cancel or CancelToken(), on_step=on_step, neighbors=frames, center=index - lo)
    image = engine.process(frames[index - lo], ctx)
    if entry is not None and not is_stateful(engine.params):
        entry.store(index, image)
    return image, False


def output_size_for(engine: Engine, info: VideoInfo, codec: str) -> tuple[int, int]:
    size = engine.output_size(info.width, info.height)
    return size if codec == "png" else even_size(*size)
