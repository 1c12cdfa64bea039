"""Events a cluster render adds to the render's event stream (pipeline.events): who renders what, and
which worker was lost. A consumer that does not know them can ignore them; the render still ends with
exactly one of Finished, Cancelled or Failed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerStatus:
    number: int  # 1-based, as the progress lines show it
    node: str  # the node's IP address
    pid: int
    device: str
    frames: int  # frames this worker returned in this render
    fps: float  # its rate over the last few seconds
    state: str  # "rendering", "idle" or "lost"

    def label(self) -> str:
        return f"worker {self.number} on node {self.node} (pid {self.pid})"


@dataclass(frozen=True)
class ClusterProgress:
    workers: tuple[WorkerStatus, ...]
    received: int  # frames the workers returned in this render
    wanted: int  # frames they were asked for (the range less what was cached)
    fps: float  # all workers together, over the last few seconds

    def summary(self) -> str:
        """One line: the total, then each worker's frames and rate."""
        parts = [f"w{w.number}@{w.node} {w.frames} fr {w.fps:.1f} fps" + ("" if w.state != "lost" else " LOST")
                 for w in self.workers]
        return f"cluster {self.received}/{self.wanted} frames {self.fps:.1f} fps: " + ", ".join(parts)


@dataclass(frozen=True)
class WorkerLost:
    worker: WorkerStatus
    message: str
    requeued: int  # frames of its chunk that went back into the queue

    def summary(self) -> str:
        return f"{self.worker.label()} was lost ({self.message}); {self.requeued} frames re-queued"
