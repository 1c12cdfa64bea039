"""Content editing in the panel: masks painted on frames (tracked by the pipeline between them) and
prompts keyed at frames. Both edit ProjectState's params (undoable); the pipeline does the rest.

MaskPainter is the dialog a mask is painted in: brush, eraser, rectangle, ellipse, brush size, clear,
invert, over the frame it is painted on; the mask is saved as a PNG named by its content in the
user's data folder, so a project refers to it by path and the frame cache keys it by content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import (
    QButtonGroup, QDialog, QDialogButtonBox, QDoubleSpinBox, QHBoxLayout, QLabel, QListWidget,
    QListWidgetItem, QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from pipeline.config import config_dir
from vdiff_gui.project_state import ProjectState

TOOLS = ("brush", "eraser", "rectangle", "ellipse")
TOOL_KEYS = {"brush": "B", "eraser": "E", "rectangle": "R", "ellipse": "L"}


def masks_dir() -> Path:
    """Where painted masks are kept: beside the settings (VDIFF_CONFIG_DIR isolates tests)."""
    return config_dir() / "masks"


def save_mask(mask: np.ndarray) -> Path:
    """Write an HxW uint8 mask as a PNG named by its content (the same mask, the same file)."""
    ok, data = cv2.imencode(".png", mask)
    if not ok:
        raise OSError("cannot encode the mask")
    path = masks_dir() / f"mask-{hashlib.sha256(data.tobytes()).hexdigest()[:16]}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.partial")
        temp.write_bytes(data.tobytes())
        temp.replace(path)
    return path


def load_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray | None:
    data = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if data is None:
        return None
    return cv2.resize(data, size, interpolation=cv2.INTER_NEAREST) if (data.shape[1], data.shape[0]) != size else data


class MaskCanvas(QWidget):
    """The frame with the mask over it in red; painting changes the mask (white = edited)."""

    changed = Signal()

    def __init__(self, frame: QImage, mask: np.ndarray | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("maskCanvas")
        self.frame = frame
        size = (frame.width(), frame.height())
        self.mask = mask.copy() if mask is not None else np.zeros((size[1], size[0]), np.uint8)
        self.tool = "brush"
        self.brush = max(4, frame.width() // 24)
        self._press: QPointF | None = None
        self._last: QPointF | None = None
        self._shape_to: QPointF | None = None
        self.setMinimumSize(480, 270)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def image_rect(self) -> QRectF:
        w, h = self.frame.width(), self.frame.height()
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def to_image(self, point: QPointF) -> tuple[int, int]:
        rect = self.image_rect()
        x = (point.x() - rect.left()) / rect.width() * self.frame.width()
        y = (point.y() - rect.top()) / rect.height() * self.frame.height()
        return int(round(x)), int(round(y))

    def clear(self) -> None:
        self.mask[:] = 0
        self.changed.emit()
        self.update()

    def invert(self) -> None:
        self.mask[:] = 255 - self.mask
        self.changed.emit()
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 32, 38))
        rect = self.image_rect()
        painter.drawImage(rect, self.frame)
        overlay = np.zeros((*self.mask.shape, 4), np.uint8)
        overlay[..., 0] = 255
        overlay[..., 3] = (self.mask.astype(np.uint16) * 140 // 255).astype(np.uint8)
        image = QImage(overlay.data, overlay.shape[1], overlay.shape[0], overlay.strides[0], QImage.Format.Format_RGBA8888)
        painter.drawImage(rect, image)
        if self._press is not None and self._shape_to is not None and self.tool in ("rectangle", "ellipse"):
            painter.setPen(QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DashLine))
            box = QRectF(self._press, self._shape_to).normalized()
            (painter.drawRect if self.tool == "rectangle" else painter.drawEllipse)(box)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._press = self._last = event.position()
        if self.tool in ("brush", "eraser"):
            self._stroke(event.position(), event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press is None:
            return
        if self.tool in ("brush", "eraser"):
            self._stroke(self._last, event.position())
            self._last = event.position()
        else:
            self._shape_to = event.position()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._press is None:
            return
        if self.tool in ("rectangle", "ellipse"):
            (x0, y0), (x1, y1) = self.to_image(self._press), self.to_image(event.position())
            value = 0 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 255  # Shift: cut the shape out
            if self.tool == "rectangle":
                cv2.rectangle(self.mask, (min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)), value, -1)
            else:
                centre = ((x0 + x1) // 2, (y0 + y1) // 2)
                cv2.ellipse(self.mask, centre, (abs(x1 - x0) // 2, abs(y1 - y0) // 2), 0, 0, 360, value, -1)
            self.changed.emit()
        self._press = self._last = self._shape_to = None
        self.update()

    def _stroke(self, a: QPointF, b: QPointF) -> None:
        value = 0 if self.tool == "eraser" else 255
        cv2.line(self.mask, self.to_image(a), self.to_image(b), value, thickness=max(1, self.brush), lineType=cv2.LINE_AA)
        self.changed.emit()
        self.update()


class MaskPainter(QDialog):
    """Paint the edit region on one frame. accept() -> `mask` holds the painted HxW uint8 mask."""

    def __init__(self, frame: QImage, index: int, mask: np.ndarray | None = None,
                 feather: float = 3.0, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("maskPainter")
        self.setWindowTitle(f"Paint the edit region on frame {index}")
        self.canvas = MaskCanvas(frame, mask)
        tools = QHBoxLayout()
        self.tool_buttons = QButtonGroup(self)
        for name in TOOLS:
            button = QToolButton()
            button.setText(name.capitalize())
            button.setObjectName(f"{name}Tool")
            button.setCheckable(True)
            button.setShortcut(TOOL_KEYS[name])
            button.setToolTip(f"{name.capitalize()} ({TOOL_KEYS[name]})" + (" · Shift: cut out" if name in ("rectangle", "ellipse") else ""))
            button.toggled.connect(lambda on, n=name: on and setattr(self.canvas, "tool", n))
            self.tool_buttons.addButton(button)
            tools.addWidget(button)
        self.tool_buttons.buttons()[0].setChecked(True)
        self.size = QSpinBox()
        self.size.setRange(1, 400)
        self.size.setSuffix(" px")
        self.size.setValue(self.canvas.brush)
        self.size.valueChanged.connect(lambda v: setattr(self.canvas, "brush", v))
        tools.addWidget(QLabel("Size"))
        tools.addWidget(self.size)
        self.feather = QDoubleSpinBox()
        self.feather.setRange(0.0, 100.0)
        self.feather.setSuffix(" px")
        self.feather.setValue(feather)
        self.feather.setToolTip("soft edge of the edited region")
        tools.addWidget(QLabel("Feather"))
        tools.addWidget(self.feather)
        clear, invert = QPushButton("Clear"), QPushButton("Invert")
        clear.clicked.connect(self.canvas.clear)
        invert.clicked.connect(self.canvas.invert)
        tools.addWidget(clear)
        tools.addWidget(invert)
        tools.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        hint = QLabel("White (red here) is edited; vdiff carries the region along the motion to the other frames. "
                      "Paint again on a later frame where it drifts.")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(tools)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(hint)
        layout.addWidget(buttons)
        self.resize(900, 620)

    @property
    def mask(self) -> np.ndarray:
        return self.canvas.mask


class FrameKeyList(QWidget):
    """A short list of frames with a value each (double-click jumps there), an action button and Remove."""

    def __init__(self, state: ProjectState, name: str, action: str, empty: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._empty = empty
        self.list = QListWidget()
        self.list.setObjectName(f"{name}List")
        self.list.setMaximumHeight(80)
        self.list.itemDoubleClicked.connect(lambda item: state.set_frame(item.data(Qt.ItemDataRole.UserRole)))
        self.action = QPushButton(action)
        self.action.setObjectName(f"{name}Button")
        self.remove = QPushButton("Remove")
        self.remove.clicked.connect(self._on_remove_clicked)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.action, 1)
        buttons.addWidget(self.remove)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(buttons)

    def show_items(self, items: list[tuple[int, str]]) -> None:
        self.list.clear()
        for frame, text in items:
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, int(frame))
            self.list.addItem(item)
        if not items:
            self.list.addItem(self._empty)
            self.list.item(0).setFlags(Qt.ItemFlag.NoItemFlags)
        self.remove.setEnabled(bool(items))

    def _on_remove_clicked(self) -> None:
        item = self.list.currentItem()
        if item is not None and item.data(Qt.ItemDataRole.UserRole) is not None:
            self.remove_frame(item.data(Qt.ItemDataRole.UserRole))

    def remove_frame(self, frame: int) -> None:
        raise NotImplementedError


class RegionEditor(FrameKeyList):
    """The frames a mask is painted on, with Paint / Remove; `frame_image()` gives the frame to paint on."""

    def __init__(self, state: ProjectState, frame_image, parent: QWidget | None = None):
        super().__init__(state, "maskAnchor", "Paint on this frame…", "whole frame (paint to edit only a region)", parent)
        self.setObjectName("regionEditor")
        self.paint = self.action
        self.paint.setObjectName("paintMaskButton")
        self.paint.clicked.connect(self.paint_current)
        self._frame_image = frame_image  # () -> QImage of the current source frame, or None
        self.painter: MaskPainter | None = None  # the open dialog, for tests

    def set_frame_source(self, frame_image) -> None:
        self._frame_image = frame_image

    def show_anchors(self, anchors) -> None:
        self.show_items([(frame, f"frame {frame}  ·  {Path(path).name}") for frame, path in anchors])

    def paint_current(self) -> None:
        frame = self._frame_image()
        if frame is None or frame.isNull():
            return
        index = self.state.frame
        anchors = dict(self.state.params.mask_anchors)
        existing = load_mask(anchors[index], (frame.width(), frame.height())) if index in anchors else None
        self.painter = MaskPainter(frame, index, existing, self.state.params.mask_feather, self)
        self.painter.finished.connect(lambda result, d=self.painter, i=index: self._on_painted(d, i, result))
        self.painter.open()

    def _on_painted(self, dialog: MaskPainter, index: int, result: int) -> None:
        self.painter = None
        if result != QDialog.DialogCode.Accepted:
            return
        anchors = dict(self.state.params.mask_anchors)
        if dialog.mask.any():
            anchors[index] = str(save_mask(dialog.mask))
        else:
            anchors.pop(index, None)  # painted empty: that frame is no longer an anchor
        self.state.edit(mask_anchors=tuple(sorted(anchors.items())), mask_feather=float(dialog.feather.value()))

    def remove_frame(self, frame: int) -> None:
        self.state.edit(mask_anchors=tuple((f, p) for f, p in self.state.params.mask_anchors if f != frame))


class PromptKeys(FrameKeyList):
    """Prompts keyed at frames: 'Key at this frame' takes the prompt field's text for the playhead's frame."""

    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(state, "promptKey", "Key at this frame", "one prompt for the whole clip", parent)
        self.setObjectName("promptKeys")
        self.key = self.action
        self.key.setToolTip("the prompt above becomes the prompt at the playhead's frame; between keys the "
                            "prompts are blended")
        self.key.clicked.connect(self.key_current)

    def show_keys(self, keys) -> None:
        self.show_items([(frame, f"{frame}: {text}") for frame, text in keys])

    def key_current(self) -> None:
        p = self.state.params
        keys = dict(p.prompt_keys)
        if not keys and self.state.frame != 0:
            keys[0] = p.prompt  # the prompt so far holds from the start
        keys[self.state.frame] = p.prompt
        self.state.edit(prompt_keys=tuple(sorted(keys.items())))

    def remove_frame(self, frame: int) -> None:
        keys = tuple((f, t) for f, t in self.state.params.prompt_keys if f != frame)
        if len(keys) == 1:  # one key left is a constant prompt
            self.state.edit(prompt=keys[0][1], prompt_keys=())
        else:
            self.state.edit(prompt_keys=keys)
