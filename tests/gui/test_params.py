"""The parameter panel: undo/redo, one slider drag is one undo step, presets, reset, engine rows."""

import json

import pytest
from PySide6.QtCore import Qt

from pipeline.request import StyleParams

pytestmark = pytest.mark.gui


def drag(slider, values):
    """What a mouse drag does to a QSlider: press, several moves while held down, release."""
    slider.setSliderDown(True)
    for value in values:
        slider.setValue(value)
    slider.setSliderDown(False)


def test_undo_and_redo_of_parameter_edits(window, qtbot):
    state, panel = window.state, window.param_panel
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    drag(panel.strength, (90, 75, 60, 45))
    assert state.params.strength == 0.45
    assert state.undo_stack.count() == 1  # the whole drag
    panel.style_grid.buttons[7].click()
    assert state.params.style == "7" and state.undo_stack.count() == 2
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert state.params.style == "0" and state.params.strength == 0.45
    assert panel.style_grid.buttons[0].isChecked()
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert state.params.strength == 1.0 and panel.strength.value() == 100
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert state.params.strength == 0.45 and panel.strength.value() == 45
    window.actions["redo"].trigger()
    assert state.params.style == "7"
    # a second drag after the release is its own step
    drag(panel.strength, (50, 55))
    assert state.undo_stack.count() == 3
    window.actions["undo"].trigger()
    assert state.params.strength == 0.45


def test_engine_switch_shows_that_engines_rows_and_is_undoable(window):
    panel, state = window.param_panel, window.state
    visible = lambda field: panel.form.isRowVisible(panel.rows[field])  # noqa: E731
    assert visible("style") and not visible("prompt") and not visible("look")
    panel.engine.setCurrentIndex(panel.engine.findData("classical"))
    panel.engine.activated.emit(panel.engine.currentIndex())
    assert state.params.engine == "classical"
    assert visible("look") and not visible("style") and not visible("denoise_window")
    state.edit(look="denoise")
    assert visible("denoise_window")
    state.edit(engine="diffusion")
    assert visible("prompt") and visible("model") and visible("seed") and visible("guidance")
    seed = state.params.seed
    panel.findChild(type(panel.reset_button), "newSeedButton").click()
    assert state.params.seed != seed
    window.actions["undo"].trigger()
    assert state.params.seed == seed
    panel.reset_button.click()
    assert state.params == StyleParams(device=state.params.device)


def test_presets_load_save_delete(window):
    bar, state = window.param_panel.preset_bar, window.state
    names = [bar.combo.itemData(i) for i in range(bar.combo.count())]
    assert "Classical: cartoon" in names and "Fast style: bold mosaic" in names  # shipped in resources/presets
    bar.combo.setCurrentIndex(bar.combo.findData("Classical: cartoon"))
    assert not bar.delete_button.isEnabled()  # built-in presets stay
    bar.load_button.click()
    assert state.params.engine == "classical" and state.params.look == "cartoon"
    state.edit(strength=0.3)
    bar.save_preset("My soft cartoon")
    assert bar.combo.currentData() == "My soft cartoon" and bar.delete_button.isEnabled()
    state.edit_params(StyleParams(device="cpu"))
    bar.load_preset("My soft cartoon")
    assert (state.params.look, state.params.strength, state.params.device) == ("cartoon", 0.3, "cpu")
    window.actions["undo"].trigger()  # loading a preset is one undo step
    assert state.params == StyleParams(device="cpu")
    bar.delete_button.click()
    assert bar.combo.findData("My soft cartoon") < 0


@pytest.mark.reliability
@pytest.mark.parametrize("content, message", [
    ("{ not json", "not valid JSON"),
    (json.dumps({"version": 7, "name": "Future", "params": {"engine": "classical"}}), "newer vdiff"),
    (json.dumps({"name": "Old", "params": {"engine": "classical"}}), "no version field"),
    (json.dumps({"version": 1, "name": "Bad", "params": {"engine": "warp-drive"}}), "unknown engine"),
])
def test_a_bad_preset_file_gets_a_message_and_is_never_overwritten(make_window, content, message):
    from pipeline.config import config_dir

    folder = config_dir() / "presets"
    folder.mkdir(parents=True)
    bad = folder / "my-look.json"
    bad.write_text(content)
    window = make_window()
    assert window.banner.isVisible() and message in window.banner.label.text()
    assert "my-look.json" in window.banner.label.text()
    bar = window.param_panel.preset_bar
    bar.save_preset("My look")  # the same file name: refused, the unreadable file stays as it was
    assert "already exists" in window.banner.label.text()
    assert bad.read_text() == content
    assert bar.combo.findData("My look") < 0
