"""The driver side of a cluster render: the stages render_frames runs instead of its local ones.

Chunks wait in a queue; one thread per worker takes the next chunk, starts it on its actor and
receives the frames as the actor yields them, unpacks each and writes it into the frame cache at
once (the cache is the source of truth: a killed driver loses nothing that arrived). The generator
itself walks the range in order, takes each frame from memory or the cache, hands it to the video
writer and yields FrameReady, as a local render does. A lost worker's unreceived frames go back into
the queue for the others; an engine error on a worker ends the render with that worker's name.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Callable, Iterator

from pipeline.cluster.chunks import MAX_CHUNK_FRAMES, MIN_CHUNK_FRAMES, SEAM_OVERLAP, Chunk, plan_chunks, warm_start
from pipeline.cluster.pool import Worker, WorkerPool, failure
from pipeline.cluster.progress import ClusterProgress, WorkerLost
from pipeline.cluster.transfer import pack, unpack
from pipeline.errors import CancelledError, VdiffError
from pipeline.events import CancelToken, Event, FrameReady
from pipeline.temporal.stabilizer import anchors_color

log = logging.getLogger(__name__)

BACKPRESSURE_FRAMES = 8  # frames a worker may have produced ahead of the driver's receiving them
REORDER_BYTES = 256 * 1024**2  # arrived frames kept in memory for the in-order writer; the rest reload from the cache
PROGRESS_INTERVAL_S = 0.5


class ChunkQueue:
    """Chunks waiting for a worker, in frame order; a lost worker's remainder comes back in."""

    def __init__(self, chunks: list[Chunk]):
        self._pending = deque(sorted(chunks, key=lambda c: c.start))
        self._busy = 0
        self._cond = threading.Condition()

    def take(self, stop: threading.Event) -> Chunk | None:
        """The next chunk; None when every chunk is done (or on stop). Waits while others may give some back."""
        with self._cond:
            while not stop.is_set():
                if self._pending:
                    self._busy += 1
                    return self._pending.popleft()
                if self._busy == 0:
                    return None
                self._cond.wait(0.1)
            return None

    def finish(self, remainder: Chunk | None = None) -> None:
        """A taken chunk is done; `remainder`, if any, goes back to the front of the queue."""
        with self._cond:
            self._busy -= 1
            if remainder is not None and remainder.frames > 0:
                self._pending.appendleft(remainder)
            self._cond.notify_all()

    def add(self, chunk: Chunk) -> None:
        with self._cond:
            self._pending.append(chunk)
            self._cond.notify_all()


