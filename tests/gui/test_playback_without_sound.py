"""A machine that cannot load QtMultimedia (a server without PulseAudio's client library) plays the picture
without sound and says why; the self-test does not count it against the bundle."""

import sys

import pytest
from gui_helpers import open_clip

from vdiff_gui.multimedia_preload import missing_system_library
from vdiff_gui.widgets import player
from vdiff_gui.widgets.player import sound_unavailable_text

pytestmark = pytest.mark.gui

LIBPULSE_MISSING = "libpulse.so.0: cannot open shared object file: No such file or directory"  # Debian's ImportError


def test_the_missing_system_library_is_named_and_qts_own_count_as_the_bundles():
    assert missing_system_library(f"PySide6.QtMultimedia did not load: ImportError: {LIBPULSE_MISSING}") == "libpulse.so.0"
    assert missing_system_library("libQt6Multimedia.so.6: cannot open shared object file: No such file") is None
    assert missing_system_library("libavcodec.so.61: cannot open shared object file: No such file") is None  # PySide6's
    assert missing_system_library("the media plugin libffmpegmediaplugin.so did not load: invalid ELF header") is None
    assert "apt install libpulse0" in sound_unavailable_text(LIBPULSE_MISSING)
    assert "libasound.so.2" in sound_unavailable_text(LIBPULSE_MISSING.replace("libpulse.so.0", "libasound.so.2"))


def test_without_qtmultimedia_the_picture_plays_and_the_window_says_why(window, qtbot, small_clip, monkeypatch):
    monkeypatch.delenv("VDIFF_NO_AUDIO", raising=False)
    monkeypatch.setattr(player, "_audio_unavailable", False)
    monkeypatch.setitem(sys.modules, "PySide6.QtMultimedia", None)  # its import fails, as it does without libpulse
    open_clip(qtbot, window, small_clip)
    assert window.state.info.has_audio
    window.actions["play"].trigger()
    qtbot.waitUntil(window.banner.isVisible, timeout=5000)
    assert window.banner.text().startswith("Playback has no sound")
    qtbot.waitUntil(lambda: window.state.frame >= 3, timeout=10000)  # the picture plays on
    window.actions["play"].trigger()
    assert window.playback._player is None
