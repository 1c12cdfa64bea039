"""Shared fixtures. Qt runs offscreen; caches, settings and the HF hub are isolated per test."""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt
os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach a model hub

from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import pytest  # noqa: E402

from pipeline.sample import make_sample_clip  # noqa: E402


def pytest_runtest_setup(item):
    """Outside tests/gui no Qt event loop spins: cyclic collection goes back to Python (see tests/gui/conftest.py)."""
    garbage = sys.modules.get("vdiff_gui.garbage")
    if garbage is not None and item.path.parent.name != "gui":
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        for collector in app.findChildren(garbage.GuiGarbageCollector) if app is not None else []:
            collector.stop()


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path, monkeypatch):
    """Each test gets its own cache and settings folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("VDIFF_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def sample_clip(clip_dir):
    """48 frames, 320x180, 24 fps, H.264 with an AAC tone."""
    return make_sample_clip(clip_dir / "sample.mp4", frames=48, width=320, height=180, fps=24)


@pytest.fixture(scope="session")
def ntsc_clip(clip_dir):
    """30 frames at 30000/1001 fps with audio."""
    return make_sample_clip(clip_dir / "ntsc.mp4", frames=30, width=160, height=96, fps=Fraction(30000, 1001))


# --- the diffusion tests' shared parts (built once per session; tests that change a model copy it first) ---


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A tiny random-weight SD pipeline saved as a user's model folder, loaded through the user's code path."""
    from pipeline.tiny_models import make_tiny_sd_folder  # torch and diffusers: only for the tests that ask

    return make_tiny_sd_folder(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def frame() -> np.ndarray:
    """A 64x48 frame: a colour gradient with a square, so img2img has structure to keep. Do not modify it."""
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack([x * 4, y * 5, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    image[12:30, 20:40] = (230, 40, 40)
    image.flags.writeable = False  # shared by the session: a test that writes to it fails loudly
    return image
