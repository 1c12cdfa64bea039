"""Issue #12 in the app: the ControlNet list (preprocessor, scale, control-image preview), the LoRA list, the
style picture and IP-Adapter for diffusion, in presets and projects; each edit is one undo step."""

import json

import numpy as np
import pytest

from pipeline.request import StyleParams
from vdiff_gui.project_file import Project, load_project, save_project

pytestmark = pytest.mark.gui


def test_controlnet_and_lora_lists_edit_the_params_undoably(window, tmp_path):
    panel, state = window.param_panel, window.state
    state.edit(engine="diffusion", model="org/model")
    visible = lambda field: panel.form.isRowVisible(panel.rows[field])  # noqa: E731
    assert visible("controlnets") and visible("loras") and visible("style_image") and visible("ip_adapter")
    assert not visible("annotator")  # only for the learned preprocessors
    panel.controlnets.add(str(tmp_path / "canny-net"))
    assert [(n.model, n.control, n.scale) for n in state.params.controlnets] == [(str(tmp_path / "canny-net"), "canny", 1.0)]
    panel.controlnets.change(0, control="depth", scale=0.6)
    assert (state.params.controlnets[0].control, state.params.controlnets[0].scale) == ("depth", 0.6)
    assert visible("annotator")
    panel.loras.add(str(tmp_path / "style.safetensors"))
    panel.loras.change(0, weight=0.8)
    assert [(lora.path, lora.weight) for lora in state.params.loras] == [(str(tmp_path / "style.safetensors"), 0.8)]
    rows = panel.loras._rows.count()
    window.actions["undo"].trigger()
    assert state.params.loras[0].weight == 1.0 and panel.loras._rows.count() == rows
    panel.controlnets.remove(0)
    assert state.params.controlnets == ()


def test_the_control_preview_shows_the_current_frames_canny_edges(window):
    panel, state = window.param_panel, window.state
    state.edit(engine="diffusion", model="org/model", controlnets=[{"model": "org/net", "control": "canny"}])
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[10:30, 20:40] = 255
    panel.controlnets.show_source(frame)
    pixmap = panel.controlnets.preview.pixmap()
    assert not panel.controlnets.preview.isHidden() and not pixmap.isNull()
    image = pixmap.toImage()
    values = {image.pixelColor(x, y).red() for x in range(image.width()) for y in range(image.height())}
    assert 0 in values and max(values) > 200  # edges on black, not the frame itself
    state.edit(controlnets=[{"model": "org/net", "control": "depth"}])
    assert "during the render" in panel.controlnets.preview.text()


def test_conditioning_round_trips_through_presets_and_projects(window, tmp_path):
    state, bar = window.state, window.param_panel.preset_bar
    conditioned = dict(
        engine="diffusion", model="org/model", controlnets=[{"model": "org/net", "control": "tile", "scale": 0.7,
                                                             "start": 0.1, "end": 0.9}],
        loras=[{"path": "a.safetensors", "weight": 0.8}], ip_adapter="ip.safetensors", style_image="pic.png",
        ip_adapter_scale=0.4,
    )
    state.edit(**conditioned)
    expected = state.params
    bar.save_preset("Conditioned")
    state.edit_params(StyleParams(device=state.params.device))
    bar.load_preset("Conditioned")
    assert state.params.replace(device=expected.device) == expected
    stored = json.loads(next((tmp_path / "config" / "presets").glob("*.json")).read_text())
    assert stored["version"] == 2 and stored["params"]["controlnets"][0]["control"] == "tile"
    path = save_project(tmp_path / "p.vdiff", Project(tmp_path / "clip.mp4", expected))
    assert load_project(path).params == expected
    assert json.loads(path.read_text())["version"] == 2
