"""The command line's usage errors, `vdiff CLIP.mp4` and the `vdiff metrics` summary."""

import json
import subprocess
import sys

import pytest

from pipeline.sample import make_sample_clip
from vdiff_gui.launch import opens_in_app

VDIFF = [sys.executable, "-m", "vdiff_gui.launch"]  # the `vdiff` entry point


def run(*args):
    return subprocess.run([*VDIFF, *map(str, args)], capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("args, help_command", [
    (("render", "clip.mp4"), "vdiff render --help"),  # -o missing: the subcommand's own parser
    (("render", "clip.mp4", "-o", "x.mp4", "--bogus"), "vdiff render --help"),  # found by the top-level parser
    (("metrics", "a.mp4", "b.mp4", "--start", "1", "--nope"), "vdiff metrics --help"),
    (("rendr", "clip.mp4"), "vdiff --help"),
])
def test_a_usage_error_names_the_subcommands_help(args, help_command):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vdiff: error:") and f"(see `{help_command}`)" in lines[0]
    assert "vdiff vdiff" not in result.stderr


def test_a_clip_as_the_only_argument_opens_the_app(tmp_path):
    clip = tmp_path / "holiday.mov"
    clip.write_bytes(b"")  # a file: "Open with" hands over existing files
    assert opens_in_app([str(clip)]) and opens_in_app([]) and opens_in_app(["gui", str(clip)])
    assert opens_in_app([str(tmp_path / "project.vdiff")])
    assert not opens_in_app(["render", str(clip), "-o", "x.mp4"]) and not opens_in_app(["probe"])
    assert not opens_in_app(["--version"])
    missing = run(tmp_path / "missing.mp4")
    assert missing.returncode == 2 and missing.stderr.strip() == f"vdiff: error: no such file: {tmp_path / 'missing.mp4'}"


def test_metrics_prints_a_summary_and_the_arrays_only_with_per_frame(tmp_path):
    clip = make_sample_clip(tmp_path / "clip.mp4", frames=6, width=64, height=48, audio=False)
    summary = run("metrics", clip, clip)
    assert summary.returncode == 0, summary.stderr
    data = json.loads(summary.stdout)
    assert data["frames"] == 6 and set(data["warp_error"]) == {"pairs", "output", "input"}
    assert data["warp_error"]["output"] == data["warp_error"]["input"]  # the clip against itself
    full = run("metrics", clip, clip, "--per-frame")
    arrays = json.loads(full.stdout)["warp_error"]
    assert len(arrays["output_per_pair"]) == len(arrays["input_per_pair"]) == 5
    assert arrays["output"] == data["warp_error"]["output"]
