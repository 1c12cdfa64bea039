"""Render and export jobs: a queue, the running job as a small state machine, and a short history.

The running job: idle -> starting (submitted; the engine may be loading) -> rendering <-> paused ->
idle, ending with exactly one of finished / cancelled / failed. A job submitted while another runs
waits in the queue and starts when the one before it ends. Each Job has an id, a kind ("render" or
"export") and a state; ended jobs stay in `history` (the newest HISTORY). The GUI builds each
RenderRequest here; the worker only ever sees the request.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QTimer, Signal

from pipeline.request import RenderRequest
from pipeline.words import count
from vdiff_gui.project_state import ProjectState
from vdiff_gui.render_worker import RenderWorker

IDLE, STARTING, RENDERING, PAUSED = "idle", "starting", "rendering", "paused"
QUEUED, FINISHED, CANCELLED, FAILED = "queued", "finished", "cancelled", "failed"
HISTORY = 20
_ids = itertools.count(1)


@dataclass
class Job:
    """One render or export: what it asks for, where it stands, and how it ended."""

    request: RenderRequest
    id: int = field(default_factory=lambda: next(_ids))
    state: str = QUEUED  # queued, starting, rendering, paused, then finished, cancelled or failed
    message: str = ""  # the last status line, or why it failed
    result: dict | None = None  # the Finished dict (output, verification, ...)
    created: float = field(default_factory=time.time)
    ended: float | None = None

    @property
    def kind(self) -> str:
        return "export" if self.request.output is not None else "render"

    @property
    def frames(self) -> str:
        end = self.request.end
        return f"frames {self.request.start}–{end - 1}" if end is not None else f"frames {self.request.start}–end"

    @property
    def verified(self) -> bool | None:
        """An export's verification: True, False, or None when there is none (yet)."""
        verification = (self.result or {}).get("verification")
        return None if not verification else bool(verification.get("ok"))

    def describe(self) -> str:
        what = self.request.output.path.name if self.request.output is not None else self.request.source.name
        return f"#{self.id} {self.kind} {what} ({self.frames})"


