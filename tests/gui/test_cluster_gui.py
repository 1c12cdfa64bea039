"""The app sends a render to a Ray cluster: "Render on" in the export settings, remembered, with `local`
(Ray started on this machine, on loopback, for the render and stopped after it)."""

import os

import pytest
from gui_helpers import open_clip

from pipeline.video import probe

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"  # no token file written into the home folder

pytestmark = [pytest.mark.gui, pytest.mark.cluster]


def test_export_on_a_local_ray_cluster_is_remembered_and_verified(make_window, qtbot, small_clip, tmp_path):
    window = make_window()
    open_clip(qtbot, window, small_clip)
    window.state.set_range(0, 7)
    dialog = window.open_export_dialog()
    row = dialog.render_on
    assert row.available and not row.address.isVisible()
    row.set_cluster("local")
    assert row.address.isVisible() and window.jobs.cluster == "local"
    target = tmp_path / "styled.mp4"
    dialog.path.setText(str(target))
    with qtbot.waitSignal(window.jobs.export_done, timeout=180000) as done:
        dialog.accept()
    result = done.args[0]
    assert result["verification"]["ok"] and result["total"] == 8 and result["rendered"] == 8
    status = window.render_bar.cluster.text()
    assert status.startswith("cluster 8/8 frames") and "@127.0.0.1" in status, status
    info = probe(target)
    assert info.frame_count == 8 and info.has_audio
    window.shutdown()
    again = make_window()  # the choice and the address come back in a new window
    assert again.jobs.cluster == "local"
    assert again.open_export_dialog() is None  # no clip yet
    open_clip(qtbot, again, small_clip)
    assert again.open_export_dialog().render_on.cluster() == "local"


def test_without_ray_the_cluster_choice_is_disabled_with_the_reason(window, qtbot, small_clip, monkeypatch):
    import vdiff_gui.widgets.render_target as render_target

    monkeypatch.setattr(render_target, "ray_available", lambda: False)  # as in the desktop bundle
    open_clip(qtbot, window, small_clip)
    row = window.open_export_dialog().render_on
    assert not row.target.model().item(1).isEnabled()
    assert "cluster extra" in row.target.itemData(1, 3) and not row.address.isEnabled()
    assert row.cluster() is None


def test_a_bad_stored_render_target_falls_back_to_this_machine(tmp_path):
    from vdiff_gui.settings import AppSettings

    settings = AppSettings(tmp_path / "gui.ini")
    settings.set_raw("render/target", "the moon")
    assert settings.render_target() == "machine" and settings.render_cluster() is None
    settings.set_render_target("cluster")
    settings.set_cluster_address("no port here")
    assert settings.render_cluster() is None  # unusable: renders stay here, with a log line
    settings.set_cluster_address("10.0.0.1:6379")
    assert settings.render_cluster() == "10.0.0.1:6379"
