"""What the packaged app relies on, checked from source: `vdiff --self-test`, starting with no stdout or
stderr (a windowed build), and the desktop integration files. scripts/build_app.sh runs the same
self-test on the built bundle."""

import configparser
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"vdiff \S+ self-test: ok — fast-style 6 frames \(cpu\), diffusion 3 frames \(cpu\), "
    r"export 24 frames verified with audio, scrubbing proxy made, "
    r"playback sound (loaded|off \(this machine has no lib\S+\)) \(\d+\.\d s\)"  # off: no libpulse on a server
)


def _env(tmp_path, **extra) -> dict:
    """No display, caches and settings in tmp_path: the user's folders must stay untouched."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    (tmp_path / "tmp").mkdir()
    env.update(XDG_CACHE_HOME=str(tmp_path / "user-cache"), VDIFF_CONFIG_DIR=str(tmp_path / "user-config"),
               XDG_STATE_HOME=str(tmp_path / "user-state"), TMPDIR=str(tmp_path / "tmp"), **extra)
    return env


@pytest.mark.gui
@pytest.mark.diffusion
def test_self_test_renders_with_both_engines_and_exports_with_audio(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vdiff_gui.launch", "--self-test"], cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.splitlines()) == 1 and SUMMARY.fullmatch(done.stdout.strip()), done.stdout
    # everything it wrote went to its temporary folder, removed after the pass
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "user-cache").exists() and not (tmp_path / "user-config").exists()


def test_a_stuck_self_test_fails_with_one_line_and_keeps_its_log(tmp_path):
    env = _env(tmp_path, VDIFF_SELF_TEST_TIMEOUT="0.5")
    done = subprocess.run([sys.executable, "-m", "vdiff_gui.launch", "--self-test"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    line = done.stdout.strip()
    assert len(done.stdout.splitlines()) == 1 and "self-test: FAILED at " in line and "no result within" in line, line
    log = Path(re.search(r"\(log: (.+)\)$", line).group(1))
    assert log.parent.parent == tmp_path / "tmp"


def test_without_stdout_and_stderr_progress_bars_and_logs_go_to_a_log_file(tmp_path):
    """A windowed build starts with sys.stdout and sys.stderr None: nothing may crash on that."""
    script = (
        "from vdiff_gui.launch import guard_streams\n"
        "import sys\n"
        "assert sys.stdout is None and sys.stderr is None\n"
        "log = guard_streams()\n"
        "import logging, tqdm\n"
        "for _ in tqdm.tqdm(range(3), desc='bar'): pass\n"
        "import transformers\n"
        "transformers.utils.logging.get_logger('transformers').warning('from transformers')\n"
        "logging.basicConfig()\n"
        "logging.getLogger('vdiff').warning('from logging')\n"
        "print('printed', log)\n"
    )
    env = _env(tmp_path)
    # `>&-` closes the descriptors, so Python starts with sys.stdout and sys.stderr None, as a windowed app
    done = subprocess.run(["sh", "-c", 'exec "$0" -c "$1" >&- 2>&-', sys.executable, script], cwd=ROOT, env=env,
                          timeout=120)
    assert done.returncode == 0
    log = tmp_path / "user-state" / "vdiff" / "log" / "vdiff.log"
    text = log.read_text()
    assert f"printed {log}" in text and "bar: 100%" in text
    assert "from transformers" in text and "from logging" in text


def test_desktop_file_and_icon_fit_together():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "resources" / "vdiff.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Terminal"] == "false"
    assert desktop["Exec"].split()[0] == "vdiff" and desktop["Icon"] == "vdiff" and desktop["StartupWMClass"] == "vdiff"
    assert all(value.endswith(";") for key, value in desktop.items() if key in ("Categories", "MimeType", "Keywords"))
    png = (ROOT / "resources" / "vdiff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (256, 256)
    assert (ROOT / "resources" / "vdiff.svg").read_text().lstrip().startswith(("<svg", "<?xml"))


def test_the_bundle_leaves_ray_out():
    """build.spec excludes the cluster extra; the app then shows the cluster choice disabled (test_cluster_gui)."""
    spec = (ROOT / "build.spec").read_text()
    excludes = spec[spec.index("excludes = ["):]
    excludes = excludes[: excludes.index("]")]
    assert '"ray"' in excludes and '"lz4"' in excludes