def format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class JobController(QObject):
    state_changed = Signal(str)
    status_changed = Signal(str)  # one line: frames, fps, ETA, or what is loading
    progress_changed = Signal(int, int)  # done, total
    render_done = Signal()  # a render (not an export) finished
    export_done = Signal(dict)  # the Finished dict of an export: output and verification
    cancelled = Signal()
    failed = Signal(str, str)  # message, kind
    jobs_changed = Signal()  # the queue, the running job or the history changed
    submitted_while_idle = Signal()  # a job asked for while none ran (not the queue going on): a new attempt
    cluster_status_changed = Signal(str)  # a cluster render's workers: frames and rate each, or a lost one

    def __init__(self, state: ProjectState, worker: RenderWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.worker = state, worker
        self.job_state = IDLE
        self.current: Job | None = None
        self.queue: deque[Job] = deque()
        self.history: deque[Job] = deque(maxlen=HISTORY)
        self.last_request: RenderRequest | None = None
        self._total = 0
        self.cluster: str | None = None  # the Ray address renders go to (vdiff_gui.widgets.render_target); None: here
        worker.cluster_changed.connect(self.cluster_status_changed)
        worker.render_started.connect(self._on_started)
        worker.progress_changed.connect(self._on_progress)
        worker.step_changed.connect(self._on_step)
        worker.loading_changed.connect(self._on_loading)
        worker.render_finished.connect(self._on_finished)
        worker.render_cancelled.connect(self._on_cancelled)
        worker.render_failed.connect(self._on_failed)
        self.status_changed.connect(self._remember_status)

    def _remember_status(self, text: str) -> None:
        if self.current is not None:
            self.current.message = text

    @property
    def busy(self) -> bool:
        return self.job_state != IDLE

    @property
    def request(self) -> RenderRequest | None:
        return self.current.request if self.current is not None else None

    def jobs(self) -> list[Job]:
        """Every job the list shows: the running one, the queued ones, then the history (newest first)."""
        return ([self.current] if self.current else []) + list(self.queue) + list(reversed(self.history))

    def _set(self, job_state: str) -> None:
        self.job_state = job_state
        if self.current is not None:
            self.current.state = job_state
        self.state_changed.emit(job_state)
        self.jobs_changed.emit()

    # commands
    def render_range(self) -> Job | None:
        """Render the in/out range (frames already cached are reused: this resumes a render)."""
        if self.state.info is None:
            return None
        return self.submit(RenderRequest(self.state.info.path, self.state.params, self.state.in_point, self.state.out_point + 1,
                                         cluster=self.cluster))

    def submit(self, request: RenderRequest) -> Job:
        """Start the job now, or queue it behind the running one."""
        job = Job(request)
        self.queue.append(job)
        if self.busy:
            self.jobs_changed.emit()
        else:
            self.submitted_while_idle.emit()
            self._start_next()
        return job

    def _start_next(self) -> None:
        if self.busy or not self.queue:
            return
        self.current = job = self.queue.popleft()
        self.last_request = job.request
        self._total = job.request.end - job.request.start if job.request.end is not None else 0
        self._set(STARTING)
        self.status_changed.emit("starting…")
        self.progress_changed.emit(0, max(1, self._total))
        self.worker.submit_render(job.request)

    def retry(self, **param_changes) -> None:
        """Submit the last request again, with some parameters changed (e.g. low_memory=True)."""
        if self.last_request is not None and not self.busy:
            params = self.last_request.params.replace(**param_changes)
            self.submit(RenderRequest(self.last_request.source, params, self.last_request.start,
                                      self.last_request.end, self.last_request.output, cluster=self.last_request.cluster))

    def remove_queued(self, job_id: int) -> bool:
        """Take a job that has not started out of the queue (it ends as cancelled, in the history)."""
        for job in list(self.queue):
            if job.id == job_id:
                self.queue.remove(job)
                job.state, job.message, job.ended = CANCELLED, "removed from the queue", time.time()
                self.history.append(job)
                self.jobs_changed.emit()
                return True
        return False

    def cancel_job(self, job_id: int) -> None:
        """Cancel the running job or remove a queued one."""
        if self.current is not None and self.current.id == job_id:
            self.cancel()
        else:
            self.remove_queued(job_id)

    def clear_queue(self) -> None:
        for job in list(self.queue):
            self.remove_queued(job.id)

    def toggle_pause(self) -> None:
        if self.job_state == RENDERING:
            self.worker.pause()
            self._set(PAUSED)
            self.status_changed.emit("paused")
        elif self.job_state == PAUSED:
            self.worker.resume()
            self._set(RENDERING)

    def cancel(self) -> None:
        if self.busy:
            self.status_changed.emit("cancelling…")
            self.worker.cancel()

    # worker events
    def _on_started(self, total: int, cached: int) -> None:
        self._total = total
        if self.job_state == STARTING:
            self._set(RENDERING)
        self.progress_changed.emit(0, total)
        self.status_changed.emit(f"0 / {total} frames ({cached} cached)")

    def _on_progress(self, done: int, total: int, fps: float) -> None:
        self.progress_changed.emit(done, total)
        if self.job_state == PAUSED:
            return
        text = f"{done} / {total} frames"
        if fps > 0:
            text += f" · {fps:.1f} fps · ETA {format_eta((total - done) / fps)}"
        self.status_changed.emit(text)

    def _on_step(self, index: int, step: int, steps: int) -> None:
        if self.job_state == RENDERING:
            self.status_changed.emit(f"frame {index}: step {step} / {steps}")

    def _on_loading(self, text: str) -> None:
        if self.busy and text:
            self.status_changed.emit(text)

    def _end(self, outcome: str, message: str, result: dict | None = None) -> RenderRequest | None:
        job, self.current = self.current, None
        if job is not None:
            job.state, job.message, job.result, job.ended = outcome, message, result, time.time()
            self.history.append(job)
        self._set(IDLE)
        self.status_changed.emit(message)
        return job.request if job is not None else None

    def _next_soon(self) -> None:
        """The next queued job starts once the listeners have seen this one end."""
        if self.queue:
            QTimer.singleShot(0, self._start_next)

    def _on_finished(self, result: dict) -> None:
        if not self.busy:
            return
        seconds = result.get("seconds", 0.0)
        done = count(result.get("total", 0), "frame")
        request = self._end(FINISHED, f"done: {done} ({result.get('rendered', 0)} rendered) "
                                      f"in {seconds:.1f} s", result)
        if request is not None and request.output is not None:
            self.export_done.emit(result)
        else:
            self.render_done.emit()
        self._next_soon()

    def _on_cancelled(self) -> None:
        if self.busy:
            self._end(CANCELLED, "cancelled: the frames rendered so far are kept")
            self.cancelled.emit()
            self._next_soon()

    def _on_failed(self, message: str, kind: str) -> None:
        if self.busy:
            job = self.current
            self._end(FAILED, "failed")
            if job is not None:
                job.message = message
            self.failed.emit(message, kind)
            self._next_soon()
