"""The render/export job as a small state machine driven by the worker's signals.

idle -> starting (submitted; the engine may be loading) -> rendering <-> paused -> idle, ending with
exactly one of finished / cancelled / failed. The GUI builds each RenderRequest here; the worker
only ever sees the request.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from pipeline.request import RenderRequest
from vdiff_gui.project_state import ProjectState
from vdiff_gui.render_worker import RenderWorker

IDLE, STARTING, RENDERING, PAUSED = "idle", "starting", "rendering", "paused"


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
    cluster_status_changed = Signal(str)  # a cluster render's workers: frames and rate each, or a lost one

    def __init__(self, state: ProjectState, worker: RenderWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.worker = state, worker
        self.job_state = IDLE
        self.request: RenderRequest | None = None
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

    @property
    def busy(self) -> bool:
        return self.job_state != IDLE

    def _set(self, job_state: str) -> None:
        self.job_state = job_state
        self.state_changed.emit(job_state)

    # commands
    def render_range(self) -> None:
        """Render the in/out range (frames already cached are reused: this resumes a render)."""
        if self.state.info is None:
            return
        self.submit(RenderRequest(self.state.info.path, self.state.params, self.state.in_point, self.state.out_point + 1,
                                  cluster=self.cluster))

    def submit(self, request: RenderRequest) -> None:
        if self.busy:
            return
        self.request = self.last_request = request
        self._total = request.end - request.start if request.end is not None else 0
        self._set(STARTING)
        self.status_changed.emit("starting…")
        self.progress_changed.emit(0, max(1, self._total))
        self.worker.submit_render(request)

    def retry(self, **param_changes) -> None:
        """Submit the last request again, with some parameters changed (e.g. low_memory=True)."""
        if self.last_request is not None and not self.busy:
            params = self.last_request.params.replace(**param_changes)
            self.submit(RenderRequest(self.last_request.source, params, self.last_request.start,
                                      self.last_request.end, self.last_request.output, cluster=self.last_request.cluster))

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

    def _end(self) -> RenderRequest | None:
        request, self.request = self.request, None
        self._set(IDLE)
        return request

    def _on_finished(self, result: dict) -> None:
        if not self.busy:
            return
        request = self._end()
        seconds = result.get("seconds", 0.0)
        self.status_changed.emit(f"done: {result.get('total', 0)} frames ({result.get('rendered', 0)} rendered) in {seconds:.1f} s")
        if request is not None and request.output is not None:
            self.export_done.emit(result)
        else:
            self.render_done.emit()

    def _on_cancelled(self) -> None:
        if self.busy:
            self._end()
            self.status_changed.emit("cancelled: the frames rendered so far are kept")
            self.cancelled.emit()

    def _on_failed(self, message: str, kind: str) -> None:
        if self.busy:
            self._end()
            self.status_changed.emit("failed")
            self.failed.emit(message, kind)
