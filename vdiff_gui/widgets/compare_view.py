"""Before | after, side by side, as a wipe (a draggable split over one image) or after only.

Both halves always show the same frame: CompareView takes both images for one index at a time.
When the stylized frame is not there yet the after half shows the original with a marker.
Zoom is "fit" or a factor where 1.0 (100%) is one source pixel per device pixel (high-DPI screens
included); the wheel zooms around the pointer through ZOOM_LEVELS, a drag pans (the middle button in
wipe mode, where the left one moves the split).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

MODES = ("side-by-side", "wipe", "after")
BACKGROUND = QColor(30, 32, 38)
ZOOM_LEVELS = (0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)


def next_zoom(current: float, steps: int) -> float:
    """The zoom level `steps` levels above (or below, when negative) `current`."""
    if steps > 0:
        above = [z for z in ZOOM_LEVELS if z > current * 1.001]
        return above[min(steps, len(above)) - 1] if above else ZOOM_LEVELS[-1]
    below = [z for z in ZOOM_LEVELS if z < current / 1.001]
    return below[max(-len(below), steps)] if below else ZOOM_LEVELS[0]


class FrameView(QWidget):
    """Paints one frame (or, in wipe mode, two frames split by a draggable line)."""

    split_moved = Signal(float)
    pan_moved = Signal(QPointF)
    zoom_requested = Signal(int, QPointF)  # wheel notches, the pointer's position

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.frame_index: int | None = None
        self.showing_original = False  # the after view fell back to the source frame
        self._image: QImage | None = None
        self._wipe_before: QImage | None = None
        self._split = 0.5
        self._marker: str | None = None
        self._placeholder = ""
        self._zoom: float | None = None  # None: fit to the widget
        self._pan = QPointF(0, 0)
        self._drag_from: QPointF | None = None
        self._panning = False
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # state
    def image(self) -> QImage | None:
        return self._image

    def marker(self) -> str | None:
        return self._marker

    def set_frame(self, image: QImage | None, index: int | None, marker: str | None = None, original: bool = False):
        self._image, self.frame_index, self._marker, self.showing_original = image, index, marker, original
        self.update()

    def set_marker(self, marker: str | None) -> None:
        self._marker = marker
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def set_wipe_before(self, image: QImage | None) -> None:
        self._wipe_before = image
        self.update()

    @property
    def wiping(self) -> bool:
        return self._wipe_before is not None

    def split(self) -> float:
        return self._split

    def set_split(self, fraction: float) -> None:
        self._split = min(1.0, max(0.0, fraction))
        self.update()

    def set_fit(self, fit: bool) -> None:
        self.set_zoom(None if fit else 1.0)

    def set_zoom(self, zoom: float | None, pan: QPointF | None = None) -> None:
        """None fits the frame to the widget; a factor shows it at that many device pixels per source pixel."""
        self._zoom = zoom
        self._pan = QPointF(0, 0) if zoom is None or pan is None else QPointF(pan)
        self.update()

    def pan(self) -> QPointF:
        return QPointF(self._pan)

    def set_pan(self, pan: QPointF) -> None:
        self._pan = QPointF(pan)
        self.update()

    # geometry
    def _base_image(self) -> QImage | None:
        return self._wipe_before if self._wipe_before is not None else self._image

    def scale(self, image: QImage | None = None) -> float:
        """Widget (logical) pixels per source pixel."""
        image = image or self._base_image()
        if image is None or image.isNull():
            return 1.0
        if self._zoom is None:
            return min(self.width() / image.width(), self.height() / image.height())
        return self._zoom / self.devicePixelRatioF()

    def effective_zoom(self) -> float:
        """Device pixels per source pixel, also when fitted (what the zoom label shows)."""
        return self.scale() * self.devicePixelRatioF()

    def image_rect(self, image: QImage | None = None) -> QRectF:
        """Where the frame is drawn: fitted to the widget, or at the zoom, centred (plus the pan)."""
        image = image or self._image
        if image is None or image.isNull():
            return QRectF()
        scale = self.scale(image)
        w, h = image.width() * scale, image.height() * scale
        x = (self.width() - w) / 2 + self._pan.x()
        y = (self.height() - h) / 2 + self._pan.y()
        return QRectF(x, y, w, h)

    def pan_keeping(self, zoom: float, anchor: QPointF) -> QPointF:
        """The pan that keeps the source point under `anchor` in place at `zoom`."""
        image = self._base_image()
        if image is None or image.isNull():
            return QPointF(0, 0)
        rect = self.image_rect(image)
        old = self.scale(image)
        point = (anchor - rect.topLeft()) / old
        new = zoom / self.devicePixelRatioF()
        centre = QPointF(self.width() - image.width() * new, self.height() - image.height() * new) / 2
        return anchor - point * new - centre

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.effective_zoom() < 1.0)  # pixels stay crisp when enlarged
        if self._image is None or self._image.isNull():
            painter.setPen(QColor(150, 155, 165))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        if self._wipe_before is not None:
            # the after frame may be smaller (max side): both are drawn into the before frame's rectangle
            rect = self.image_rect(self._wipe_before)
            split_x = rect.left() + rect.width() * self._split
            painter.save()
            painter.setClipRect(QRectF(rect.left(), rect.top(), split_x - rect.left(), rect.height()))
            painter.drawImage(rect, self._wipe_before)
            painter.setClipRect(QRectF(split_x, rect.top(), rect.right() - split_x, rect.height()))
            painter.drawImage(rect, self._image)
            painter.restore()
            painter.setPen(QPen(QColor(255, 255, 255), 2))
            painter.drawLine(QPointF(split_x, rect.top()), QPointF(split_x, rect.bottom()))
            shown = rect.intersected(QRectF(self.rect()))  # zoomed in, the handle and labels stay on screen
            painter.setBrush(QColor(255, 255, 255))
            painter.drawEllipse(QPointF(split_x, shown.center().y()), 7, 7)
            self._draw_label(painter, "Before", shown.left() + 8, shown.top() + 8)
            self._draw_label(painter, self.title, shown.right() - 8, shown.top() + 8, right=True)
        else:
            rect = self.image_rect()
            painter.drawImage(rect, self._image)
            shown = rect.intersected(QRectF(self.rect()))
            self._draw_label(painter, self.title, shown.left() + 8, shown.top() + 8)
        if self._marker:
            self._draw_marker(painter, shown)

    def _draw_label(self, painter: QPainter, text: str, x: float, y: float, right: bool = False) -> None:
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width = metrics.horizontalAdvance(text) + 12
        box = QRectF(x - width if right else x, y, width, metrics.height() + 4)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 150))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(240, 240, 240))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _draw_marker(self, painter: QPainter, rect: QRectF) -> None:
        metrics = painter.fontMetrics()
        width = min(rect.width() - 16, metrics.horizontalAdvance(self._marker) + 20)
        box = QRectF(rect.center().x() - width / 2, rect.bottom() - metrics.height() - 16, width, metrics.height() + 8)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(214, 120, 20, 220))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, metrics.elidedText(self._marker, Qt.TextElideMode.ElideRight, int(width - 8)))

    # dragging: the wipe's split line, or the pan when zoomed; the wheel zooms
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag_from = event.position() - self._pan
            self._panning = event.button() == Qt.MouseButton.MiddleButton or not self.wiping
            if not self._panning:
                self._move_split(event.position().x())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is None:
            return
        if not self._panning:
            self._move_split(event.position().x())
        elif self._zoom is not None:
            self.pan_moved.emit(event.position() - self._drag_from)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag_from = None

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = round(event.angleDelta().y() / 120)
        if notches and self._image is not None:
            self.zoom_requested.emit(notches, event.position())
        event.accept()

    def _move_split(self, x: float) -> None:
        rect = self.image_rect(self._wipe_before)
        if rect.width() > 0:
            self.set_split((x - rect.left()) / rect.width())
            self.split_moved.emit(self._split)


class CompareView(QWidget):
    """Holds beforeView and afterView and keeps them on the same frame, mode, zoom and pan."""

    mode_changed = Signal(str)
    zoom_changed = Signal(object)  # None (fit) or the zoom factor
    fit_changed = Signal(bool)  # zoom to fit (True) or 100%

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.before_view = FrameView("Before")
        self.before_view.setObjectName("beforeView")
        self.after_view = FrameView("After")
        self.after_view.setObjectName("afterView")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._layout.addWidget(self.before_view)
        self._layout.addWidget(self.after_view)
        for view in (self.before_view, self.after_view):
            view.pan_moved.connect(self._on_pan_moved)
            view.zoom_requested.connect(lambda notches, at, v=view: self.zoom_by(notches, at, v))
        self.before_view.set_placeholder("Open a video: File ▸ Open…, or drop a file here")
        self.mode = "side-by-side"
        self.zoom: float | None = None  # None: fit
        self.source_width: int | None = None  # the clip's width: zoom levels count its pixels

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compare mode {mode!r}")
        self.mode = mode
        self.before_view.setVisible(mode == "side-by-side")
        self.after_view.title = "After"
        self._sync_wipe()
        self.mode_changed.emit(mode)

    @property
    def fit(self) -> bool:
        return self.zoom is None

    def set_fit(self, fit: bool) -> None:
        self.set_zoom(None if fit else 1.0)

    def set_zoom(self, zoom: float | None, pan: QPointF | None = None) -> None:
        """Both views at `zoom` (None: fit; 1.0: one source pixel per device pixel) and the same pan."""
        self.zoom = zoom
        for view in (self.before_view, self.after_view):
            view.set_zoom(zoom, pan)
        self.zoom_changed.emit(zoom)
        self.fit_changed.emit(zoom is None)  # previews are made at the fitted size only

    def shown_view(self) -> FrameView:
        return self.before_view if self.before_view.isVisible() else self.after_view

    def zoom_by(self, steps: int, anchor: QPointF | None = None, view: FrameView | None = None) -> None:
        """Step through ZOOM_LEVELS from the zoom on screen, keeping the point under `anchor` in place."""
        view = view or self.shown_view()
        current = view.effective_zoom()
        shown = self.before_view.image()
        if self.fit and self.source_width and shown is not None:  # fitted previews come scaled to the view
            current *= shown.width() / self.source_width
        zoom = next_zoom(current, steps)
        anchor = QPointF(view.width() / 2, view.height() / 2) if anchor is None else anchor
        self.set_zoom(zoom, view.pan_keeping(zoom, anchor))

    def show_frame(self, index: int, before: QImage, after: QImage | None, marker: str | None = None) -> None:
        """Show frame `index`: the original, and the stylized frame (or the original with `marker`)."""
        self.before_view.set_frame(before, index)
        if after is None:
            self.after_view.set_frame(before, index, marker, original=True)
        else:
            self.after_view.set_frame(after, index, marker)
        self._sync_wipe()

    def show_after(self, index: int, after: QImage) -> None:
        """The stylized frame for the index already shown (ignored if the view moved on)."""
        if self.before_view.frame_index == index:
            self.after_view.set_frame(after, index)
            self._sync_wipe()

    def set_after_marker(self, marker: str | None) -> None:
        self.after_view.set_marker(marker)

    def clear(self, placeholder: str = "") -> None:
        for view in (self.before_view, self.after_view):
            view.set_frame(None, None)
        self.before_view.set_placeholder(placeholder)
        self._sync_wipe()

    def _sync_wipe(self) -> None:
        wipe = self.mode == "wipe" and self.before_view.image() is not None
        self.after_view.set_wipe_before(self.before_view.image() if wipe else None)

    def _on_pan_moved(self, pan: QPointF) -> None:
        for view in (self.before_view, self.after_view):
            view.set_pan(pan)
