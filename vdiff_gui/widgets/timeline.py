"""The timeline: thumbnails, the rendered-frames band, in/out markers, the playhead, time and frame.

It takes the ProjectState in its constructor, paints what the state says and changes it only through
the state's methods (click or drag to scrub). Keyboard shortcuts live in the window's View menu.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from vdiff_gui.project_state import ProjectState

THUMB_HEIGHT = 44
BAND_HEIGHT = 6
TEXT_HEIGHT = 20
MARGIN = 8


def format_time(seconds: float) -> str:
    minutes, seconds = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:06.3f}" if hours else f"{minutes:02d}:{seconds:06.3f}"


def compress_ranges(indices: set[int]) -> list[tuple[int, int]]:
    """Sorted frame indices as inclusive (first, last) runs."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return [(a, b) for a, b in runs]


class TimelineWidget(QWidget):
    scrub_started = Signal()  # the user grabbed the playhead

    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("timeline")
        self.state = state
        self._thumbnails: list[QImage] = []
        self._rendered: list[tuple[int, int]] = []
        self.rendered_count = 0
        self.keyframes: list[int] = []  # marked as ticks above the rendered band (keyframe rendering)
        self._dragging = False
        self.setMinimumHeight(THUMB_HEIGHT + BAND_HEIGHT + TEXT_HEIGHT + 2 * MARGIN + 6)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click or drag to scrub · Space play/pause · ←/→ one frame · Shift+←/→ one second · I/O set in/out")
        state.clip_changed.connect(self._on_clip_changed)
        state.frame_changed.connect(self.update)
        state.range_changed.connect(self.update)
        state.params_changed.connect(self.update)  # painted-mask and prompt keys are marked

    def set_thumbnails(self, images: list[QImage]) -> None:
        self._thumbnails = list(images)
        self.update()

    def set_rendered(self, indices: set[int]) -> None:
        self.rendered_count = len(indices)
        self._rendered = compress_ranges(indices)
        self.update()

    def set_keyframes(self, indices) -> None:
        self.keyframes = sorted(indices)
        self.update()

    def _on_clip_changed(self, info) -> None:
        self.keyframes = []
        self._thumbnails = []
        self._rendered = []
        self.rendered_count = 0
        self.update()

    # geometry
    def _track(self) -> QRectF:
        return QRectF(MARGIN, MARGIN + TEXT_HEIGHT, self.width() - 2 * MARGIN, THUMB_HEIGHT + BAND_HEIGHT)

    def x_of(self, index: float) -> float:
        track = self._track()
        count = self.state.info.frame_count if self.state.info else 1
        return track.left() + track.width() * index / count

    def index_at(self, x: float) -> int:
        track = self._track()
        count = self.state.info.frame_count if self.state.info else 1
        return int((x - track.left()) / max(1.0, track.width()) * count)

    # painting
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(38, 41, 48))
        track = self._track()
        info = self.state.info
        painter.setPen(QColor(200, 204, 212))
        if info is None:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no clip")
            return
        thumbs = QRectF(track.left(), track.top(), track.width(), THUMB_HEIGHT)
        painter.fillRect(thumbs, QColor(22, 24, 28))
        if self._thumbnails:
            # tiles at the clip's aspect; each shows the thumbnail nearest its place in the clip
            tile = max(8.0, THUMB_HEIGHT * self._thumbnails[0].width() / max(1, self._thumbnails[0].height()))
            slots = max(1, int(thumbs.width() // tile) + 1)
            painter.save()
            painter.setClipRect(thumbs)
            for slot in range(slots):
                pick = min(len(self._thumbnails) - 1, int((slot + 0.5) * tile / thumbs.width() * len(self._thumbnails)))
                painter.drawImage(QRectF(thumbs.left() + slot * tile, thumbs.top(), tile, THUMB_HEIGHT), self._thumbnails[pick])
            painter.restore()
        band = QRectF(track.left(), thumbs.bottom(), track.width(), BAND_HEIGHT)
        painter.fillRect(band, QColor(60, 64, 72))
        for first, last in self._rendered:
            painter.fillRect(QRectF(self.x_of(first), band.top(), self.x_of(last + 1) - self.x_of(first), BAND_HEIGHT),
                             QColor(80, 200, 120))
        painter.setPen(QPen(QColor(250, 250, 250), 1))
        for index in self.keyframes:  # keyframes: a tick through the band
            x = self.x_of(index + 0.5)
            painter.drawLine(QPointF(x, band.top() - 3), QPointF(x, band.bottom()))
        # outside the in/out range is dimmed; the markers are brackets
        x_in, x_out = self.x_of(self.state.in_point), self.x_of(self.state.out_point + 1)
        shade = QColor(0, 0, 0, 140)
        painter.fillRect(QRectF(track.left(), track.top(), x_in - track.left(), track.height()), shade)
        painter.fillRect(QRectF(x_out, track.top(), track.right() - x_out, track.height()), shade)
        painter.setPen(QPen(QColor(255, 200, 60), 2))
        for x, sign in ((x_in, 1), (x_out, -1)):
            painter.drawLine(QPointF(x, track.top() - 2), QPointF(x, track.bottom() + 2))
            painter.drawLine(QPointF(x, track.top() - 2), QPointF(x + 5 * sign, track.top() - 2))
            painter.drawLine(QPointF(x, track.bottom() + 2), QPointF(x + 5 * sign, track.bottom() + 2))
        self._paint_edit_keys(painter, track)
        # playhead
        x = self.x_of(self.state.frame + 0.5)
        painter.setPen(QPen(QColor(240, 70, 60), 2))
        painter.drawLine(QPointF(x, track.top() - 4), QPointF(x, track.bottom() + 4))
        painter.setBrush(QColor(240, 70, 60))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawPolygon(QPolygonF([QPointF(x - 5, track.top() - 9), QPointF(x + 5, track.top() - 9), QPointF(x, track.top() - 3)]))
        # time and frame number; the range and how much of it is rendered
        painter.setPen(QColor(230, 232, 236))
        text_rect = QRectF(MARGIN, 2, self.width() - 2 * MARGIN, TEXT_HEIGHT - 4)
        now = f"{format_time(info.frame_time(self.state.frame))}   frame {self.state.frame} / {info.frame_count - 1}"
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, now)
        painter.setPen(QColor(170, 176, 186))
        length = self.state.out_point - self.state.in_point + 1
        right = f"in {self.state.in_point} · out {self.state.out_point} ({length} frames) · rendered {self.rendered_count}"
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, right)

    def edit_key_frames(self) -> dict[str, list[int]]:
        """The frames marked as content-editing keys: painted masks and prompt keys."""
        p = self.state.params
        return {"mask": [int(f) for f, _ in p.mask_anchors], "prompt": [int(f) for f, _ in p.prompt_keys]}

    def _paint_edit_keys(self, painter: QPainter, track: QRectF) -> None:
        """A diamond below the thumbnails at each painted mask (cyan) and prompt key (violet)."""
        colours = {"mask": QColor(60, 200, 230), "prompt": QColor(190, 120, 255)}
        painter.setPen(Qt.PenStyle.NoPen)
        for offset, (kind, frames) in enumerate(self.edit_key_frames().items()):
            painter.setBrush(colours[kind])
            y = track.top() + THUMB_HEIGHT - 6 - 9 * offset
            for frame in frames:
                x = self.x_of(frame + 0.5)
                painter.drawPolygon(QPolygonF([QPointF(x, y - 4), QPointF(x + 4, y), QPointF(x, y + 4), QPointF(x - 4, y)]))

    # scrubbing
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.state.info is not None:
            self._dragging = True
            self.scrub_started.emit()
            self.state.set_frame(self.index_at(event.position().x()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging:
            self.state.set_frame(self.index_at(event.position().x()))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._dragging = False
