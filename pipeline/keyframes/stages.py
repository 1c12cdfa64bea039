"""The render loop with keyframes: decode -> keyframes -> in-betweens -> cache/encode.

Each stage is a small named unit joined to the next by a bounded queue, so memory stays flat in
clip length (at most QUEUE_SEGMENTS segments of frames are held):

- `decode` (thread): reads the frames [start, plan.stop) once, in order; for each keyframe it hands
  the engine's work (from the cache, or computed ahead when its output does not depend on earlier
  outputs) to the workers, and passes the keyframe on with the in-between frames before it.
- `chain` (thread): the keyframes in order through the existing consistency mechanisms (a
  Stabilizer per shot: the previous keyframe's output warped to this one, colour anchoring, shared
  noise and cross-frame attention for diffusion); then the segment's in-betweens go to the workers.
- `key_unit`, `inbetween_unit` (worker pool): keyframes are independent given their inits,
  in-betweens are independent given their two keyframes (pipeline.keyframes.synth).
- `store` (thread): frames in order to the cache and the writer, and a FrameReady event each.

A keyframe past the range's end (it closes the last segment) is rendered and cached, not output.
Every frame of the range is cached on its own: a killed render resumes with the same frames, and a
longer range from the same start reuses them (the plan does not depend on the end).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from pipeline.engines import FrameContext
from pipeline.engines.base import resize_to
from pipeline.errors import CancelledError
from pipeline.events import CancelToken, Event, FrameReady, Step
from pipeline.keyframes.plan import KeyframePlan, LivePlan
from pipeline.keyframes.synth import Keyframe, synthesize, warp_sharp
from pipeline.render import get_unless_stopped, put_unless_stopped
from pipeline.temporal.stabilizer import Stabilizer, flow_source, is_stateful, motion, propagates_flow
from pipeline.video import VideoReader
from pipeline.video.window import frames_with_neighbors

QUEUE_SEGMENTS = 2  # keyframe segments buffered between stages
_DONE = object()


def keyframe_stages(plan, kplan: KeyframePlan | LivePlan, cancel: CancelToken, writer) -> Iterator[Event]:
    """Render plan.start..plan.end (a pipeline.render._Plan) by keyframes; yields Step and FrameReady."""
    yield from _KeyframeRender(plan, kplan, cancel, writer).events()


class _KeyframeRender:
    def __init__(self, plan, kplan: KeyframePlan | LivePlan, cancel: CancelToken, writer):
        from pipeline import render

        self.plan, self.kplan, self.cancel, self.writer = plan, kplan, cancel, writer
        self.engine = plan.engine
        self.params = plan.engine.params
        self.ahead = render._computes_ahead(plan) if is_stateful(self.params) else True
        self.flows = is_stateful(self.params) and propagates_flow(self.params)
        self.workers = render._frame_workers(self.engine) if self.ahead else 1
        self._parallel = render._parallel
        self._computed = render._Computed
        self.cached = plan.entry.indices() if plan.entry is not None else set()
        self.keys_q: queue.Queue = queue.Queue(QUEUE_SEGMENTS)
        self.out_q: queue.Queue = queue.Queue(QUEUE_SEGMENTS * (kplan.spacing + 1))
        self.events_q: queue.Queue = queue.Queue(render.EVENT_QUEUE)  # bounded, as the per-frame loop's
        self._offer = render._offer
        self.stop = threading.Event()
        self.failure: list[BaseException] = []
        self.pool = ThreadPoolExecutor(max(self.workers, _cores()), thread_name_prefix="vdiff-keyframes")
        self._between: list = []  # the decode stage's in-betweens read since the last keyframe
        self._last_key = None  # (index, frame) of that keyframe

    # -- plumbing ---------------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        return put_unless_stopped(q, item, self.stop)

    def _get(self, q: queue.Queue):
        return get_unless_stopped(q, self.stop, _DONE)

    def _guarded(self, stage) -> None:
        try:
            stage()
        except BaseException as exc:  # forwarded to the consumer, which re-raises it
            self.failure.append(exc)
            self.stop.set()
        finally:
            while True:  # the consumer counts these; it is gone only once stop is set
                try:
                    self.events_q.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop.is_set():
                        break

    def _context(self, index: int, neighbors: list | None = None, center: int = 0) -> FrameContext:
        return FrameContext(index=index, cancel=self.cancel, neighbors=neighbors or [], center=center,
                            on_step=lambda step, steps: self._offer(self.events_q, Step(index, step, steps)))

    def _check(self) -> None:
        if self.stop.is_set() or self.cancel.cancelled:
            raise CancelledError()

    def events(self) -> Iterator[Event]:
        stages = (self.decode, self.chain, self.store)
        threads = [threading.Thread(target=self._guarded, args=(s,), name=f"vdiff-{s.__name__}", daemon=True)
                   for s in stages]
        finished = 0
        with self._parallel(self.engine, self.workers):
            for thread in threads:
                thread.start()
            try:
                while finished < len(threads):
                    try:
                        event = self.events_q.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if event is _DONE:
                        finished += 1
                        continue
                    yield event
            finally:
                if finished < len(threads):  # the consumer left early, or Ctrl+C: wind the stages down
                    self.cancel.cancel()
                    self.stop.set()
                for thread in threads:
                    thread.join()
                self.pool.shutdown(wait=True, cancel_futures=True)
        if self.failure:
            raise self.failure[0]

    # -- stages -----------------------------------------------------------------------------------
    def decode(self) -> None:
        """Frames in order; each keyframe goes on with the in-betweens before it (in its shot). A live
        plan is made here from the frames read; each waits until its place in it is settled."""
        kplan = self.kplan
        waiting: deque = deque()  # read, not yet settled in a live plan (at most two frames)
        for item in self._frames():
            if self.cancel.cancelled:
                break
            kplan.measure(item[0], item[1])
            waiting.append(item)
            while waiting and kplan.settled(waiting[0][0]):
                if not self._hand_on(*waiting.popleft()):
                    return
            if not kplan.wants_frames_after(item[0]):  # a live plan closes before the horizon it read up to
                break
        self._put(self.keys_q, _DONE)

    def _hand_on(self, index, frame, neighbors, center) -> bool:
        """A settled frame: an in-between waits for its segment's keyframe, a keyframe goes to the workers
        and on to the chain with that segment. False when the render stops."""
        kplan, plan = self.kplan, self.plan
        if not kplan.is_keyframe(index):
            if index < plan.end:
                self._between.append((index, frame))
            return True
        last_key = self._last_key  # (index, frame) of the previous keyframe
        previous = last_key if last_key is not None and kplan.shot_of(index) == kplan.shot_of(last_key[0]) else None
        future = self.pool.submit(self.key_unit, index, frame, neighbors, center, previous)
        if not self._put(self.keys_q, (index, frame, neighbors, center, previous, self._between, future)):
            return False
        self._between, self._last_key = [], (index, frame)
        return True

    def chain(self) -> None:
        """Keyframes in order through the consistency state, then their segment's in-betweens."""
        stabilizer = None
        before: Keyframe | None = None
        while True:
            item = self._get(self.keys_q)
            if item is _DONE:
                break
            index, frame, neighbors, center, previous, between, future = item
            image, from_cache, flow, ctx = future.result()
            self._check()
            source = resize_to(frame, self.plan.out_size)
            if previous is None:  # a shot starts: nothing carries over from the shot before
                stabilizer = None
                if is_stateful(self.params):
                    stabilizer = Stabilizer(self.params, index, self._load_source, warp_output=warp_sharp)
                before = None
            if from_cache:
                if stabilizer is not None:
                    stabilizer.remember(index, image, flow_source(frame, self.plan.out_size) if self.flows else None)
            elif stabilizer is not None:
                engine = self._computed(self.engine, image) if self.ahead else self.engine
                image = stabilizer.process(engine, frame, ctx, flow, previous=previous[0] if previous else None)
            elif not self.ahead:
                image = self.engine.process(frame, ctx)
            if self.plan.edit is not None and not from_cache:  # a content edit: outside its mask, the source
                image = self.plan.edit.apply(index, frame, image)
                if stabilizer is not None:
                    stabilizer.replace_output(image)
            after = Keyframe(index, source, image)
            if before is not None:
                for t, frame_t in between:
                    if not self._put(self.out_q, (t, self.pool.submit(self.inbetween_unit, t, frame_t, before, after))):
                        return
            if not self._put(self.out_q, (index, (image, from_cache))):
                return
            before = after
        self._put(self.out_q, _DONE)

    def store(self) -> None:
        from pipeline.render import output_timestamps

        plan = self.plan
        done, total = 0, plan.end - plan.start
        stamps = output_timestamps(plan.info, plan.start, plan.end) if self.writer is not None else []
        while True:
            item = self._get(self.out_q)
            if item is _DONE:
                break
            index, result = item
            image, from_cache = result if isinstance(result, tuple) else result.result()
            if plan.entry is not None and not from_cache:
                if plan.budget is not None:
                    plan.budget.before_store(image.nbytes)
                plan.entry.store(index, image)
            if index >= plan.end:  # the keyframe closing the last segment: cached, not output
                continue
            if self.writer is not None:
                self.writer.write(image, stamps[index - plan.start])
            done += 1
            if not self._put(self.events_q, FrameReady(index, image, from_cache, done, total)):  # waits for the consumer
                return

    # -- worker units -----------------------------------------------------------------------------
    def key_unit(self, index, frame, neighbors, center, previous):
        """A keyframe from the cache, or the engine's output when computed ahead, and the flow from the
        previous keyframe's source (it depends on the sources only)."""
        self._check()
        ctx = self._context(index, neighbors, center)
        image = self.plan.entry.load(index) if index in self.cached else None
        if image is not None:
            return image, True, None, ctx
        if self.plan.edit is not None:  # the engine may keep the source outside it too
            ctx.mask = self.plan.edit.mask_at(index, self.plan.out_size)
        flow = None
        if previous is not None and self.flows:
            size = self.plan.out_size
            flow = motion(flow_source(previous[1], size), flow_source(frame, size), self.params.flow_blend)
        if self.ahead:
            image = self.engine.process(frame, ctx)
        return image, False, flow, ctx

    def inbetween_unit(self, index, frame, before: Keyframe, after: Keyframe):
        self._check()
        image = self.plan.entry.load(index) if index in self.cached else None
        if image is not None:
            return image, True
        fill = None
        if self.engine.fills_holes:  # networks take the plain blend there: their crop would flicker against it
            fill = lambda crop: self.engine.process(crop, self._context(index))  # noqa: E731
        image = synthesize(index, resize_to(frame, self.plan.out_size), before, after, fill)
        if self.plan.edit is not None:  # the carried keyframes hold the edit; outside its mask, the source
            image = self.plan.edit.apply(index, frame, image)
        return image, False

    # -- sources ----------------------------------------------------------------------------------
    def _frames(self) -> Iterator[tuple]:
        """(index, frame, neighbours, centre) for [start, kplan.horizon), with the engine's temporal radius."""
        return frames_with_neighbors(self.plan.info, self.plan.start, self.kplan.horizon, self.engine.temporal_radius)

    def _load_source(self, index: int):
        with VideoReader(self.plan.info.path, self.plan.info) as reader:
            return reader.frame(index)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
