"""The render loop: a generator of typed events over a frame range, driven by one RenderRequest.

Numbered steps, as in a diffusers pipeline: 1. check inputs, 2. prepare (probe, engine, cache, writer),
3. the loop, 4. finish (flush, verify, rename). Decoding, inference and cache/encode run in three
threads joined by bounded queues, so the engine never waits on I/O and memory does not grow with the
clip's length. The generator always ends with exactly one of Finished, Cancelled or Failed; closing it
early (or Ctrl+C) cancels the threads and leaves the cache intact for a resume.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from pipeline.cache import CacheEntry, FrameCache, render_key
from pipeline.cache_budget import CacheBudget, frame_bytes
from pipeline.engines import Engine, FrameContext, create_engine
from pipeline.editing.region import RegionEdit, has_region
from pipeline.errors import BadInputError, CancelledError, OutOfMemoryError, VdiffError
from pipeline.events import Cancelled, CancelToken, Event, Failed, Finished, FrameReady, Started, Step
from pipeline.keyframes import synth
from pipeline.keyframes.plan import KeyframePlan, LivePlan, plan_if_scanned, plan_keyframes, uses_keyframes
from pipeline.request import RenderRequest
from pipeline.temporal import flow as temporal_flow
from pipeline.temporal.stabilizer import Stabilizer, flow_source, is_stateful, motion, propagates_flow
from pipeline.video import VideoInfo, VideoReader, VideoWriter, probe, verify_output
from pipeline.video.probe import check_renderable
from pipeline.video.window import frames_with_neighbors
from pipeline.video.writer import check_output_path, even_size

log = logging.getLogger(__name__)

QUEUE_FRAMES = 6  # frames buffered between stages: enough to overlap, small enough to bound memory
EVENT_QUEUE = 8  # events waiting for the consumer; FrameReady waits for room, Step is dropped when full
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
    edit: RegionEdit | None = None  # the region a content edit is limited to, if any
    budget: CacheBudget | None = None  # keeps the cache inside its bound and the disk from filling


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
    identity = getattr(engine, "cache_identity", None)  # device, dtype, memory mode (diffusion)
    if identity is not None:
        description.update(identity())
    if is_stateful(engine.params) or uses_keyframes(engine.params):  # keyframes: the plan starts at `start`
        description["history_from"] = start
        if temporal_flow.FLOW_MAX_SIDE != temporal_flow.DEFAULT_FLOW_SIDE:  # VDIFF_FLOW_SIDE: other carried pixels
            description["flow_side"] = temporal_flow.FLOW_MAX_SIDE
    if uses_keyframes(engine.params):  # a cache filled by an older in-between is not mixed with this one's
        description["inbetween"] = synth.SYNTHESIS_VERSION
    return description


def open_cache_entry(cache: FrameCache, info: VideoInfo, engine: Engine, start: int = 0) -> CacheEntry:
    """The cache entry a render of `info` from `start` with `engine` fills (previews read the same one)."""
    entry = cache.entry(render_key(info, cache_description(engine, start)))
    entry.write_meta({
        "source": str(info.path),
        "params": json.dumps(engine.params.relevant(), sort_keys=True),
        "frames": info.frame_count,
    })
    return entry


def render_frames(
    request: RenderRequest,
    cancel: CancelToken | None = None,
    cache: FrameCache | None = None,
    engine: Engine | None = None,
    stages=None,
) -> Iterator[Event]:
    """Render request.source[start:end] (and write request.output, if set), yielding events.

    Pass `engine` to reuse an engine that is already prepared (the GUI keeps one loaded); otherwise
    one is created from request.params and closed at the end. `stages(plan, cancel, writer)` replaces
    the local decode/engine/cache/encode stages (pipeline.cluster renders the frames elsewhere).
    """
    cancel = cancel or CancelToken()
    own_engine = engine is None
    writer = None
    plan = None
    done = 0
    try:
        # 1. check inputs
        request.params.validate()
        if request.output is not None:
            check_output_path(request.output, request.source)
        info = probe(request.source)
        check_renderable(info)
        start, end = resolve_range(info, request.start, request.end)
        # 2. prepare
        engine = engine or create_engine(request.params)
        engine.prepare(cancel)
        measure_source(engine, info)
        out_size = engine.output_size(info.width, info.height)
        entry = None
        budget = None
        if request.use_cache:
            cache = cache or FrameCache()
            entry = open_cache_entry(cache, info, engine, start)
            cache.evict(keep={entry.key})
            missing = len(set(range(start, end)) - entry.indices())
            budget = CacheBudget(cache, entry, frame_bytes(out_size), missing)
            budget.check_start()
        plan = _Plan(info, start, end, engine, entry, out_size, budget=budget)
        if is_stateful(request.params):
            plan.stabilizer = Stabilizer(request.params, start, lambda index: _decode_one(plan, index)[0])
        keyframes = _keyframe_plan(info, request, start, end, cancel, local=stages is None)
        if has_region(request.params):  # keyframes: up to the keyframe closing the last segment
            plan.edit = RegionEdit(request.params, info, start, keyframes.stop if keyframes else end)
        if keyframes and entry is not None:  # the app marks them on the timeline (a live plan: none settled yet)
            _note_plan(entry, keyframes.plan())
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
        from pipeline.keyframes.stages import keyframe_stages

        # no name holds the stages: leaving early (close, Ctrl+C) then winds them down before the engine closes
        for event in (stages(plan, cancel, writer) if stages is not None  # a cluster's (pipeline.cluster)
                      else keyframe_stages(plan, keyframes, cancel, writer) if keyframes
                      else _run_stages(plan, cancel, writer)):
            if isinstance(event, FrameReady):
                done = event.done
                rendered += not event.from_cache
            yield event
        if keyframes and entry is not None:  # a live plan's, as far as it settled (a made plan's is there)
            _note_plan(entry, keyframes.plan())
        if cancel.cancelled:
            raise CancelledError()
        # 4. finish: verify the partial, and only then move it over the target
        verification = None
        output = None
        if writer is not None:
            expected = writer.expected_audio

            def check(path):
                return verify_output(
                    path,
                    frames=end - start,
                    fps=info.fps,
                    duration=info.range_duration(start, end),
                    audio=bool(expected),
                    size=writer.size,
                    timestamps=[info.frame_time(i) - info.frame_time(start) for i in range(start, end)] if info.vfr else None,
                    audio_streams=expected,
                )

            output = str(writer.finish(check))
            verification = writer.verification.to_json()
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
        kind = "out_of_memory" if isinstance(exc, OutOfMemoryError) else "error"
        yield Failed(str(exc), exit_code=exc.exit_code, done=done, kind=kind)
    except OSError as exc:  # a file could not be read or written: say which, and why
        yield Failed(describe_os_error(exc, cache.root if cache is not None else None), exit_code=2, done=done)
    except Exception as exc:  # an internal error: keep the traceback in the log, show one line
        log.error("render failed: %s: %s", type(exc).__name__, exc)
        log.debug("render failed:\n%s", traceback.format_exc())
        yield Failed(f"internal error: {type(exc).__name__}: {exc}", exit_code=1, done=done)
    finally:
        if writer is not None:  # not finished: drop the partial output, keep the target as it was
            writer.abort()
        if own_engine and engine is not None:
            engine.close()
        if plan is not None and plan.edit is not None:
            plan.edit.close()


def _keyframe_plan(info: VideoInfo, request: RenderRequest, start: int, end: int, cancel: CancelToken,
                   local: bool) -> KeyframePlan | LivePlan | None:
    """Where the keyframes go (None: every frame is one). A clip the app has scanned has its plan at once;
    otherwise the local render plans while it reads the frames (a LivePlan: the clip is read once, not
    scanned first); a region edit (its masks run to the plan's end) and a cluster's stages plan first."""
    if not uses_keyframes(request.params):
        return None
    scanned = plan_if_scanned(info.path, request.params, start, end)
    if scanned is not None:
        return scanned
    if local and not has_region(request.params):
        return LivePlan(request.params, start, end, info.frame_count)
    return plan_keyframes(info.path, request.params, start, end, cancel)


def _note_plan(entry: CacheEntry, plan: KeyframePlan | None) -> None:
    """Keep a live plan in the entry for the timeline's marks (what was settled, if cancelled), unless the
    entry holds a longer plan already (plans from one start agree where they overlap)."""
    if plan is not None and entry.read_meta().get("keyframes", {}).get("stop", 0) < plan.stop:
        entry.write_meta({"keyframes": plan.to_json()})


def describe_os_error(exc: OSError, cache_root=None) -> str:
    """One line naming the file and the cause; "frame cache" only when the file is in the cache."""
    name = exc.filename or ""
    in_cache = bool(name) and cache_root is not None and _is_inside(name, cache_root)
    what = f"the frame cache ({name})" if in_cache else (str(name) if name else "a file")
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        hint = "run again (it resumes)" if in_cache else "try again"
        return f"the disk is full while writing {what}; free some space and {hint}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot {'write' if in_cache else 'read or write'} {what}: {reason}"


def _is_inside(name, folder) -> bool:
    from pathlib import Path

    try:
        return Path(name).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False


def output_timestamps(info: VideoInfo, start: int, end: int) -> list[int]:
    """Each output frame's pts (time_base units, 0 = the range's first frame). Frames that share a
    source timestamp (duplicate packets) are kept, one tick apart, since the encoder needs increasing ones."""
    stamps, last = [], -1
    for index in range(start, end):
        pts = max(info.pts[index] - info.pts[start], last + 1)
        stamps.append(pts)
        last = pts
    return stamps


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
    """Run decode -> engine (N workers) -> consistency -> cache/encode and yield their events in order.

    The engine's work on a frame is computed ahead, by `frame_workers` threads and in batches of
    `batch_frames`, whenever its output does not depend on earlier outputs (see _computes_ahead);
    the consistency state (pipeline.temporal) then follows in order, in one thread. Otherwise the
    engine runs in that one thread, in order. Either way the frames come out in order and equal.
    """
    ahead = _computes_ahead(plan)
    flows = plan.stabilizer is not None and propagates_flow(plan.engine.params)
    workers = _frame_workers(plan.engine) if ahead else 1
    batch = max(1, int(getattr(plan.engine, "batch_frames", 1))) if ahead else 1
    units_q: queue.Queue = queue.Queue(max(1, QUEUE_FRAMES // batch))  # futures of frame batches, in order
    results_q: queue.Queue = queue.Queue(QUEUE_FRAMES)
    # bounded: a slow consumer holds the render back instead of growing memory with full frames
    events_q: queue.Queue = queue.Queue(EVENT_QUEUE)
    stop = threading.Event()  # set by any stage that fails, or by the consumer leaving
    failure: list[BaseException] = []
    pool = ThreadPoolExecutor(workers, thread_name_prefix="vdiff-engine")

    def guarded(stage, *args):
        try:
            stage(*args)
        except BaseException as exc:  # forwarded to the consumer, which re-raises it
            failure.append(exc)
            stop.set()

    def put(q: queue.Queue, item) -> bool:
        return put_unless_stopped(q, item, stop)

    def get(q: queue.Queue):
        return get_unless_stopped(q, stop, _DONE)

    def context(index: int, neighbors: list, center: int) -> FrameContext:
        return FrameContext(
            index=index,
            cancel=cancel,
            on_step=lambda step, steps: _offer(events_q, Step(index, step, steps)),
            neighbors=neighbors,
            center=center,
        )

    def compute(unit: list) -> list:
        """In a worker: each frame of the unit from the cache or, when ahead, through the engine; and the
        optical flow from the previous source frame, which depends on the sources only."""
        results, todo = [], []
        for index, frame, neighbors, center, previous in unit:
            if stop.is_set() or cancel.cancelled:
                raise CancelledError()
            image = plan.entry.load(index) if plan.entry is not None and frame is None else None
            if image is None and frame is None:  # listed in the cache but unreadable: decode it now
                frame, neighbors, center = _decode_one(plan, index)
            flow = None
            if image is None and previous is not None and flows:
                size = plan.engine.output_size(frame.shape[1], frame.shape[0])
                flow = motion(flow_source(previous, size), flow_source(frame, size), plan.engine.params.flow_blend)
            result = [index, frame, context(index, neighbors, center), image, image is not None, flow]
            if image is None and plan.edit is not None:  # the engine may keep the source outside it too
                result[2].mask = plan.edit.mask_at(index, plan.out_size)
            results.append(result)
            if ahead and image is None:
                todo.append(result)
        if len(todo) > 1:
            images = plan.engine.process_batch([r[1] for r in todo], [r[2] for r in todo])
        else:
            images = [plan.engine.process(r[1], r[2]) for r in todo]
        for result, image in zip(todo, images):
            result[3] = image
        return results

    def decode() -> None:
        unit: list = []
        last = (-1, None)  # the latest decoded frame, for the flow to the next one
        for index, frame, neighbors, center in _frames_with_neighbors(plan):
            if cancel.cancelled:
                break
            previous = last[1] if last[0] == index - 1 and index > plan.start else None
            if frame is not None:
                last = (index, frame)
            unit.append((index, frame, neighbors, center, previous))
            if len(unit) == batch:
                if not put(units_q, pool.submit(compute, unit)):
                    break
                unit = []
        else:
            if unit:
                put(units_q, pool.submit(compute, unit))
        put(units_q, _DONE)

    def follow() -> None:
        """In order: the consistency state, and the engine itself when it needs that state."""
        while True:
            future = get(units_q)
            if future is _DONE:
                break
            for index, frame, ctx, image, from_cache, flow in future.result():
                if cancel.cancelled:
                    raise CancelledError()
                if from_cache:
                    if plan.stabilizer is not None:
                        plan.stabilizer.remember(index, image)
                elif plan.stabilizer is not None:
                    engine = _Computed(plan.engine, image) if ahead else plan.engine
                    image = plan.stabilizer.process(engine, frame, ctx, flow)
                elif not ahead:
                    image = plan.engine.process(frame, ctx)
                if plan.edit is not None and not from_cache:  # outside the mask the output is the source
                    image = plan.edit.apply(index, frame, image)
                    if plan.stabilizer is not None:
                        plan.stabilizer.replace_output(image)
                if not put(results_q, (index, image, from_cache, flow)):
                    return
        put(results_q, _DONE)

    def store() -> None:
        done = 0
        total = plan.end - plan.start
        stamps = output_timestamps(plan.info, plan.start, plan.end) if writer is not None else []
        while True:
            item = get(results_q)
            if item is _DONE:
                break
            index, image, from_cache, flow = item
            if plan.entry is not None and not from_cache:
                if plan.budget is not None:
                    plan.budget.before_store(image.nbytes)
                plan.entry.store(index, image)
            if writer is not None:
                writer.write(image, stamps[index - plan.start])
            done += 1
            if not put(events_q, FrameReady(index, image, from_cache, done, total, motion=flow)):  # waits while the consumer is behind
                return

    threads = [
        threading.Thread(target=guarded, args=(stage,), name=f"vdiff-{stage.__name__}", daemon=True)
        for stage in (decode, follow, store)
    ]
    ended = False
    with _parallel(plan.engine, workers):
        for thread in threads:
            thread.start()
        try:
            while True:
                try:
                    event = events_q.get(timeout=0.1)
                except queue.Empty:
                    if not any(thread.is_alive() for thread in threads) and events_q.empty():
                        break  # every stage ended and everything it reported was handed on
                    continue
                yield event
            ended = True
        finally:
            if not ended:  # the consumer left early, or Ctrl+C: wind the stages down
                cancel.cancel()
                stop.set()
            for thread in threads:
                thread.join()
            pool.shutdown(wait=True, cancel_futures=True)
    if failure:
        raise failure[0]


def put_unless_stopped(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` on a bounded queue, waiting while it is full; False (not put) once `stop` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def get_unless_stopped(q: queue.Queue, stop: threading.Event, done):
    """The next item of a queue, waiting while it is empty; `done` once `stop` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return done


