"""The diffusion model field: a hub id, a diffusers folder or a .safetensors file, with a quick check.

The check (files and the local Hugging Face cache only) runs as an asyncio task off the GUI thread;
loading the model happens on the render worker, which reports ModelError with the real reason.

A hub id that is not cached is not handed to the project when typed (the worker would fetch it with
no progress to show): the field offers Download instead, which fetches it on its own thread (the
render worker owns the GPU and keeps previewing meanwhile) with a byte progress bar and Cancel; the
model is chosen once it is in the cache.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from pipeline.errors import CancelledError, VdiffError
from pipeline.events import CancelToken
from vdiff_gui.model_check import ModelCheck, check_model
from vdiff_gui.tasks import run_blocking, start_task

log = logging.getLogger(__name__)
MB = 1_000_000


class ModelDownload(QObject):
    """One hub download on its own thread. Ends with exactly one of finished, cancelled or failed."""

    progress_changed = Signal(object, object)  # done bytes, total bytes (Python ints: models pass 2 GB)
    finished = Signal(str)  # the repo id, now in the cache
    cancelled = Signal()
    failed = Signal(str)  # one sentence

    def __init__(self, repo_id: str, allow_pickle: bool, parent: QObject | None = None):
        super().__init__(parent)
        self.repo_id, self.allow_pickle = repo_id, allow_pickle
        self._cancel = CancelToken()
        # a daemon: quitting mid-download must not wait for the file (huggingface_hub keeps only whole files)
        self._thread = threading.Thread(target=self._run, name=f"download {repo_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the thread; whether it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        from pipeline.hub import download_model

        try:
            download_model(self.repo_id, self._progress, self._cancel, allow_pickle=self.allow_pickle)
        except CancelledError:
            self._emit(self.cancelled)
        except VdiffError as exc:
            self._emit(self.failed, str(exc))
        except Exception as exc:  # never end silently: the field would show a progress bar forever
            log.exception("downloading %s failed", self.repo_id)
            self._emit(self.failed, f"downloading '{self.repo_id}' failed: {exc}")
        else:
            self._emit(self.finished, self.repo_id)

    def _progress(self, done: int, total: int) -> None:
        self._emit(self.progress_changed, done, total)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the window closed meanwhile
            pass


class ModelPicker(QWidget):
    model_chosen = Signal(str)
    download_failed = Signal(str)  # one sentence, for the window's banner
    model_downloaded = Signal(str)  # the repo id, now in the cache: a failed load of it may be retried

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setObjectName("modelEdit")
        self.edit.setPlaceholderText("org/name, a folder or a .safetensors file")
        self.edit.editingFinished.connect(self._on_edited)
        folder, file = QPushButton("Folder…"), QPushButton("File…")
        folder.setToolTip("A diffusers model folder (with model_index.json)")
        file.setToolTip("A single-file checkpoint (.safetensors)")
        folder.clicked.connect(lambda: self._choose(folder=True))
        file.clicked.connect(lambda: self._choose(folder=False))
        self.hint = QLabel()
        self.hint.setObjectName("modelHint")
        self.hint.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("modelDownloadButton")
        self.download_button.setToolTip("Download this model into the Hugging Face cache")
        self.download_button.clicked.connect(self.start_download)
        self.progress = QProgressBar()
        self.progress.setObjectName("modelDownloadProgress")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("modelDownloadCancel")
        self.cancel_button.clicked.connect(self.cancel_download)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(folder)
        row.addWidget(file)
        hint_row = QHBoxLayout()
        hint_row.setContentsMargins(0, 0, 0, 0)
        hint_row.addWidget(self.hint, 1)
        hint_row.addWidget(self.download_button)
        progress_row = QHBoxLayout()
        progress_row.setContentsMargins(0, 0, 0, 0)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(hint_row)
        layout.addLayout(progress_row)
        self.download: ModelDownload | None = None
        self._model: str | None = None  # the project's model, as last shown
        self._allow_pickle = False
        self._checking: tuple | None = None  # the (text, allow_pickle) whose check the hint will show
        self._show_download(False)

    # -- the project -> the field ------------------------------------------------------------------

    def set_model(self, model: str, allow_pickle: bool) -> None:
        """Show `model` (without emitting) and check it once per (model, allow_pickle). Text typed but
        not chosen yet (a hub id waiting for its download) stays while other parameters change."""
        changed = (model, allow_pickle) != (self._model, self._allow_pickle)
        if model != self._model:
            self._model = model
            self.edit.setText(model)
        self._allow_pickle = allow_pickle
        if changed:
            start_task(self._check(self.edit.text().strip()))

    async def _check(self, text: str) -> ModelCheck | None:
        """Check `text` off the GUI thread and show the result; None when a newer check replaced it."""
        key = self._checking = (text, self._allow_pickle)
        check = await run_blocking(check_model, text, self._allow_pickle)
        if self._checking != key:
            return None
        try:
            self.hint.setText(("✓ " if check.ok else "⚠ ") + check.hint)
            self.download_button.setVisible(check.downloadable and self.download is None)
        except RuntimeError:  # the window closed meanwhile
            return None
        return check

    # -- the field -> the project ------------------------------------------------------------------

    def _on_edited(self) -> None:
        text = self.edit.text().strip()
        if text != self._model:
            start_task(self._choose_typed(text))

    async def _choose_typed(self, text: str) -> None:
        check = await self._check(text)
        if check is not None and not check.downloadable:
            self.model_chosen.emit(text)

    def _choose(self, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Diffusers model folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "Checkpoints (*.safetensors *.ckpt)")
        if path:
            self.model_chosen.emit(path)

    # -- downloading -------------------------------------------------------------------------------

    def start_download(self) -> None:
        """Download the hub id in the field; when it is cached, choose it (if the field still holds it)."""
        repo_id = self.edit.text().strip()
        if self.download is not None or not repo_id:
            return
        self.download = ModelDownload(repo_id, self._allow_pickle, self)
        self.download.progress_changed.connect(self._on_download_progress)
        self.download.finished.connect(self._on_download_finished)
        self.download.cancelled.connect(self._on_download_cancelled)
        self.download.failed.connect(self._on_download_failed)
        self.progress.setRange(0, 0)  # busy until the file list and sizes arrive
        self.progress.setFormat(f"{repo_id}: listing files…")
        self.cancel_button.setEnabled(True)
        self._show_download(True)
        self.hint.setText(f"downloading {repo_id} into the Hugging Face cache…")
        self.download.start()

    def cancel_download(self) -> None:
        """Stop the download (a plain HTTP transfer within a megabyte, an Xet one after its current file)."""
        if self.download is not None:
            self.download.cancel()
            self.cancel_button.setEnabled(False)
            self.progress.setFormat(f"{self.download.repo_id}: cancelling…")

    def _on_download_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total // 1024))  # KiB: a QProgressBar counts in 32-bit ints
        self.progress.setValue(done // 1024)
        if self.download is not None and self.cancel_button.isEnabled():  # else it says "cancelling…"
            digits = 1 if total < 100 * MB else 0
            self.progress.setFormat(f"{self.download.repo_id}: {done / MB:,.{digits}f} / {total / MB:,.{digits}f} MB")

    def _on_download_finished(self, repo_id: str) -> None:
        self._on_download_ended("")
        self.model_downloaded.emit(repo_id)
        if self.edit.text().strip() == repo_id:
            if repo_id == self._model:
                start_task(self._check(repo_id))  # already the project's model: only the hint changes
            else:
                self.model_chosen.emit(repo_id)
        else:
            start_task(self._check(self.edit.text().strip()))

    def _on_download_cancelled(self) -> None:
        self._on_download_ended("⚠ download cancelled; the whole files fetched so far are kept for next time")

    def _on_download_failed(self, text: str) -> None:
        self._on_download_ended("⚠ download failed")
        self.download_failed.emit(text)

    def _on_download_ended(self, hint: str) -> None:
        # its thread may still be inside emit(), posting to later receivers: deleting it now drops or crashes them
        if self.download.wait(5):
            self.download.deleteLater()
        else:
            log.warning("the download thread of %s has not ended; its object is kept", self.download.repo_id)
        self.download = None
        self._show_download(False)
        if hint:
            self.hint.setText(hint)
            self.download_button.setVisible(True)

    def _show_download(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.download_button.setVisible(False)
