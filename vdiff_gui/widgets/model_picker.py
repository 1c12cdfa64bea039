"""The diffusion model field: a hub id, a diffusers folder or a .safetensors file, with a quick check.

The check (files and the local Hugging Face cache only) runs as an asyncio task off the GUI thread;
loading the model happens on the render worker, which reports ModelError with the real reason.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from vdiff_gui.model_check import model_hint
from vdiff_gui.tasks import run_blocking, start_task


class ModelPicker(QWidget):
    model_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setObjectName("modelEdit")
        self.edit.setPlaceholderText("org/name, a folder or a .safetensors file")
        self.edit.editingFinished.connect(lambda: self.model_chosen.emit(self.edit.text().strip()))
        folder, file = QPushButton("Folder…"), QPushButton("File…")
        folder.setToolTip("A diffusers model folder (with model_index.json)")
        file.setToolTip("A single-file checkpoint (.safetensors)")
        folder.clicked.connect(lambda: self._choose(folder=True))
        file.clicked.connect(lambda: self._choose(folder=False))
        self.hint = QLabel()
        self.hint.setObjectName("modelHint")
        self.hint.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(folder)
        row.addWidget(file)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.hint)
        self._checked: tuple | None = None

    def set_model(self, model: str, allow_pickle: bool) -> None:
        """Show `model` (without emitting) and check it once per (model, allow_pickle)."""
        if self.edit.text().strip() != model:
            self.edit.setText(model)
        if self._checked != (model, allow_pickle):
            self._checked = (model, allow_pickle)
            start_task(self._check(model, allow_pickle))

    async def _check(self, model: str, allow_pickle: bool) -> None:
        ok, hint = await run_blocking(model_hint, model, allow_pickle)
        if self._checked == (model, allow_pickle):
            try:
                self.hint.setText(("✓ " if ok else "⚠ ") + hint)
            except RuntimeError:  # the window closed meanwhile
                pass

    def _choose(self, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Diffusers model folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "Checkpoints (*.safetensors *.ckpt)")
        if path:
            self.model_chosen.emit(path)