class ClusterStages:
    """A callable with _run_stages' contract: (plan, cancel, writer) -> events, frames in order."""

    def __init__(self, pool: WorkerPool, max_frames: int = MAX_CHUNK_FRAMES, overlap: int = SEAM_OVERLAP,
                 keyframes: Callable[[], list[int]] | None = None):
        self.pool, self.max_frames, self.overlap = pool, max_frames, overlap
        self.keyframes = keyframes  # hook for keyframe rendering: the source's keyframes, to align chunks

    def __call__(self, plan, cancel: CancelToken, writer) -> Iterator[Event]:
        import ray

        entry = plan.entry
        if entry is None:
            raise VdiffError("a cluster render needs the frame cache")
        span = range(plan.start, plan.end)
        cached = entry.indices() & set(span)
        known = set(cached)  # frames whose output is in the cache (the receivers add theirs)
        known_lock = threading.Lock()
        missing = sorted(set(span) - cached)
        workers = self.pool.workers
        keyframes = self.keyframes() if self.keyframes is not None else None
        chunks = ChunkQueue(plan_chunks(missing, len(workers), self.max_frames,
                                        min(MIN_CHUNK_FRAMES, self.max_frames), keyframes))
        arrivals: queue.Queue = queue.Queue()
        stop = threading.Event()
        params = plan.engine.params
        propagates = params.temporal_flow
        needs_anchor = anchors_color(params) or (params.engine == "diffusion" and params.cross_frame_attention)

        def is_known(index: int) -> bool:
            with known_lock:
                return index in known

        def task_for(chunk: Chunk) -> dict:
            warm = warm_start(chunk, plan.start, propagates, is_known, self.overlap)
            task = {"start": chunk.start, "end": chunk.end, "first": warm.first, "range_start": plan.start,
                    "seed": None, "anchor": None}
            if warm.seed is not None:
                image = entry.load(warm.seed)
                if image is not None:
                    task["seed"] = (warm.seed, pack(image))
                else:  # damaged since: warm up instead
                    task["first"] = max(plan.start, chunk.start - self.overlap)
            if needs_anchor and task["first"] > plan.start and is_known(plan.start):
                anchor = entry.load(plan.start)
                task["anchor"] = pack(anchor) if anchor is not None else None
            return task

        def serve(worker: Worker) -> None:
            while True:
                chunk = chunks.take(stop)
                if chunk is None:
                    worker.state = "idle"
                    return
                worker.state = "rendering"
                following = chunk.start  # the next frame expected: chunks stream in order
                try:
                    stream = worker.actor.render_chunk.options(
                        num_returns="streaming", _generator_backpressure_num_objects=BACKPRESSURE_FRAMES
                    ).remote(task_for(chunk))
                    for ref in stream:
                        index, data = ray.get(ref)
                        image = unpack(data)
                        entry.store(index, image)
                        with known_lock:
                            known.add(index)
                        worker.arrived(time.perf_counter())
                        arrivals.put(("frame", index, image))
                        following = index + 1
                        if stop.is_set():
                            break
                except ray.exceptions.RayTaskError as exc:  # the engine failed on that worker: no retry helps
                    chunks.finish()
                    arrivals.put(("fatal", failure(worker, exc)))
                    return
                except ray.exceptions.RayError as exc:  # the worker (or its node) is gone: others take the rest
                    remainder = Chunk(following, chunk.end)
                    chunks.finish(remainder)
                    worker.state = "lost"
                    if not stop.is_set():
                        arrivals.put(("lost", worker, _first_line(exc), remainder.frames))
                    return
                except BaseException as exc:  # e.g. the cache could not be written: the render fails
                    chunks.finish()
                    arrivals.put(("fatal", exc))
                    return
                chunks.finish()

        threads = [threading.Thread(target=serve, args=(w,), name=f"vdiff-cluster-{w.number}", daemon=True)
                   for w in workers]
        for thread in threads:
            thread.start()
        pending: dict = {}  # arrived frames near the write position
        pending_bytes = 0
        last_progress = 0.0
        done = 0
        total = plan.end - plan.start
        finished = False

        def progress() -> ClusterProgress:
            statuses = tuple(w.status() for w in workers)
            received = sum(w.frames for w in statuses)
            return ClusterProgress(statuses, received, len(missing), received / max(time.perf_counter() - began, 1e-6))

        began = time.perf_counter()
        try:
            yield progress()
            index = plan.start
            while index < plan.end:
                if cancel.cancelled:
                    raise CancelledError()
                if is_known(index):
                    image = pending.pop(index, None)
                    if image is not None:
                        pending_bytes -= image.nbytes
                    else:
                        image = entry.load(index)
                    if image is None:  # damaged in the cache: render it again
                        with known_lock:
                            known.discard(index)
                        cached.discard(index)
                        chunks.add(Chunk(index, index + 1))
                        continue
                    if writer is not None:
                        writer.write(image, plan.info.pts[index] - plan.info.pts[plan.start])
                    done += 1
                    yield FrameReady(index, image, index in cached, done, total)
                    index += 1
                    continue
                try:
                    message = arrivals.get(timeout=0.1)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and arrivals.empty():
                        raise VdiffError("every cluster worker was lost; the frames they returned are in the cache: "
                                         "run again with --resume") from None
                    message = None
                if message is not None:
                    kind = message[0]
                    if kind == "frame":
                        _, arrived, image = message
                        if arrived >= index and pending_bytes + image.nbytes <= REORDER_BYTES:
                            pending[arrived] = image
                            pending_bytes += image.nbytes
                    elif kind == "lost":
                        _, worker, text, requeued = message
                        log.warning("%s was lost: %s", worker.status().label(), text)
                        yield WorkerLost(worker.status(), text, requeued)
                    else:
                        raise message[1]
                now = time.perf_counter()
                if now - last_progress >= PROGRESS_INTERVAL_S:
                    last_progress = now
                    yield progress()
            finished = True
            yield progress()
        finally:
            stop.set()
            if not finished:  # cancelled, failed or interrupted: stop the remote work now
                self.pool.kill()
            for thread in threads:
                thread.join(timeout=10)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
