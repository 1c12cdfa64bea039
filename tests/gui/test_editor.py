"""Editor habits: J/K/L, Esc, Ctrl+R, keys that type in fields, in/out flags, timeline and compare zoom."""

import pytest
from gui_helpers import open_clip, wait_stylized
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from vdiff_gui.shortcuts import shuttle_rate
from vdiff_gui.widgets.compare_view import ZOOM_LEVELS, next_zoom
from vdiff_gui.widgets.timeline import LANE_HEIGHT

pytestmark = pytest.mark.gui


def focus(qtbot, window, widget):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus)


def wheel(widget, pos: QPointF, notches: int, modifiers=Qt.KeyboardModifier.NoModifier):
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_shuttle_rates_follow_the_editors():
    assert shuttle_rate(1.0, False, "L") == 1.0
    assert [shuttle_rate(r, True, "L") for r in (1.0, 2.0, 4.0, 8.0)] == [2.0, 4.0, 8.0, 8.0]
    assert shuttle_rate(4.0, True, "J") == -1.0 and shuttle_rate(-1.0, True, "J") == -2.0
    assert shuttle_rate(-2.0, True, "K") == 0.0


def test_j_k_l_shuttle_plays_backwards_faster_and_stops(window, qtbot, small_clip, monkeypatch):
    monkeypatch.setenv("VDIFF_NO_AUDIO", "1")
    open_clip(qtbot, window, small_clip)
    focus(qtbot, window, window.timeline)
    window.state.set_frame(10)
    qtbot.keyClick(window.timeline, Qt.Key.Key_J)
    assert window.playback.playing and window.playback.rate == -1.0
    qtbot.keyClick(window.timeline, Qt.Key.Key_J)
    assert window.playback.rate == -2.0 and window.shuttle_label.text() == "◀◀ 2×"
    qtbot.waitUntil(lambda: window.state.frame < 10, timeout=5000)  # it really goes backwards
    qtbot.keyClick(window.timeline, Qt.Key.Key_K)
    assert not window.playback.playing and window.shuttle_label.text() == ""
    stopped_at = window.state.frame
    qtbot.wait(300)
    assert window.state.frame == stopped_at
    qtbot.keyClick(window.timeline, Qt.Key.Key_L)
    qtbot.keyClick(window.timeline, Qt.Key.Key_L)
    assert window.playback.playing and window.playback.rate == 2.0
    qtbot.keyClick(window.timeline, Qt.Key.Key_K)
    qtbot.keyClick(window.timeline, Qt.Key.Key_Space)  # Space plays forwards at 1x again
    assert window.playback.playing and window.playback.rate == 1.0
    qtbot.keyClick(window.timeline, Qt.Key.Key_Space)
    assert not window.playback.playing


def test_ctrl_r_renders_and_esc_cancels(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    focus(qtbot, window, window.timeline)
    file_menu = window.menuBar().actions()[0].menu()
    assert window.actions["render"] in file_menu.actions() and window.actions["render"].shortcut().toString() == "Ctrl+R"
    window.worker.pause()  # holds the render before its first frame
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        qtbot.keyClick(window.timeline, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert window.jobs.busy
    with qtbot.waitSignal(window.jobs.cancelled, timeout=10000):
        qtbot.keyClick(window.timeline, Qt.Key.Key_Escape)
    assert not window.jobs.busy and "cancelled" in window.render_bar.status.text()
    assert window.jobs.history[-1].state == "cancelled"


def test_space_i_o_type_in_a_text_field_instead_of_firing(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.state.set_frame(5)
    field = window.param_panel.style_spec
    focus(qtbot, window, field)
    field.clear()
    qtbot.keyClicks(field, "io jkl")
    assert field.text() == "io jkl"
    assert (window.state.in_point, window.state.out_point) == (0, 15) and not window.playback.playing
    assert window.state.frame == 5
    focus(qtbot, window, window.timeline)  # outside a field the same keys are shortcuts again
    qtbot.keyClick(window.timeline, Qt.Key.Key_I)
    assert window.state.in_point == 5


def test_the_typing_guard_sees_only_the_focused_fields_events(window, qtbot, small_clip):
    """A filter on the whole application would be a Python call, and a wait for Python's lock, for every
    event of every widget (about 500 a second while playing)."""
    from vdiff_gui.shortcuts import TypingGuard

    seen = []

    class CountingGuard(TypingGuard):
        def eventFilter(self, watched, event):
            seen.append(watched)
            return super().eventFilter(watched, event)

    window.typing_guard.remove()
    window.typing_guard = CountingGuard(window).install()  # the window removes it when it closes
    open_clip(qtbot, window, small_clip)
    focus(qtbot, window, window.timeline)
    for _ in range(5):
        window.timeline.repaint()
        window.compare.repaint()
    qtbot.keyClick(window.timeline, Qt.Key.Key_Right)
    assert seen == [] and window.state.frame == 1
    field = window.param_panel.style_spec
    focus(qtbot, window, field)
    qtbot.keyClick(field, Qt.Key.Key_I)
    assert seen and set(seen) == {field} and field.text().endswith("i")
    focus(qtbot, window, window.timeline)  # the filter left the field with the focus
    seen.clear()
    field.repaint()
    assert seen == []


def test_in_out_flags_drag_as_one_undo_step_each_and_clear(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    timeline = window.timeline
    lane_y = int(timeline._track().top() - LANE_HEIGHT / 2)
    undo = window.state.undo_stack

    def drag(from_x, to_x):
        qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(from_x), lane_y))
        for step in range(1, 5):  # several moves: merged into one undo step
            qtbot.mouseMove(timeline, QPoint(int(from_x + (to_x - from_x) * step / 4), lane_y))
        qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(to_x), lane_y))

    assert timeline.flag_at(timeline.x_of(0), lane_y) == "in"
    drag(timeline.x_of(0), timeline.x_of(4))
    assert (window.state.in_point, window.state.out_point) == (4, 15) and window.state.frame == 0
    drag(timeline.x_of(16), timeline.x_of(10))
    assert (window.state.in_point, window.state.out_point) == (4, 9)
    assert undo.count() == 2 and window.isWindowModified()
    undo.undo()
    assert (window.state.in_point, window.state.out_point) == (4, 15)
    undo.undo()
    assert (window.state.in_point, window.state.out_point) == (0, 15) and not window.isWindowModified()
    undo.redo()
    undo.redo()
    window.actions["clear_in_out"].trigger()
    assert (window.state.in_point, window.state.out_point) == (0, 15)
    undo.undo()
    assert (window.state.in_point, window.state.out_point) == (4, 9)
    assert window.actions["clear_in_out"].shortcut().toString() == "Alt+X"


