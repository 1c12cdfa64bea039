"""The first Play with sound finds QtMultimedia loaded: the player preloads it off the GUI thread.

Loading it on the GUI thread at the first Play (the import, then the FFmpeg media plugin) held that
thread 45-110 ms. Each check runs in its own process (first_play_with_sound.py), because only a
process's first Play loads anything.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from heartbeat import assert_never_blocked

from pipeline.footage import make_footage_clip
from vdiff_gui import multimedia_preload

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's maps (Linux)")]

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@pytest.fixture(scope="module", autouse=True)
def qtmultimedia_loads_here():
    """Skip where the system cannot load QtMultimedia at all (no libpulse): the app plays without sound there."""
    done = subprocess.run([sys.executable, "-c", "import PySide6.QtMultimedia"], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        pytest.skip("PySide6.QtMultimedia cannot be imported here: " + done.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def first_play(tmp_path_factory, small_clip):
    silent = make_footage_clip(tmp_path_factory.mktemp("silent") / "silent.mp4", frames=12, width=160, height=96,
                               audio=False)
    done = subprocess.run([sys.executable, str(HERE / "first_play_with_sound.py"), str(silent), str(small_clip)],
                          capture_output=True, text=True, timeout=120, cwd=HERE,
                          env={**_environment(), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _environment() -> dict:
    return {key: value for key, value in os.environ.items() if key != "VDIFF_NO_AUDIO"}


def test_a_clip_with_sound_loads_qtmultimedia_on_another_thread_before_the_first_play(first_play):
    assert not first_play["loaded_at_start"]
    assert not first_play["preload_after_silent_clip"]  # a silent clip needs no sound
    assert not first_play["preload_at_opening"]  # it waits for the opening's own work
    assert first_play["preload_thread"] == "vdiff-multimedia-preload"
    assert first_play["preload_outcome"] == [True, ""]
    assert first_play["module_before_play"]
    assert len(first_play["libraries"]) >= 2  # the module and at least one media plugin
    assert first_play["mapped_before_play"] == first_play["libraries"]  # the media plugin too, not only the module
    assert first_play["threads_before_play"] == ["MainThread"]  # the preload thread has ended


def test_the_preload_sets_a_python_handler_of_qt_messages_aside_while_libraries_map(first_play):
    # a constructor logging through it under the linker's lock deadlocked a thread importing a module
    assert first_play["messages_on_preload_thread"] == []
    assert first_play["handler_back"]


def test_the_first_play_with_sound_never_blocks_the_gui_thread(first_play):
    assert first_play["player_made"]
    gaps, press = first_play["gaps"], first_play["beats_before_press"]
    worst = max(range(1, len(gaps)), key=lambda i: gaps[i][0] - gaps[i][1])
    where = (f"the longest gap is beat {worst - press:+d} from the press, which took {first_play['press_ms']:.0f} ms, "
             f"{first_play['press_cpu_ms']:.0f} ms of it on a core, blocked {first_play['press_blocked']} times")
    try:
        assert_never_blocked(gaps)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {where}") from None


def _outcome_for(plugin_folder, monkeypatch) -> tuple[bool, str]:
    """What the preload says of the plugins in `plugin_folder` (its load run on a thread of this process)."""
    monkeypatch.setattr(multimedia_preload, "_outcome", {})
    thread = threading.Thread(target=multimedia_preload._load, args=([str(plugin_folder)],))
    monkeypatch.setattr(multimedia_preload, "_thread", thread)
    thread.start()
    return multimedia_preload.preload_outcome(60)


def test_a_media_plugin_that_cannot_load_is_named_with_the_linkers_reason(tmp_path, monkeypatch):
    (tmp_path / "multimedia").mkdir()
    (tmp_path / "multimedia" / "libbrokenmediaplugin.so").write_bytes(b"not a shared library" * 512)
    loaded, why = _outcome_for(tmp_path, monkeypatch)
    assert not loaded
    assert "libbrokenmediaplugin.so did not load" in why and "ELF" in why, why  # the self-test prints this


def test_no_media_plugin_in_qts_folders_is_said_so(tmp_path, monkeypatch):
    loaded, why = _outcome_for(tmp_path, monkeypatch)
    assert not loaded and why == f"no Qt media plugin was found in {tmp_path}"
