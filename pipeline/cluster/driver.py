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
from pipeline.render import output_timestamps
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


class Receivers:
    """One thread per worker: take the next chunk, start it on the worker's actor, store each frame it
    streams back into the cache, and report it (or the worker's loss or error) on `arrivals`."""

    def __init__(self, plan, chunks: ChunkQueue, cached: set[int], overlap: int):
        params = plan.engine.params
        self.plan, self.entry, self.chunks, self.overlap = plan, plan.entry, chunks, overlap
        self.propagates = params.temporal_flow
        self.needs_anchor = anchors_color(params) or (params.engine == "diffusion" and params.cross_frame_attention)
        self.known = set(cached)  # frames whose output is in the cache
        self.lock = threading.Lock()
        self.arrivals: queue.Queue = queue.Queue()  # ("frame", index, image) | ("lost", worker, text, n) | ("fatal", exc)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, workers: list[Worker]) -> None:
        self.threads = [threading.Thread(target=self._serve, args=(w,), name=f"vdiff-cluster-{w.number}", daemon=True)
                        for w in workers]
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def is_known(self, index: int) -> bool:
        with self.lock:
            return index in self.known

    def forget(self, index: int) -> None:
        with self.lock:
            self.known.discard(index)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def task_for(self, chunk: Chunk) -> dict:
        """What the worker needs to render `chunk` as a single machine would (see chunks.warm_start)."""
        start = self.plan.start
        warm = warm_start(chunk, start, self.propagates, self.is_known, self.overlap)
        task = {"start": chunk.start, "end": chunk.end, "first": warm.first, "range_start": start,
                "seed": None, "anchor": None}
        if warm.seed is not None:
            image = self.entry.load(warm.seed)
            if image is not None:
                task["seed"] = (warm.seed, pack(image))
            else:  # damaged since: warm up instead
                task["first"] = max(start, chunk.start - self.overlap)
        if self.needs_anchor and task["first"] > start and self.is_known(start):
            anchor = self.entry.load(start)
            task["anchor"] = pack(anchor) if anchor is not None else None
        return task

    def _serve(self, worker: Worker) -> None:
        import ray

        while True:
            chunk = self.chunks.take(self.stop)
            if chunk is None:
                worker.state = "idle"
                return
            worker.state = "rendering"
            following = chunk.start  # the next frame expected: a chunk streams in order
            try:
                stream = worker.actor.render_chunk.options(
                    num_returns="streaming", _generator_backpressure_num_objects=BACKPRESSURE_FRAMES
                ).remote(self.task_for(chunk))
                for ref in stream:
                    index, data = ray.get(ref)
                    image = unpack(data)
                    with self.lock:  # the cache's bound, as a local render keeps it (one receiver at a time)
                        if self.plan.budget is not None:
                            self.plan.budget.before_store(image.nbytes)
                    self.entry.store(index, image)  # the cache first: a killed driver keeps the frame
                    with self.lock:
                        self.known.add(index)
                    worker.arrived(time.perf_counter())
                    self.arrivals.put(("frame", index, image))
                    following = index + 1
                    if self.stop.is_set():
                        break
            except ray.exceptions.RayTaskError as exc:  # the engine failed on that worker: no retry helps
                self.chunks.finish()
                self.arrivals.put(("fatal", failure(worker, exc)))
                return
            except ray.exceptions.RayError as exc:  # the worker (or its node) is gone: others take the rest
                remainder = Chunk(following, chunk.end)
                self.chunks.finish(remainder)
                worker.state = "lost"
                if not self.stop.is_set():
                    self.arrivals.put(("lost", worker, _first_line(exc), remainder.frames))
                return
            except BaseException as exc:  # e.g. the cache could not be written: the render fails
                self.chunks.finish()
                self.arrivals.put(("fatal", exc))
                return
            self.chunks.finish()


class ClusterStages:
    """A callable with _run_stages' contract: (plan, cancel, writer) -> events, frames in order."""

    def __init__(self, pool: WorkerPool, max_frames: int = MAX_CHUNK_FRAMES, overlap: int = SEAM_OVERLAP,
                 keyframes: Callable[[], list[int]] | None = None):
        self.pool, self.max_frames, self.overlap = pool, max_frames, overlap
        self.keyframes = keyframes  # hook for keyframe rendering: the source's keyframes, to align chunks

    def __call__(self, plan, cancel: CancelToken, writer) -> Iterator[Event]:
        entry = plan.entry
        if entry is None:
            raise VdiffError("a cluster render needs the frame cache")
        cached = entry.indices() & set(range(plan.start, plan.end))
        missing = sorted(set(range(plan.start, plan.end)) - cached)
        workers = self.pool.workers
        keyframes = self.keyframes() if self.keyframes is not None else None
        chunks = ChunkQueue(plan_chunks(missing, len(workers), self.max_frames,
                                        min(MIN_CHUNK_FRAMES, self.max_frames), keyframes))
        receivers = Receivers(plan, chunks, cached, self.overlap)
        stamps = output_timestamps(plan.info, plan.start, plan.end) if writer is not None else []
        pending: dict = {}  # arrived frames near the write position
        pending_bytes = 0
        last_progress = 0.0
        done, total = 0, plan.end - plan.start
        finished = False
        began = time.perf_counter()

        def progress() -> ClusterProgress:
            statuses = tuple(w.status() for w in workers)
            received = sum(w.frames for w in statuses)
            return ClusterProgress(statuses, received, len(missing), received / max(time.perf_counter() - began, 1e-6))

        receivers.start(workers)
        try:
            yield progress()
            index = plan.start
            while index < plan.end:
                if cancel.cancelled:
                    raise CancelledError()
                if receivers.is_known(index):  # next in order: to the writer
                    image = pending.pop(index, None)
                    if image is not None:
                        pending_bytes -= image.nbytes
                    else:
                        image = entry.load(index)
                    if image is None:  # damaged in the cache: render it again
                        receivers.forget(index)
                        cached.discard(index)
                        chunks.add(Chunk(index, index + 1))
                        continue
                    if writer is not None:
                        writer.write(image, stamps[index - plan.start])
                    done += 1
                    yield FrameReady(index, image, index in cached, done, total)
                    index += 1
                    continue
                try:
                    message = receivers.arrivals.get(timeout=0.1)
                except queue.Empty:
                    if not receivers.alive() and receivers.arrivals.empty():
                        raise VdiffError("every cluster worker was lost; the frames they returned are in the cache: "
                                         "run again with --resume") from None
                    message = None
                if message is not None and message[0] == "frame":
                    _, arrived, image = message
                    if arrived >= index and pending_bytes + image.nbytes <= REORDER_BYTES:
                        pending[arrived] = image
                        pending_bytes += image.nbytes
                elif message is not None and message[0] == "lost":
                    _, worker, text, requeued = message
                    log.warning("%s was lost: %s", worker.status().label(), text)
                    yield WorkerLost(worker.status(), text, requeued)
                elif message is not None:
                    raise message[1]
                now = time.perf_counter()
                if now - last_progress >= PROGRESS_INTERVAL_S:
                    last_progress = now
                    yield progress()
            finished = True
            yield progress()
        finally:
            receivers.stop.set()
            if not finished:  # cancelled, failed or interrupted: stop the remote work now
                self.pool.kill()
            receivers.join()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
