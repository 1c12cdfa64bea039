"""Keyframe rendering in the app: the parameter, the timeline marks, and previews of in-between frames."""

import numpy as np
import pytest
from gui_helpers import open_clip, shown_pixels, wait_stylized
from PySide6.QtWidgets import QSpinBox

from pipeline.keyframes import plan_keyframes

pytestmark = pytest.mark.gui


def test_a_render_marks_its_keyframes_on_the_timeline(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    spin = window.param_panel.findChild(QSpinBox, "keyframeIntervalSpin")
    assert spin.isVisible() and spin.specialValueText() == "engine default"
    spin.setValue(5)  # the "Keyframes every N frames" parameter
    assert window.state.params.keyframe_interval == 5
    window.state.set_range(2, 13)
    with qtbot.waitSignal(window.worker.render_finished, timeout=30000):
        window.render_bar.render_button.click()
    expected = list(plan_keyframes(small_clip, window.state.params, 2, 14).keyframes)
    assert expected[:3] == [2, 7, 12]
    qtbot.waitUntil(lambda: window.timeline.keyframes == expected, timeout=10000)
    window.state.edit(keyframe_interval=1)  # every frame through the engine: nothing to mark
    qtbot.waitUntil(lambda: window.timeline.keyframes == [], timeout=10000)


def test_an_inbetween_preview_shows_the_frame_the_render_makes(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    window.state.edit(keyframe_interval=4, style="6")
    window.state.set_frame(6)  # between keyframes 4 and 8: both are rendered for the preview
    wait_stylized(qtbot, window, 6, timeout=30000)
    previewed = shown_pixels(window.compare.after_view)
    qtbot.waitUntil(lambda: window.timeline.keyframes[:3] == [0, 4, 8], timeout=10000)
    with qtbot.waitSignal(window.worker.render_finished, timeout=30000):
        window.render_bar.render_button.click()
    rendered = window.preview.entry.load(6)
    # fast-style's flow chain makes keyframe 4 depend on keyframe 0, so the preview renders it alone:
    # the preview is the propagated in-between of those keyframes, close to the render's frame
    assert previewed.shape == rendered.shape
    assert np.abs(previewed.astype(int) - rendered.astype(int)).mean() < 20