def test_wheel_zooms_the_timeline_around_the_pointer_and_shift_scrolls(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    timeline = window.timeline
    x = timeline.x_of(12)
    wheel(timeline, QPointF(x, timeline.height() / 2), 3)
    assert timeline.zoom > 1.9 and abs(timeline.x_of(12) - x) < 1.0  # frame 12 stayed under the pointer
    start = timeline.view_start
    wheel(timeline, QPointF(x, timeline.height() / 2), -1, Qt.KeyboardModifier.ShiftModifier)
    assert timeline.view_start > start and timeline.zoom > 1.9
    # a click in the zoomed timeline still lands on the frame under the pointer
    target = int(timeline.view_start) + 2
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(timeline.x_of(target + 0.5)), timeline.height() - 20))
    assert window.state.frame == target
    window.actions["timeline_fit"].trigger()
    assert timeline.zoom == 1.0


def test_zoom_levels_step_through_fit_and_100():
    assert next_zoom(0.6, 1) == 2 / 3 and next_zoom(1.0, 1) == 1.5 and next_zoom(1.0, -1) == 2 / 3
    assert next_zoom(16.0, 1) == 16.0 and next_zoom(0.125, -1) == 0.125
    assert len([z for z in ZOOM_LEVELS if z > 1]) >= 6


def test_wheel_zooms_the_compare_view_beyond_100_and_a_drag_pans(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0)
    after, before = window.compare.after_view, window.compare.before_view
    centre = QPointF(after.width() / 2, after.height() / 2)
    fitted = after.effective_zoom()
    wheel(after, centre, 1)
    assert window.compare.zoom == next_zoom(fitted, 1) and window.zoom_label.text() == f"zoom: {window.compare.zoom * 100:.0f}%"
    window.actions["zoom_100"].trigger()
    assert window.compare.zoom == 1.0 and window.zoom_label.text() == "zoom: 100%"
    for _ in range(4):  # 150%, 200%, 300%, 400%
        wheel(after, centre, 1)
    assert window.compare.zoom == 4.0 and not window.actions["zoom_fit"].isChecked()
    rect = after.image_rect()
    assert rect.width() == 96 * 4 / after.devicePixelRatioF()
    assert abs(rect.center().x() - centre.x()) < 1 and before.image_rect() == rect  # both views alike
    qtbot.mousePress(after, Qt.MouseButton.LeftButton, pos=QPoint(int(centre.x()), int(centre.y())))
    qtbot.mouseMove(after, QPoint(int(centre.x()) + 30, int(centre.y()) + 10))
    qtbot.mouseRelease(after, Qt.MouseButton.LeftButton, pos=QPoint(int(centre.x()) + 30, int(centre.y()) + 10))
    moved = after.image_rect()
    assert (moved.left() - rect.left(), moved.top() - rect.top()) == (30, 10) and before.image_rect() == moved
    window.actions["zoom_fit"].trigger()
    assert window.compare.fit and window.zoom_label.text() == "zoom: fit"
