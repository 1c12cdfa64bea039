"""The workers of one cluster render: one Ray actor per GPU (or per CPU core on nodes without one).

start() places the actors, has each load the model once and check whether its node sees the source
file (shared storage); nodes that do not get the encoded file once through the object store (a clip's
file is a hundredth of its decoded frames). kill() ends them at once: Ctrl+C and cancel use it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.cache import source_identity
from pipeline.cluster.progress import WorkerStatus
from pipeline.cluster.transfer import DEFAULT_CODEC
from pipeline.errors import BadInputError, CancelledError, VdiffError
from pipeline.events import CancelToken
from pipeline.request import StyleParams

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # placing actors and loading a large model on every node


class Worker:
    """The driver's view of one actor."""

    def __init__(self, number: int, actor):
        self.number = number
        self.actor = actor
        self.node = "?"
        self.pid = 0
        self.device = "?"
        self.frames = 0
        self.state = "idle"
        self.arrivals: list[float] = []  # recent frame arrival times, for its rate

    def describe(self, info: dict) -> None:
        self.node, self.pid, self.device = info["node"], info["pid"], info["device"]

    def arrived(self, now: float) -> None:
        self.frames += 1
        self.arrivals = [*self.arrivals[-11:], now]

    def status(self) -> WorkerStatus:
        times = self.arrivals
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return WorkerStatus(self.number, self.node, self.pid, self.device, self.frames, fps, self.state)


def plan_workers(resources: dict, params: StyleParams, requested: int | None) -> tuple[int, dict]:
    """How many workers the cluster takes and what each reserves: a GPU each when there are GPUs (and
    the device is not cpu), else a CPU each."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if params.device == "cuda" and gpus == 0:
        raise BadInputError("the Ray cluster has no GPU; choose --device cpu or auto")
    use_gpu = gpus > 0 and params.device != "cpu"
    available = gpus if use_gpu else cpus
    if available < 1:
        raise BadInputError("the Ray cluster has no CPU or GPU a worker could use")
    count = available if not requested else min(requested, available)
    return count, ({"num_gpus": 1, "num_cpus": 0} if use_gpu else {"num_cpus": 1})


class WorkerPool:
    def __init__(self, params: StyleParams, source: Path, requested: int | None = None, codec: str = DEFAULT_CODEC):
        self.params, self.source, self.requested, self.codec = params, Path(source), requested, codec
        self.workers: list[Worker] = []

    def start(self, cancel: CancelToken) -> None:
        """Place the actors and load the model on each; raises BadInputError naming the worker that failed."""
        import ray

        from pipeline.cluster.worker import ChunkWorker

        count, resources = plan_workers(ray.cluster_resources(), self.params, self.requested)
        remote = ray.remote(ChunkWorker)
        for number in range(1, count + 1):
            actor = remote.options(max_restarts=0, **resources).remote(self.params.to_dict(), number, self.codec)
            self.workers.append(Worker(number, actor))
        for worker, info in self._gather({w.actor.describe.remote(): w for w in self.workers}, cancel, "start").items():
            worker.describe(info)  # known before loading, so that a failed load names its node
        identity = source_identity(self.source)
        infos = self._gather({w.actor.load.remote(str(self.source), identity): w for w in self.workers}, cancel,
                             "load the engine")
        blind = [w for w, info in infos.items() if not info["sees_source"]]
        if blind:  # no shared storage there: send the encoded file once
            data = ray.put(self.source.read_bytes())
            self._gather({w.actor.receive_source.remote(data, self.source.suffix): w for w in blind}, cancel,
                         "receive the source")
        for worker, info in infos.items():
            worker.describe(info)
        log.info("cluster workers: %s", ", ".join(w.status().label() for w in self.workers))

    def _gather(self, refs: dict, cancel: CancelToken, doing: str) -> dict:
        """Wait for one call per worker, cancellable; the first failure names its worker."""
        import ray

        results, waiting = {}, list(refs)
        deadline = time.monotonic() + START_TIMEOUT_S
        while waiting:
            if cancel.cancelled:
                raise CancelledError()
            if time.monotonic() > deadline:
                raise VdiffError(f"{len(waiting)} cluster worker(s) did not {doing} within {START_TIMEOUT_S:.0f} s")
            ready, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.2)
            for ref in ready:
                worker = refs[ref]
                try:
                    results[worker] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise failure(worker, exc, f"could not {doing}") from None
        return results

    def kill(self) -> None:
        """End every worker now (their chunks in flight stop with them)."""
        import ray

        for worker in self.workers:
            try:
                ray.kill(worker.actor, no_restart=True)
            except Exception:  # already gone
                pass

    def describe(self) -> str:
        nodes = sorted({w.node for w in self.workers})
        devices = sorted({w.device for w in self.workers})
        return f"{len(self.workers)} Ray workers ({', '.join(devices)}) on {len(nodes)} node(s)"


def failure(worker: Worker, exc: BaseException, doing: str = "failed") -> VdiffError:
    """A worker's error as one line that names it and its node; keeps a VdiffError's exit code."""
    import ray

    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    error = cause if isinstance(cause, VdiffError) else VdiffError("")
    made = type(error)(f"worker {worker.number} on node {worker.node} {doing}: {text}")
    if not isinstance(cause, VdiffError):
        made.exit_code = 1
    return made
