"""The jobs: the running render or export, the queued ones and a short history, with their state.

Built on JobController (vdiff_gui.jobs): it lists JobController.jobs() and acts through it only.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from vdiff_gui.jobs import CANCELLED, FAILED, FINISHED, QUEUED, Job, JobController
from vdiff_gui.widgets.export_dialog import folder_of

COLUMNS = ("#", "Kind", "State", "What", "Details")


def state_text(job: Job) -> str:
    if job.kind == "export" and job.state == FINISHED:
        return "verified ✓" if job.verified else "written ✗"
    return job.state


def details(job: Job) -> str:
    ended = f" · {time.strftime('%H:%M:%S', time.localtime(job.ended))}" if job.ended else ""
    return f"{job.message}{ended}"


class JobList(QWidget):
    def __init__(self, jobs: JobController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("jobList")
        self.jobs = jobs
        self.tree = QTreeWidget()
        self.tree.setObjectName("jobTree")
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        for column, width in enumerate((40, 60, 90, 300)):
            self.tree.setColumnWidth(column, width)
        self.cancel_button = QPushButton("Cancel Job")
        self.cancel_button.setObjectName("cancelJobButton")
        self.folder_button = QPushButton("Show in Folder")
        self.folder_button.setObjectName("jobFolderButton")
        self.clear_button = QPushButton("Clear Queue")
        self.clear_button.setObjectName("clearQueueButton")
        buttons = QHBoxLayout()
        for button in (self.cancel_button, self.folder_button, self.clear_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        self.cancel_button.clicked.connect(self._cancel_selected)
        self.folder_button.clicked.connect(lambda: self._open_folder(self.selected()))
        self.clear_button.clicked.connect(jobs.clear_queue)
        self.tree.currentItemChanged.connect(lambda *_: self._update_buttons())
        jobs.jobs_changed.connect(self.refresh)
        jobs.status_changed.connect(lambda _: self._refresh_running())
        self.refresh()

    def selected(self) -> Job | None:
        item = self.tree.currentItem()
        job_id = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        return next((job for job in self.jobs.jobs() if job.id == job_id), None)

    def refresh(self) -> None:
        selected = self.selected()
        self.tree.clear()
        for job in self.jobs.jobs():
            item = QTreeWidgetItem([str(job.id), job.kind, state_text(job), job.describe().split(" ", 2)[2], details(job)])
            item.setData(0, Qt.ItemDataRole.UserRole, job.id)
            item.setToolTip(4, details(job))
            self.tree.addTopLevelItem(item)
            if selected is not None and job.id == selected.id:
                self.tree.setCurrentItem(item)
        self._update_buttons()

    def _refresh_running(self) -> None:
        """Only the running job's row changes with each status line."""
        if self.jobs.current is not None and self.tree.topLevelItemCount():
            item = self.tree.topLevelItem(0)
            item.setText(2, state_text(self.jobs.current))
            item.setText(4, details(self.jobs.current))

    def _update_buttons(self) -> None:
        job = self.selected()
        self.cancel_button.setEnabled(job is not None and job.state not in (FINISHED, CANCELLED, FAILED))
        self.folder_button.setEnabled(job is not None and job.kind == "export" and job.state == FINISHED)
        self.clear_button.setEnabled(any(j.state == QUEUED for j in self.jobs.queue))

    def _cancel_selected(self) -> None:
        job = self.selected()
        if job is not None:
            self.jobs.cancel_job(job.id)

    def _open_folder(self, job: Job | None) -> None:
        if job is not None and job.request.output is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder_of(job.request.output.path))))
