"""The `vdiff` command as a user runs it: real subprocesses, real files, exit codes and messages."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.video import probe

VDIFF = [sys.executable, "-m", "pipeline"]


def run(*args, **kwargs):
    return subprocess.run([*VDIFF, *map(str, args)], capture_output=True, text=True, timeout=240, **kwargs)


def test_probe_prints_json(ntsc_clip):
    result = run("probe", ntsc_clip)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fps"] == "30000/1001" and data["frames"] == 30 and data["width"] == 160
    assert data["audio"] and data["rotation"] == 0


def test_render_range_by_time_with_audio(sample_clip, tmp_path):
    out = tmp_path / "out.mp4"
    result = run("render", sample_clip, "-o", out, "--style", "2", "--max-side", "96", "--start", "0.5s", "--end", "1.5s")
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout
    info = probe(out)
    assert info.frame_count == 24 and info.has_audio


def test_a_one_frame_range_is_written_verified_and_counted_in_the_singular(sample_clip, tmp_path):
    out = tmp_path / "one.mp4"
    result = run("render", sample_clip, "-o", out, "--start", "5", "--end", "6", "--max-side", "64")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (1 frame, 1 rendered" in result.stdout and "verified" in result.stdout
    assert "rendering 1 frame on" in result.stderr
    assert probe(out).frame_count == 1

def test_render_no_audio_png_and_prores(sample_clip, tmp_path):
    out = tmp_path / "silent.mov"
    assert run("render", sample_clip, "-o", out, "--codec", "prores", "--no-audio", "--end", "5",
               "--max-side", "64").returncode == 0
    assert not probe(out).has_audio
    frames = tmp_path / "frames"
    assert run("render", sample_clip, "-o", frames, "--codec", "png", "--end", "3", "--engine", "classical",
               "--look", "cartoon", "--max-side", "64").returncode == 0
    assert len(list(frames.glob("frame_*.png"))) == 3


def test_preview_writes_one_png(sample_clip, tmp_path):
    out = tmp_path / "frame.png"
    result = run("preview", sample_clip, "--frame", "10", "-o", out, "--style", "4", "--max-side", "64")
    assert result.returncode == 0, result.stderr
    import cv2

    assert cv2.imread(str(out)).shape == (36, 64, 3)


@pytest.mark.parametrize("make,args,message", [
    (lambda p: p.write_bytes(os.urandom(5000)), [], "not a video"),
    (lambda p: p.write_bytes(b""), [], "empty"),
    (lambda p: None, [], "not found"),
    ("clip", ["--start", "10", "--end", "5"], "end frame"),
    ("clip", ["--end", "999"], "end frame"),
    ("clip", ["--style", "40"], "style index"),
    ("clip", ["--style-image", "/nonexistent.png"], "style image not found"),
    ("clip", ["--engine", "diffusion"], "needs a model"),
    ("clip", ["--engine", "diffusion", "--model", "/tmp"], "not a"),
])
def test_bad_input_exits_2_with_one_line_and_no_output(sample_clip, tmp_path, make, args, message):
    if make == "clip":
        source = sample_clip
    else:
        source = tmp_path / "input.mp4"
        make(source)
    out = tmp_path / "out.mp4"
    result = run("render", source, "-o", out, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_unwritable_output_folder_exits_2(sample_clip, tmp_path):
    result = run("render", sample_clip, "-o", tmp_path / "missing" / "out.mp4")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_cache_command_shows_and_clears(sample_clip, tmp_path):
    env = dict(os.environ)
    assert run("render", sample_clip, "-o", tmp_path / "o.mp4", "--end", "4", "--max-side", "64", env=env).returncode == 0
    shown = run("cache", env=env)
    # frames 0-3 and keyframe 4, which closes the range's last segment (fast-style: keyframes every 4)
    assert "1 render(s)" in shown.stdout and "5 frames" in shown.stdout
    assert os.environ["XDG_CACHE_HOME"] in shown.stdout  # honours XDG_CACHE_HOME
    assert "cleared" in run("cache", "--clear", env=env).stdout
    assert "0 render(s)" in run("cache", env=env).stdout


def test_cache_limit_evicts_least_recently_used(sample_clip, tmp_path):
    for style in ("1", "2"):
        assert run("render", sample_clip, "-o", tmp_path / "o.mp4", "--end", "6", "--style", style).returncode == 0
    shown = run("cache", "--limit", "0.000001")  # 1 kB: smaller than any render
    assert "0 render(s)" in shown.stdout and "0.0 GB" in shown.stdout


def test_interrupt_exits_130_keeps_the_cache_and_resumes(sample_clip, tmp_path):
    out = tmp_path / "out.mp4"
    args = [*VDIFF, "render", str(sample_clip), "-o", str(out), "--engine", "classical", "--look", "denoise",
            "--denoise-window", "15"]  # ~0.1 s a frame: time to interrupt
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    deadline = time.time() + 60
    cache_root = tmp_path / "xdg-cache" / "vdiff" / "frames"
    while time.time() < deadline and not list(cache_root.glob("*/*.vdf")):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    kept = len(list(cache_root.glob("*/*.vdf")))
    assert kept >= 1
    resumed = run("render", sample_clip, "-o", out, "--engine", "classical", "--look", "denoise",
                  "--denoise-window", "15", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{kept} of 48 frames recovered" in resumed.stderr or "frames recovered" in resumed.stderr
    assert probe(out).frame_count == 48


def test_info_lists_engines():
    data = json.loads(run("info").stdout)
    assert data["engines"]["fast-style"] and data["engines"]["classical"]
    assert any(d["name"] == "cpu" for d in data["devices"])


def test_help_names_every_command():
    text = run("--help").stdout
    for command in ("render", "preview", "probe", "info", "cache", "gui"):
        assert command in text


def test_importing_pipeline_loads_no_qt():
    code = ("import sys, pipeline.cli, pipeline.render, pipeline.video, pipeline.engines.fast_style, "
            "pipeline.engines.classical; print([m for m in sys.modules if m.startswith(('PySide6','qasync','shiboken'))])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