def _offer(events_q: queue.Queue, event: Event) -> None:
    """Progress that may be dropped: a slow consumer misses a step count, never a frame."""
    try:
        events_q.put_nowait(event)
    except queue.Full:
        pass


def _computes_ahead(plan: _Plan) -> bool:
    """Whether the engine's output for a frame can be computed before the frames before it are finished:
    always, except for diffusion starting from the propagated previous frame or attending to earlier ones
    (fast-style and classical blend the propagated frame into their own output afterwards)."""
    if plan.stabilizer is None:
        return True
    params = plan.engine.params
    return not (plan.engine.name == "diffusion" and (params.temporal_flow or params.cross_frame_attention))


def _frame_workers(engine: Engine) -> int:
    """How many threads may run the engine on different frames at once (engines that offer it say so)."""
    return max(1, int(getattr(engine, "frame_workers", 1)))


def _parallel(engine: Engine, workers: int):
    """The engine's own set-up for `workers` concurrent frames (e.g. one single-thread session each)."""
    if workers > 1 and hasattr(engine, "parallel"):
        return engine.parallel(workers)
    return nullcontext()


class _Computed:
    """Stands in for the engine in the stabilizer when the engine's output was computed ahead."""

    def __init__(self, engine: Engine, output: np.ndarray):
        self._engine = engine
        self._output = output
        self.name = engine.name

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return self._engine.output_size(width, height)

    def process(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        return self._output


def _frames_with_neighbors(plan: _Plan) -> Iterator[tuple]:
    """(index, frame or None if cached, neighbours, centre) for each frame of the range, in order."""
    cached = plan.entry.indices() if plan.entry is not None else set()
    wanted = set(range(plan.start, plan.end)) - cached
    return frames_with_neighbors(plan.info, plan.start, plan.end, plan.engine.temporal_radius, wanted)


def _decode_one(plan: _Plan, index: int) -> tuple[np.ndarray, list, int]:
    radius = plan.engine.temporal_radius
    with VideoReader(plan.info.path, plan.info) as reader:
        lo, hi = max(0, index - radius), min(plan.info.frame_count, index + radius + 1)
        frames = [reader.frame(i) for i in range(lo, hi)]
    return frames[index - lo], frames, index - lo


def render_span(engine: Engine, info: VideoInfo, start: int, end: int, cancel: CancelToken | None = None,
                stabilizer: Stabilizer | None = None) -> Iterator[FrameReady]:
    """Frames start..end-1 of `info` through a prepared engine, in order, with no cache and no output:
    the same stages as a render, for a cluster worker's chunk (pipeline.cluster). `stabilizer`, when
    given, carries the consistency state in (its anchor and previous frame set by the caller)."""
    plan = _Plan(info, start, end, engine, None, engine.output_size(info.width, info.height), stabilizer)
    for event in _run_stages(plan, cancel or CancelToken(), None):
        if isinstance(event, FrameReady):
            yield event


def measure_source(engine: Engine, info: VideoInfo) -> None:
    """Let the engine measure the whole clip first (the denoiser's noise level); engines without it skip."""
    measure = getattr(engine, "measure_source", None)
    if measure is not None:
        measure(info)


def output_size_for(engine: Engine, info: VideoInfo, codec: str) -> tuple[int, int]:
    size = engine.output_size(info.width, info.height)
    return size if codec == "png" else even_size(*size)
