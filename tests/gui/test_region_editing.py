"""Content editing in the app: paint a region on a frame, see only it restyled; key prompts on the timeline."""

import numpy as np
import pytest
from gui_helpers import open_clip, shown_pixels, wait_stylized
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QDialog

from pipeline.footage import moving_object_frames, write_frames

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("region")
    return write_frames(folder / "moving.mp4", (f for f, _ in moving_object_frames(24, 160, 96)))


def paint_rectangle(qtbot, painter, corner_a, corner_b):
    """Drag the rectangle tool from one corner to the other (fractions of the frame)."""
    qtbot.mouseClick(painter.findChild(type(painter.tool_buttons.buttons()[0]), "rectangleTool"), Qt.MouseButton.LeftButton)
    canvas = painter.canvas
    rect = canvas.image_rect()
    to_widget = lambda fx, fy: QPoint(int(rect.left() + fx * rect.width()), int(rect.top() + fy * rect.height()))  # noqa: E731
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=to_widget(*corner_a))
    qtbot.mouseMove(canvas, to_widget(*corner_b))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=to_widget(*corner_b))


def test_a_painted_region_is_the_only_part_restyled_and_it_is_undoable(window, qtbot, moving_clip):
    open_clip(qtbot, window, moving_clip)
    wait_stylized(qtbot, window, 0)
    editor = window.param_panel.region
    qtbot.mouseClick(editor.paint, Qt.MouseButton.LeftButton)
    painter = editor.painter
    assert painter is not None and painter.isVisible()
    paint_rectangle(qtbot, painter, (0.5, 0.0), (1.0, 1.0))  # the right half
    mask = painter.mask
    assert mask[:, -5:].min() == 255 and mask[:, :mask.shape[1] // 2 - 5].max() == 0
    painter.feather.setValue(0)
    requested = window.preview.previews_requested
    painter.done(QDialog.DialogCode.Accepted)
    anchors = window.state.params.mask_anchors
    assert [frame for frame, _ in anchors] == [0]
    assert window.timeline.edit_key_frames()["mask"] == [0]  # marked on the timeline
    # the preview: the left half is the source, the right half restyled
    qtbot.waitUntil(lambda: window.preview.previews_requested > requested and window.compare.after_view.marker() is None, timeout=15000)
    wait_stylized(qtbot, window, 0)
    after, before = shown_pixels(window.compare.after_view), shown_pixels(window.compare.before_view)
    half = after.shape[1] // 2
    assert np.abs(after[:, : half - 4].astype(int) - before[:, : half - 4]).max() <= 1
    assert np.abs(after[:, half + 4 :].astype(int) - before[:, half + 4 :]).mean() > 10
    window.state.undo_stack.undo()
    assert window.state.params.mask_anchors == ()
    assert window.timeline.edit_key_frames()["mask"] == []


def test_prompts_keyed_at_frames_are_listed_and_marked(window, qtbot, moving_clip):
    open_clip(qtbot, window, moving_clip)
    window.state.edit(engine="diffusion", model="unused-here", prompt="a forest in winter")
    keys = window.param_panel.prompt_keys
    qtbot.mouseClick(keys.key, Qt.MouseButton.LeftButton)
    window.state.set_frame(10)
    window.state.edit(prompt="a forest in summer")
    qtbot.mouseClick(keys.key, Qt.MouseButton.LeftButton)
    assert window.state.params.prompt_keys == ((0, "a forest in winter"), (10, "a forest in summer"))
    window.state.set_frame(20)
    window.state.edit(prompt="a forest at night")
    qtbot.mouseClick(keys.key, Qt.MouseButton.LeftButton)
    assert [f for f, _ in window.state.params.prompt_keys] == [0, 10, 20]
    assert keys.list.count() == 3
    assert window.timeline.edit_key_frames()["prompt"] == [0, 10, 20]
    keys.list.setCurrentRow(2)
    qtbot.mouseClick(keys.remove, Qt.MouseButton.LeftButton)
    assert [f for f, _ in window.state.params.prompt_keys] == [0, 10]
