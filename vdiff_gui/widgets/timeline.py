"""The timeline: thumbnails, the rendered-frames band, in/out markers, the playhead, time and frame.

It takes the ProjectState in its constructor, paints what the state says and changes it only through
the state's methods: click or drag to scrub, drag an in/out flag in the lane above the thumbnails to
move it (one undo step per drag), the wheel zooms around the pointer (Shift+wheel scrolls). Keyboard
shortcuts live in the window's View menu.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPolygonF, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from pipeline.words import count
from vdiff_gui.project_state import ProjectState

THUMB_HEIGHT = 44
BAND_HEIGHT = 6
TEXT_HEIGHT = 20
MARGIN = 8
LANE_HEIGHT = 12  # above the thumbnails: the in/out flags and the playhead's head
GRAB = 7  # px either side of a flag that picks it up
MIN_VISIBLE = 8  # frames: the deepest zoom
ZOOM_STEP = 1.25  # per wheel notch


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
    view_changed = Signal()  # zoomed or scrolled: views aligned with the timeline repaint

    def __init__(self, state: ProjectState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("timeline")
        self.state = state
        self._thumbnails: list[QImage] = []
        self._rendered: list[tuple[int, int]] = []
        self.rendered_count = 0
        self.keyframes: list[int] = []  # marked as ticks above the rendered band (keyframe rendering)
        self._dragging: str | None = None  # "playhead", "in" or "out"
        self.view_start = 0.0  # first frame shown (fractional while zoomed)
        self.view_count = 1.0  # frames across the track
        self.setMinimumHeight(THUMB_HEIGHT + BAND_HEIGHT + TEXT_HEIGHT + LANE_HEIGHT + 2 * MARGIN + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setMouseTracking(True)  # the pointer changes over the in/out flags
        self.setToolTip("Click or drag to scrub · drag the yellow flags to move in/out · wheel to zoom, Shift+wheel "
                        "to scroll\nSpace play/pause · J/K/L shuttle · ←/→ one frame · Shift+←/→ one second · I/O set "
                        "in/out · Alt+X clear them")
        state.clip_changed.connect(self._on_clip_changed)
        state.frame_changed.connect(self._on_frame_changed)
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
        self.view_start, self.view_count = 0.0, float(info.frame_count if info else 1)
        self.view_changed.emit()
        self.update()

    def _on_frame_changed(self, index: int) -> None:
        if not self.view_start <= index < self.view_start + self.view_count:  # keep the playhead in sight
            self._set_view(index - self.view_count / 2, self.view_count)
        self.update()

    # zoom and scroll
    @property
    def frame_count(self) -> int:
        return self.state.info.frame_count if self.state.info else 1

    @property
    def zoom(self) -> float:
        """1.0 shows the whole clip; 2.0 half of it, and so on."""
        return self.frame_count / self.view_count

    def _clamp_count(self, count: float) -> float:
        return max(float(min(MIN_VISIBLE, self.frame_count)), min(float(self.frame_count), count))

    def _set_view(self, start: float, count: float) -> None:
        count = self._clamp_count(count)
        start = max(0.0, min(self.frame_count - count, start))
        if (start, count) != (self.view_start, self.view_count):
            self.view_start, self.view_count = start, count
            self.view_changed.emit()
            self.update()

    def zoom_by(self, factor: float, anchor_x: float | None = None) -> None:
        """Zoom in (factor > 1) or out, keeping the frame under anchor_x (default: the playhead) in place."""
        track = self._track()
        x = self.x_of(self.state.frame + 0.5) if anchor_x is None else anchor_x
        fraction = min(1.0, max(0.0, (x - track.left()) / max(1.0, track.width())))
        anchor = self.view_start + fraction * self.view_count
        count = self._clamp_count(self.view_count / factor)
        self._set_view(anchor - fraction * count, count)

    def zoom_to_fit(self) -> None:
        self._set_view(0.0, float(self.frame_count))

    def scroll_by(self, frames: float) -> None:
        self._set_view(self.view_start + frames, self.view_count)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.state.info is None:
            return
        delta = event.angleDelta()
        notches = (delta.y() or delta.x()) / 120
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier or (delta.x() and not delta.y()):
            self.scroll_by(-notches * self.view_count / 10)
        else:
            self.zoom_by(ZOOM_STEP ** notches, event.position().x())
        event.accept()

    # geometry
    def _track(self) -> QRectF:
        top = MARGIN + TEXT_HEIGHT + LANE_HEIGHT
        return QRectF(MARGIN, top, self.width() - 2 * MARGIN, THUMB_HEIGHT + BAND_HEIGHT)

    def x_of(self, index: float) -> float:
        track = self._track()
        return track.left() + track.width() * (index - self.view_start) / self.view_count

    def index_at(self, x: float) -> int:
        track = self._track()
        return int(self.view_start + (x - track.left()) / max(1.0, track.width()) * self.view_count)

    def flag_at(self, x: float, y: float) -> str | None:
        """"in" or "out" when (x, y) is on that flag in the lane above the thumbnails."""
        track = self._track()
        if self.state.info is None or not track.top() - LANE_HEIGHT - 4 <= y < track.top():
            return None
        near = [(abs(x - self.x_of(self.state.in_point)), "in"), (abs(x - self.x_of(self.state.out_point + 1)), "out")]
        distance, flag = min(near)
        return flag if distance <= GRAB else None

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
        painter.save()
        painter.setClipRect(QRectF(track.left(), track.top() - LANE_HEIGHT - 2, track.width(), track.height() + LANE_HEIGHT + 6))
        thumbs = QRectF(track.left(), track.top(), track.width(), THUMB_HEIGHT)
        painter.fillRect(thumbs, QColor(22, 24, 28))
        if self._thumbnails:
            # tiles at the clip's aspect; each shows the thumbnail nearest the frame at its middle
            first = self._thumbnails[0]
            tile = max(8.0, THUMB_HEIGHT * first.width() / max(1, first.height()))
            last = max(1, info.frame_count - 1)
            for slot in range(max(1, int(thumbs.width() // tile) + 1)):
                frame = self.view_start + (slot + 0.5) * tile / thumbs.width() * self.view_count
                pick = min(len(self._thumbnails) - 1, max(0, round(frame / last * (len(self._thumbnails) - 1))))
                painter.drawImage(QRectF(thumbs.left() + slot * tile, thumbs.top(), tile, THUMB_HEIGHT), self._thumbnails[pick])
        band = QRectF(track.left(), thumbs.bottom(), track.width(), BAND_HEIGHT)
        painter.fillRect(band, QColor(60, 64, 72))
        for first, last in self._rendered:
            painter.fillRect(QRectF(self.x_of(first), band.top(), self.x_of(last + 1) - self.x_of(first), BAND_HEIGHT),
                             QColor(80, 200, 120))
        painter.setPen(QPen(QColor(250, 250, 250), 1))
        for index in self.keyframes:  # keyframes: a tick through the band (those in view)
            x = self.x_of(index + 0.5)
            if track.left() <= x <= track.right():
                painter.drawLine(QPointF(x, band.top() - 3), QPointF(x, band.bottom()))
        # outside the in/out range is dimmed; the markers are brackets with a flag in the lane to drag
        x_in, x_out = self.x_of(self.state.in_point), self.x_of(self.state.out_point + 1)
        shade = QColor(0, 0, 0, 140)
        painter.fillRect(QRectF(track.left(), track.top(), x_in - track.left(), track.height()), shade)
        painter.fillRect(QRectF(x_out, track.top(), track.right() - x_out, track.height()), shade)
        yellow = QColor(255, 200, 60)
        for x, sign in ((x_in, 1), (x_out, -1)):
            painter.setPen(QPen(yellow, 2))
            painter.drawLine(QPointF(x, track.top() - LANE_HEIGHT), QPointF(x, track.bottom() + 2))
            painter.drawLine(QPointF(x, track.bottom() + 2), QPointF(x + 5 * sign, track.bottom() + 2))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(yellow)
            top = track.top() - LANE_HEIGHT
            painter.drawPolygon(QPolygonF([QPointF(x, top), QPointF(x + 9 * sign, top), QPointF(x + 9 * sign, top + 7),
                                           QPointF(x, top + 10)]))
        self._paint_edit_keys(painter, track)
        # playhead
        x = self.x_of(self.state.frame + 0.5)
        painter.setPen(QPen(QColor(240, 70, 60), 2))
        painter.drawLine(QPointF(x, track.top() - 4), QPointF(x, track.bottom() + 4))
        painter.setBrush(QColor(240, 70, 60))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawPolygon(QPolygonF([QPointF(x - 5, track.top() - 9), QPointF(x + 5, track.top() - 9), QPointF(x, track.top() - 3)]))
        painter.restore()
        # time and frame number; the range and how much of it is rendered; the zoom
        painter.setPen(QColor(230, 232, 236))
        text_rect = QRectF(MARGIN, 2, self.width() - 2 * MARGIN, TEXT_HEIGHT - 4)
        now = f"{format_time(info.frame_time(self.state.frame))}   frame {self.state.frame} / {info.frame_count - 1}"
        if self.zoom > 1.001:
            now += f"   zoom ×{self.zoom:.1f}"
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, now)
        painter.setPen(QColor(170, 176, 186))
        length = self.state.out_point - self.state.in_point + 1
        right = (f"in {self.state.in_point} · out {self.state.out_point} ({count(length, 'frame')}) "
                 f"· rendered {self.rendered_count}")
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

    # scrubbing and moving the markers
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.state.info is None:
            return
        position = event.position()
        self._dragging = self.flag_at(position.x(), position.y()) or "playhead"
        if self._dragging == "playhead":
            self.scrub_started.emit()
        self._drag_to(position.x())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        position = event.position()
        if self._dragging:
            self._drag_to(position.x())
        elif self.flag_at(position.x(), position.y()):
            self.setCursor(Qt.CursorShape.SizeHorCursor)
        else:
            self.setCursor(Qt.CursorShape.PointingHandCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._dragging in ("in", "out"):
            self.state.close_merge()  # the whole drag is one undo step
        self._dragging = None

    def _drag_to(self, x: float) -> None:
        if self._dragging == "in":
            index = min(self.state.out_point, self.index_at(x + 0.5 * self._frame_width()))
            self.state.edit_range(index, self.state.out_point, merge_key="in")
        elif self._dragging == "out":
            index = max(self.state.in_point, self.index_at(x - 0.5 * self._frame_width()))
            self.state.edit_range(self.state.in_point, index, merge_key="out")
        else:
            self.state.set_frame(self.index_at(x))

    def _frame_width(self) -> float:
        return self._track().width() / self.view_count
