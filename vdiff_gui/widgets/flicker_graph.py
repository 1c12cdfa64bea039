"""The flicker meter as a small graph under the timeline: per frame, the render's warp error beside the
source's (the floor a stable render can reach), so a user sees where it flickers; a click jumps there.

It lines up with the TimelineWidget it is given (same zoom and scroll) and reads values from the
worker's flicker_measured signal: frame i's value measures the change from frame i-1 to frame i, on
the pairs the worker's FlickerSampler measures (a pair every few frames, at reduced size).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from vdiff_gui.project_state import ProjectState
from vdiff_gui.widgets.timeline import TimelineWidget

HEIGHT = 46
RENDER_COLOUR = QColor(255, 140, 60)
SOURCE_COLOUR = QColor(140, 170, 210)
SPAN = 4  # frames a bar may cover: the sampler measures a pair every few frames


class FlickerGraph(QWidget):
    def __init__(self, state: ProjectState, timeline: TimelineWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("flickerGraph")
        self.state, self.timeline = state, timeline
        self.values: dict[int, tuple[float, float]] = {}  # frame -> (render's warp error, source's)
        self.setFixedHeight(HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setMouseTracking(True)
        self.setToolTip("Flicker per frame: the render's warp error (orange) beside the source's (blue), as "
                        "`vdiff metrics` measures it. Click to go to that frame.")
        timeline.view_changed.connect(self.update)
        state.frame_changed.connect(self.update)
        state.clip_changed.connect(lambda _: self.clear())
        state.params_changed.connect(lambda _: self.clear())

    def add(self, index: int, render_error: float, source_error: float) -> None:
        self.values[index] = (render_error, source_error)
        self.update()

    def clear(self) -> None:
        self.values = {}
        self.update()

    def worst(self) -> int | None:
        """The frame whose render flickers most above its source."""
        if not self.values:
            return None
        return max(self.values, key=lambda i: self.values[i][0] - self.values[i][1])

    def _plot(self) -> QRectF:
        left = self.timeline.x_of(self.timeline.view_start)
        right = self.timeline.x_of(self.timeline.view_start + self.timeline.view_count)
        return QRectF(left, 3, right - left, self.height() - 6)

    def _scale(self) -> float:
        top = max((max(pair) for pair in self.values.values()), default=0.0)
        return top * 1.1 if top > 0 else 1.0

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(32, 35, 41))
        plot = self._plot()
        painter.fillRect(plot, QColor(24, 26, 31))
        if not self.values:
            painter.setPen(QColor(130, 136, 148))
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "flicker graph: render a range to measure it")
            return
        painter.setClipRect(plot)
        scale, width = self._scale(), self.timeline.x_of(1) - self.timeline.x_of(0)
        frames = sorted(self.values)
        for n, index in enumerate(frames):  # the meter samples pairs: a bar spans to the next one (4 frames at most)
            render, source = self.values[index]
            span = min(SPAN, frames[n + 1] - index) if n + 1 < len(frames) else 1
            height = plot.height() * render / scale
            colour = RENDER_COLOUR if render > 1.5 * source else RENDER_COLOUR.darker(130)
            painter.fillRect(QRectF(self.timeline.x_of(index), plot.bottom() - height, max(1.0, span * width - 1), height), colour)
        path = QPainterPath()  # the source's floor as a line over the bars
        for n, index in enumerate(frames):
            point = QPointF(self.timeline.x_of(index + 0.5), plot.bottom() - plot.height() * self.values[index][1] / scale)
            path.moveTo(point) if n == 0 else path.lineTo(point)
        painter.setPen(QPen(SOURCE_COLOUR, 1.5))
        painter.drawPath(path)
        x = self.timeline.x_of(self.state.frame + 0.5)
        painter.setPen(QPen(QColor(240, 70, 60), 1))
        painter.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
        self._draw_legend(painter, plot, f"flicker per frame, peak {scale / 1.1 * 1000:.1f}×10⁻³ · ")

    def _draw_legend(self, painter: QPainter, plot: QRectF, text: str) -> None:
        """Top right, on a dark box so the bars do not hide it: what the colours mean."""
        metrics = painter.fontMetrics()
        parts = [(text, QColor(200, 204, 212)), ("▮ render ", RENDER_COLOUR), ("— source", SOURCE_COLOUR)]
        width = sum(metrics.horizontalAdvance(t) for t, _ in parts) + 10
        box = QRectF(plot.right() - width - 2, plot.top() + 1, width, metrics.height() + 2)
        painter.fillRect(box, QColor(24, 26, 31, 220))
        x = box.left() + 5
        for part, colour in parts:
            painter.setPen(colour)
            painter.drawText(QPointF(x, box.top() + metrics.ascent() + 1), part)
            x += metrics.horizontalAdvance(part)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.state.info is not None:
            self.timeline.scrub_started.emit()  # a jump, like a click on the timeline: stop following the render
            self.state.set_frame(self.timeline.index_at(event.position().x()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        index = self.timeline.index_at(event.position().x())
        if index in self.values:
            render, source = self.values[index]
            QToolTip.showText(event.globalPosition().toPoint(),
                              f"frame {index}: flicker {render * 1000:.2f} (source {source * 1000:.2f}) ×10⁻³", self)
