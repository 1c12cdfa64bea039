"""Render / pause / cancel, the progress bar with frames, fps and ETA, and Export…; while a job runs,
Render and Export queue the next one."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from vdiff_gui.jobs import IDLE, PAUSED, RENDERING, STARTING, JobController
from vdiff_gui.project_state import ProjectState


class RenderBar(QWidget):
    def __init__(self, state: ProjectState, jobs: JobController, parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.jobs = state, jobs
        self.render_button = QPushButton("Render in–out")
        self.render_button.setObjectName("renderButton")
        self.render_button.setToolTip("Render the frames between the in and out points into the cache (resumes a render; "
                                      "queued while another job runs) · Ctrl+R")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pauseButton")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.progress = QProgressBar()
        self.progress.setObjectName("renderProgress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v / %m")
        self.status = QLabel("ready")
        self.status.setObjectName("renderStatus")
        self.status.setMinimumWidth(260)
        self.score: float | None = None  # the meter's last warp error
        self.pairs = 0  # over this many sampled frame pairs
        self.flicker = QLabel("")
        self.flicker.setObjectName("flickerMeter")
        self.flicker.setToolTip(
            "Flicker of the rendered range: the warp error of Lai et al. 2018, as `vdiff metrics` measures it, on\n"
            "pairs of frames sampled as they arrive and shrunk to 320 px (the full measure: `vdiff metrics`),\n"
            "beside the same measure on the source (the floor a stable render can reach). Lower is steadier."
        )
        self.export_button = QPushButton("Export…")
        self.export_button.setObjectName("exportButton")
        self.queued = QLabel("")
        self.queued.setObjectName("queuedLabel")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        for widget in (self.render_button, self.pause_button, self.cancel_button):
            layout.addWidget(widget)
        layout.addWidget(self.progress, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.flicker)
        layout.addWidget(self.queued)
        layout.addWidget(self.export_button)
        self.render_button.clicked.connect(jobs.render_range)
        self.pause_button.clicked.connect(jobs.toggle_pause)
        self.cancel_button.clicked.connect(jobs.cancel)
        jobs.state_changed.connect(self._on_job_state)
        jobs.status_changed.connect(self.status.setText)
        jobs.progress_changed.connect(self._on_progress)
        jobs.jobs_changed.connect(lambda: self.queued.setText(f"{len(jobs.queue)} queued" if jobs.queue else ""))
        state.clip_changed.connect(lambda _: self._on_job_state(jobs.job_state))
        self._on_job_state(IDLE)

    def show_flicker(self, score: float, floor: float, pairs: int) -> None:
        """The running flicker meter: the render's warp error and the source's, over `pairs` frame pairs."""
        self.score, self.pairs = score, pairs
        self.flicker.setText(f"flicker {score * 1000:.2f} (source {floor * 1000:.2f}) ×10⁻³")

    def clear_flicker(self) -> None:
        self.score, self.pairs = None, 0
        self.flicker.setText("")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_job_state(self, job_state: str) -> None:
        has_clip = self.state.info is not None
        self.render_button.setEnabled(has_clip)  # while busy: queues
        self.export_button.setEnabled(has_clip)
        self.pause_button.setEnabled(job_state in (RENDERING, PAUSED))
        self.pause_button.setText("Resume" if job_state == PAUSED else "Pause")
        self.cancel_button.setEnabled(job_state in (STARTING, RENDERING, PAUSED))
