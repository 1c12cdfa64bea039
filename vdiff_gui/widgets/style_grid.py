"""A grid of the 26 built-in fast-style styles, each a swatch of that style applied to a small picture.

Swatches are rendered once in the background through the same engine a render uses (on the CPU, its
own instance: the fast-style networks are small ONNX sessions, not the worker's model) and kept in the
user cache folder, so later launches show them at once. They are made at the screen's device pixel
ratio (88 px for a 44 px button on a 2x screen), so they are never upscaled.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QLinearGradient, QPainter, QPixmap, QPolygonF
from PySide6.QtWidgets import QButtonGroup, QGridLayout, QToolButton, QWidget

from pipeline.config import cache_dir
from pipeline.engines import FrameContext, create_engine
from pipeline.request import StyleParams
from vdiff_gui.images import array_to_qimage, qimage_to_array
from vdiff_gui.tasks import run_blocking, start_task

log = logging.getLogger(__name__)

NUM_STYLES = 26
SWATCH = 44
COLUMNS = 6


def swatch_dir(size: int = SWATCH) -> Path:
    return cache_dir().parent / "swatches" / f"v1-{size}"


def swatch_source(size: int = SWATCH) -> np.ndarray:
    """A tiny landscape (sky, sun, hills, a house) that shows off each style's colours and strokes."""
    side = max(2 * SWATCH, 2 * size)
    image = QImage(side, side, QImage.Format.Format_RGB888)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(side / (2 * SWATCH), side / (2 * SWATCH))  # drawn in 88-px coordinates
    sky = QLinearGradient(0, 0, 0, image.height())
    sky.setColorAt(0, QColor(90, 150, 230))
    sky.setColorAt(1, QColor(250, 220, 170))
    painter.fillRect(image.rect(), sky)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(255, 210, 60))
    painter.drawEllipse(QPointF(62, 24), 12, 12)
    painter.setBrush(QColor(60, 140, 70))
    painter.drawEllipse(QRectF(-30, 52, 100, 70))
    painter.setBrush(QColor(40, 110, 60))
    painter.drawEllipse(QRectF(30, 60, 90, 60))
    painter.setBrush(QColor(200, 80, 60))
    painter.drawPolygon(QPolygonF([QPointF(18, 62), QPointF(32, 48), QPointF(46, 62)]))
    painter.setBrush(QColor(240, 235, 220))
    painter.drawRect(QRectF(22, 62, 20, 16))
    painter.end()
    return qimage_to_array(image)


def render_swatches(folder: Path, source: np.ndarray, size: int = SWATCH) -> list[np.ndarray]:
    """Each built-in style on `source`, `size` px square, read from `folder` or rendered and stored there."""
    folder.mkdir(parents=True, exist_ok=True)
    swatches = []
    for style in range(NUM_STYLES):
        path = folder / f"style-{style:02d}.png"
        image = cv2.imread(str(path)) if path.exists() else None
        if image is not None:
            swatches.append(np.ascontiguousarray(image[:, :, ::-1]))
            continue
        engine = create_engine(StyleParams(engine="fast-style", style=str(style), device="cpu"))
        try:
            engine.prepare()
            out = engine.process(source, FrameContext(index=0))
        finally:
            engine.close()
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
        temp = path.with_suffix(".tmp.png")
        cv2.imwrite(str(temp), np.ascontiguousarray(out[:, :, ::-1]))
        temp.replace(path)
        swatches.append(out)
    return swatches


class StyleGrid(QWidget):
    style_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("styleGrid")
        self.ready = False
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self.buttons: list[QToolButton] = []
        placeholder = QPixmap(SWATCH, SWATCH)
        placeholder.fill(QColor(70, 74, 82))
        for style in range(NUM_STYLES):
            button = QToolButton()
            button.setCheckable(True)
            button.setIcon(QIcon(placeholder))
            button.setIconSize(QSize(SWATCH, SWATCH))
            button.setToolTip(f"Style {style}")
            button.setAutoRaise(True)
            button.setStyleSheet("QToolButton:checked { border: 2px solid #ffb830; border-radius: 3px; }")
            self._group.addButton(button, style)
            layout.addWidget(button, style // COLUMNS, style % COLUMNS)
            self.buttons.append(button)
        self._group.idClicked.connect(self.style_chosen)

    def set_current(self, style: str) -> None:
        """Check the swatch for a plain style index; a blend or a style image checks none."""
        self._group.setExclusive(False)
        for button in self.buttons:
            button.setChecked(False)
        self._group.setExclusive(True)
        if style.strip().isdigit() and int(style) < NUM_STYLES:
            self.buttons[int(style)].setChecked(True)

    def load_swatches(self) -> None:
        """Fill the icons in the background (rendered once, then read from the cache folder)."""
        start_task(self._load())

    async def _load(self) -> None:
        ratio = self.devicePixelRatioF()
        size = round(SWATCH * ratio)
        try:
            swatches = await run_blocking(render_swatches, swatch_dir(size), swatch_source(size), size)
        except Exception as exc:  # swatches are a convenience: keep the numbered grid
            log.warning("could not make the style swatches: %s", exc)
            return
        try:
            for button, swatch in zip(self.buttons, swatches):
                pixmap = QPixmap.fromImage(array_to_qimage(swatch))
                pixmap.setDevicePixelRatio(ratio)  # SWATCH logical px, one swatch pixel per device pixel
                button.setIcon(QIcon(pixmap))
        except RuntimeError:  # the window closed while the swatches were rendering
            return
        self.ready = True
