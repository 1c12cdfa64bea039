"""Downloading a hub model from the model field, against the fake hub on 127.0.0.1."""

import pytest
from fake_hub import FakeHub, closed_port_url, go_offline, use_hub
from gui_helpers import open_clip, wait_stylized
from PySide6.QtCore import Qt
from pytestqt.exceptions import TimeoutError as SignalTimeout

from pipeline.tiny_models import make_tiny_sd_folder

pytestmark = [pytest.mark.gui, pytest.mark.diffusion, pytest.mark.timeout(180)]

REPO = "org/tiny"
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"  # 4 MB, the largest file: served slowly


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("hub-model") / "tiny")


@pytest.fixture
def fake_hub(tiny_folder, tmp_path, monkeypatch):
    server = FakeHub()
    server.add_folder(REPO, tiny_folder)
    server.slow[(REPO, WEIGHTS)] = 0.01
    use_hub(monkeypatch, server.start(), tmp_path / "hub")
    yield server
    server.stop()


def type_model(qtbot, window, text):
    picker = window.param_panel.model
    picker.edit.clear()
    qtbot.keyClicks(picker.edit, text)
    qtbot.keyClick(picker.edit, Qt.Key.Key_Return)
    return picker


def test_download_shows_bytes_then_the_model_previews(fake_hub, window, qtbot, small_clip, monkeypatch):
    window.state.edit(engine="diffusion", steps=2, strength=0.5, guidance=1.0, max_side=64)
    picker = type_model(qtbot, window, REPO)
    qtbot.waitUntil(picker.download_button.isVisible, timeout=10000)
    assert "not in the local cache" in picker.hint.text()
    assert window.state.params.model == ""  # not chosen until it is downloaded

    qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    assert picker.progress.isVisible() and picker.cancel_button.isVisible() and not picker.download_button.isVisible()
    bars = []
    picker.download.progress_changed.connect(
        lambda *_: bars.append((picker.progress.value(), picker.progress.maximum(), picker.progress.text()))
    )
    qtbot.waitUntil(lambda: window.state.params.model == REPO, timeout=60000)
    values = [value for value, _, _ in bars]
    assert values == sorted(values) and len(set(values)) >= 5  # byte progress, inside the slow file too
    assert bars[-1][0] == bars[-1][1] > 0
    assert bars[-1][2] == "org/tiny: 6.8 / 6.8 MB"
    assert not picker.progress.isVisible() and not picker.download_button.isVisible()
    qtbot.waitUntil(lambda: picker.hint.text() == "✓ hub id, in the local Hugging Face cache", timeout=10000)

    fake_hub.stop()  # the preview loads it from the cache alone
    go_offline(monkeypatch)
    open_clip(qtbot, window, small_clip)
    wait_stylized(qtbot, window, 0, timeout=60000)
    assert window.compare.after_view.image().width() == 64
    assert window.device_label.text() == "device: cpu"
    assert not window.banner.isVisible()


def test_cancel_stops_the_download_and_keeps_the_model(fake_hub, window, qtbot):
    fake_hub.slow[(REPO, WEIGHTS)] = 0.2  # about 320 kB/s: the 4 MB file is still arriving when Cancel is clicked
    window.state.edit(engine="diffusion")
    picker = type_model(qtbot, window, REPO)
    qtbot.waitUntil(picker.download_button.isVisible, timeout=10000)
    qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: picker.progress.maximum() > 0 and picker.progress.value() > 300, timeout=30000)
    download = picker.download
    ended = []  # how it ended otherwise, for the message
    download.finished.connect(lambda repo: ended.append(f"finished {repo}"))
    download.failed.connect(lambda text: ended.append(f"failed: {text}"))
    try:
        with qtbot.waitSignal(download.cancelled, timeout=60000):
            qtbot.mouseClick(picker.cancel_button, Qt.MouseButton.LeftButton)
    except SignalTimeout:
        state = ended or ("thread ended, no signal seen" if download.wait(0) else "thread still running")
        raise AssertionError(f"no cancelled signal in 60 s; the download: {state}, "
                             f"{picker.progress.value()} of {picker.progress.maximum()} KiB, "
                             f"bar {picker.progress.format()!r}, hint {picker.hint.text()!r}") from None
    assert "download cancelled" in picker.hint.text() and picker.download_button.isVisible()
    assert window.state.params.model == "" and not window.banner.isVisible()
    assert download.wait(10)


def test_unknown_repo_shows_the_error_in_the_banner(fake_hub, window, qtbot):
    window.state.edit(engine="diffusion")
    picker = type_model(qtbot, window, "nobody/nothing")
    qtbot.waitUntil(picker.download_button.isVisible, timeout=10000)
    qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.banner.isVisible, timeout=30000)
    assert window.banner.label.text().startswith("Download failed: there is no model 'nobody/nothing'")
    assert picker.download_button.isVisible() and not picker.progress.isVisible()


def test_unreachable_hub_says_so_in_the_banner(window, qtbot, monkeypatch, tmp_path):
    use_hub(monkeypatch, closed_port_url(), tmp_path / "hub")
    window.state.edit(engine="diffusion")
    picker = type_model(qtbot, window, REPO)
    qtbot.waitUntil(picker.download_button.isVisible, timeout=10000)
    qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.banner.isVisible, timeout=30000)
    assert "cannot reach the Hugging Face hub" in window.banner.label.text()


def test_offline_a_typed_hub_id_is_chosen_and_the_loader_explains(window, qtbot, monkeypatch, tmp_path):
    use_hub(monkeypatch, closed_port_url(), tmp_path / "hub")
    go_offline(monkeypatch)
    window.state.edit(engine="diffusion")
    picker = type_model(qtbot, window, REPO)
    qtbot.waitUntil(lambda: window.state.params.model == REPO, timeout=10000)
    assert "downloads are off" in picker.hint.text() and not picker.download_button.isVisible()


def test_every_receiver_of_a_downloads_last_signal_gets_it(fake_hub, window, qtbot, monkeypatch):
    # the field deletes the download when it ends; its thread may still be posting the signal to later receivers
    from vdiff_gui.widgets.model_picker import ModelDownload

    window.state.edit(engine="diffusion")
    picker = type_model(qtbot, window, REPO)
    qtbot.waitUntil(picker.download_button.isVisible, timeout=10000)
    received, start = [], ModelDownload.start

    def start_with_a_second_receiver(download):
        download.cancelled.connect(lambda: received.append(download.repo_id))  # after the field's own slot
        start(download)

    monkeypatch.setattr(ModelDownload, "start", start_with_a_second_receiver)
    for done in range(1, 41):
        qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(picker.cancel_button, Qt.MouseButton.LeftButton)  # it ends once the file list is in
        qtbot.waitUntil(lambda: picker.download is None, timeout=30000)
        qtbot.wait(20)  # a signal still queued is delivered now
        assert len(received) == done, f"round {done}: the second receiver got {len(received)} signals"
        assert "download cancelled" in picker.hint.text()
