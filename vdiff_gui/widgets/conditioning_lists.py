"""The diffusion conditioning rows of the parameter panel: a ControlNet list (model, preprocessor, scale,
and a preview of the current frame's control image) and a LoRA list (file and weight).

Each list shows a tuple of specs (pipeline.conditioning) and reports a whole new tuple through
`edited`; the panel turns that into one undoable ProjectState edit. The control preview is computed
here only for the preprocessors that need no weights (canny, tile, none), from the source frame the
window shows; the learned ones are computed by the engine during the render.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget,
)

from pipeline.conditioning import (
    CONTROL_TYPES, WEIGHTLESS_CONTROLS, ControlNetSpec, LoraSpec, as_controlnets, as_loras, weightless_control_image,
)
from vdiff_gui.images import array_to_qimage

PREVIEW_WIDTH = 160


def _spin(low: float, high: float, value: float, step: float = 0.05) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setKeyboardTracking(False)
    spin.setValue(value)
    return spin


class _SpecList(QWidget):
    """Rows of specs with an Add button; subclasses give a spec's file and its row's own controls."""

    edited = Signal(tuple)
    add_text = "Add…"
    dialog_title = ""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.specs: tuple = ()
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._rows = QVBoxLayout()
        self._layout.addLayout(self._rows)
        self.add_button = QPushButton(self.add_text)
        self.add_button.clicked.connect(self._choose)
        self._layout.addWidget(self.add_button)

    def set_specs(self, specs) -> None:
        specs = self._normalize(specs)
        if specs == self.specs and self._rows.count() == len(specs):
            return
        self.specs = specs
        while self._rows.count():
            item = self._rows.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for index, spec in enumerate(specs):
            self._rows.addWidget(self._row(index, spec))

    def add(self, path: str) -> None:
        """Append a spec for `path` (what the Add button's file dialog does)."""
        self._emit((*self.specs, self._new(path)))

    def remove(self, index: int) -> None:
        self._emit(tuple(s for i, s in enumerate(self.specs) if i != index))

    def change(self, index: int, **changes) -> None:
        self._emit(tuple(replace(s, **changes) if i == index else s for i, s in enumerate(self.specs)))

    def _emit(self, specs: tuple) -> None:
        self.edited.emit(specs)

    def _choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, self.dialog_title) or QFileDialog.getOpenFileName(
            self, self.dialog_title, "", "Weights (*.safetensors)")[0]
        if path:
            self.add(path)

    def _remove_button(self, index: int) -> QPushButton:
        button = QPushButton("✕")
        button.setToolTip("remove")
        button.setFixedWidth(28)
        button.clicked.connect(lambda: self.remove(index))
        return button

    def _row(self, index: int, spec) -> QWidget:
        """One row: the spec's file (read-only, stretched), the subclass's controls, a remove button."""
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        name = QLineEdit(self._path(spec))
        name.setReadOnly(True)
        name.setToolTip(self._path(spec))
        layout.addWidget(name, 1)
        for widget in (*self._controls(index, spec), self._remove_button(index)):
            layout.addWidget(widget)
        return row

    def _normalize(self, specs) -> tuple:
        raise NotImplementedError

    def _new(self, path: str):
        raise NotImplementedError

    def _path(self, spec) -> str:
        raise NotImplementedError

    def _controls(self, index: int, spec) -> list[QWidget]:
        raise NotImplementedError


class ControlNetList(_SpecList):
    add_text = "Add ControlNet…"
    dialog_title = "ControlNet (a folder, or cancel to pick a .safetensors file)"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.preview = QLabel()
        self.preview.setObjectName("controlPreview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.hide()
        self._layout.addWidget(self.preview)
        self._frame: np.ndarray | None = None

    def _normalize(self, specs) -> tuple:
        return as_controlnets(specs)

    def _new(self, path: str) -> ControlNetSpec:
        return ControlNetSpec(path)

    def _path(self, spec: ControlNetSpec) -> str:
        return spec.model

    def _controls(self, index: int, spec: ControlNetSpec) -> list[QWidget]:
        control = QComboBox()
        control.addItems(CONTROL_TYPES)
        control.setCurrentText(spec.control)
        control.activated.connect(lambda i: self.change(index, control=control.itemText(i)))
        scale = _spin(0.0, 5.0, spec.scale)
        scale.valueChanged.connect(lambda v: self.change(index, scale=round(v, 2)))
        return [control, scale]

    def set_specs(self, specs) -> None:
        super().set_specs(specs)
        self._update_preview()

    def show_source(self, frame: np.ndarray | None) -> None:
        """The source frame the window shows now: the preview shows its control image."""
        self._frame = frame
        self._update_preview()

    def _update_preview(self) -> None:
        first = self.specs[0] if self.specs else None
        if first is None or self._frame is None:
            self.preview.hide()
            return
        if first.control in WEIGHTLESS_CONTROLS:
            image = weightless_control_image(first.control, np.ascontiguousarray(self._frame))
            pixmap = QPixmap.fromImage(array_to_qimage(image))
            self.preview.setPixmap(pixmap.scaledToWidth(PREVIEW_WIDTH, Qt.TransformationMode.SmoothTransformation))
            self.preview.setToolTip(f"{first.control} control image of the current frame")
        else:
            self.preview.setPixmap(QPixmap())
            self.preview.setText(f"{first.control}: computed by its model during the render")
        self.preview.show()


class LoraList(_SpecList):
    add_text = "Add LoRA…"
    dialog_title = "LoRA (a folder, or cancel to pick a .safetensors file)"

    def _normalize(self, specs) -> tuple:
        return as_loras(specs)

    def _new(self, path: str) -> LoraSpec:
        return LoraSpec(path)

    def _path(self, spec: LoraSpec) -> str:
        return spec.path

    def _controls(self, index: int, spec: LoraSpec) -> list[QWidget]:
        weight = _spin(-5.0, 5.0, spec.weight)
        weight.valueChanged.connect(lambda v: self.change(index, weight=round(v, 2)))
        return [weight]
