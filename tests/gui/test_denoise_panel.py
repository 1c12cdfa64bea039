"""The denoise look in the parameter panel: the clip's estimated noise is shown, and can be overridden."""

import pytest
from gui_helpers import open_clip

from pipeline.footage import make_footage_clip

pytestmark = pytest.mark.gui


def test_the_panel_shows_the_clips_noise_and_takes_an_override(window, qtbot, tmp_path):
    clip = make_footage_clip(tmp_path / "noisy.mkv", frames=6, width=96, height=72, noise="gaussian", sigma=20,
                             codec="ffv1", audio=False)
    open_clip(qtbot, window, clip)
    panel, state = window.param_panel, window.state
    visible = lambda field: panel.form.isRowVisible(panel.rows[field])  # noqa: E731
    state.edit(engine="classical", look="stylization")
    assert not visible("denoise_strength")
    state.edit(look="denoise")
    assert visible("denoise_strength") and not visible("temporal_flow")
    qtbot.waitUntil(lambda: "noise σ" in panel.noise_estimate.text(), timeout=20000)
    shown = float(panel.noise_estimate.text().split("σ")[1].split()[0])
    assert 16.0 < shown < 24.0  # the clip has sigma 20
    spin = panel.rows["denoise_strength"].findChild(type(panel.rows["guidance"]))
    spin.setValue(12.5)
    assert state.params.denoise_strength == 12.5
    spin.setValue(0.0)  # "auto"
    assert state.params.denoise_strength is None
