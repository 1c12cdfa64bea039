"""Content editing: masks that follow the motion, the composite with the source, values over time.

The clips have a known truth: a photograph cut-out moving over a panned photograph, with its exact
mask (pipeline.footage.moving_object_frames), stored losslessly so the source pixels are exact.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.editing.masks import MaskTrack, composite, feather
from pipeline.editing.region import RegionEdit
from pipeline.editing.schedule import blend_at, parse_keys, split_key, value_at
from pipeline.errors import BadInputError
from pipeline.footage import moving_object_frames, write_frames
from pipeline.request import StyleParams
from pipeline.video import VideoReader, probe

VDIFF = [sys.executable, "-m", "pipeline"]
FRAMES = 56


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """(clip path, frames, true masks, folder) of the moving-object clip."""
    folder = tmp_path_factory.mktemp("editing")
    pairs = list(moving_object_frames(FRAMES, 320, 180))
    clip = write_frames(folder / "moving.mp4", (f for f, _ in pairs))
    for i in (0, 40):
        cv2.imwrite(str(folder / f"mask{i}.png"), (pairs[i][1] * 255).astype(np.uint8))
    return clip, [f for f, _ in pairs], [m for _, m in pairs], folder


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max(1, (a | b).sum()))


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64))[where]
    mse = float((diff**2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def read_png_sequence(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p))[:, :, ::-1] for p in sorted(folder.glob("frame_*.png"))]


def run(*args):
    return subprocess.run([*VDIFF, *map(str, args)], capture_output=True, text=True, timeout=240)


def test_a_mask_painted_on_one_frame_follows_the_object_for_50_frames(moving):
    clip, frames, truth, folder = moving
    params = StyleParams(mask_anchors=((0, str(folder / "mask0.png")),))
    edit = RegionEdit(params, probe(clip), 0, FRAMES)
    scores = [iou(edit.mask_at(i, (320, 180)), truth[i]) for i in (10, 30, 50)]
    assert min(scores) >= 0.8, scores
    # a mask that stayed where it was painted would have lost the object long before frame 50
    assert iou(truth[0], truth[50]) < 0.1


def test_painting_again_on_a_later_frame_re_anchors_the_track(moving):
    clip, frames, truth, folder = moving
    track = MaskTrack({0: truth[0], 40: truth[40]}, 0, FRAMES, lambda lo, hi: ((i, frames[i]) for i in range(lo, hi)))
    assert iou(track.at(40), truth[40]) > 0.99  # the anchor itself
    assert iou(track.at(52), truth[52]) >= 0.85  # after the last anchor: carried forward from it
    assert iou(track.at(20), truth[20]) >= 0.8  # between anchors: both carried masks, blended


def test_outside_the_mask_the_output_is_the_source(moving, tmp_path):
    clip, frames, truth, folder = moving
    out = tmp_path / "edited"
    done = run("render", clip, "-o", out, "--codec", "png", "--end", 24, "--style", 3, "--no-cache",
               "--mask-at", f"0:{folder / 'mask0.png'}", "--mask-feather", 2)
    assert done.returncode == 0, done.stderr
    rendered = read_png_sequence(out)
    assert len(rendered) == 24
    for i in (0, 12, 23):
        outside = cv2.dilate(truth[i], np.ones((15, 15), np.uint8)) < 0.5
        inside = cv2.erode(truth[i], np.ones((9, 9), np.uint8)) > 0.5
        assert psnr(rendered[i], frames[i], outside) >= 35
        assert psnr(rendered[i], frames[i], inside) < 25  # inside, the engine restyled it


def test_a_mask_video_gives_each_frame_its_own_mask(moving, tmp_path):
    clip, frames, truth, folder = moving
    masks = write_frames(tmp_path / "masks.mp4", ((np.repeat(m[:, :, None], 3, 2) * 255).astype(np.uint8) for m in truth))
    out = tmp_path / "edited"
    done = run("render", clip, "-o", out, "--codec", "png", "--start", 30, "--end", 34, "--look", "cartoon",
               "--engine", "classical", "--no-cache", "--mask", masks, "--mask-feather", 0)
    assert done.returncode == 0, done.stderr
    rendered = read_png_sequence(out)
    for offset, image in enumerate(rendered):
        i = 30 + offset  # the mask video's frame i goes with source frame i
        outside = cv2.dilate(truth[i], np.ones((5, 5), np.uint8)) < 0.5
        assert psnr(image, frames[i], outside) >= 35


def test_the_mask_is_part_of_the_cache_key(moving, tmp_path):
    clip, frames, truth, folder = moving
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), (truth[0] * 255).astype(np.uint8))
    first = StyleParams(mask=str(still)).relevant()
    cv2.imwrite(str(still), (truth[20] * 255).astype(np.uint8))  # the same file, repainted
    assert StyleParams(mask=str(still)).relevant() != first
    assert "mask" not in StyleParams().relevant()  # no mask: keys of plain renders do not change


def test_composite_and_feather():
    source = np.zeros((20, 20, 3), np.uint8)
    edited = np.full((20, 20, 3), 200, np.uint8)
    mask = np.zeros((20, 20), np.float32)
    mask[5:15, 5:15] = 1
    out = composite(source, edited, mask)
    assert out[10, 10, 0] == 200 and out[0, 0, 0] == 0
    soft = feather(mask, 4)
    assert 0.2 < soft[10, 5] < 0.8  # the edge is now a ramp
    assert soft[10, 10] > 0.9 and soft[0, 0] < 0.05


def test_schedules_parse_positions_and_interpolate():
    frame = lambda text: {"4.5s": 108, "1:00": 1440}.get(text, int(text) if text.isdigit() else -1)
    keys = parse_keys(["0:a forest in winter", "4.5s:a forest in summer", "1:00:at night"], frame)
    assert keys == ((0, "a forest in winter"), (108, "a forest in summer"), (1440, "at night"))
    assert blend_at(keys, 54) == ("a forest in winter", "a forest in summer", 0.5)
    assert blend_at(keys, 2000) == ("at night", "at night", 0.0)
    strengths = parse_keys(["0:0.2", "10:0.6"], frame, float)
    assert value_at(strengths, 5) == pytest.approx(0.4)
    assert value_at(strengths, 50) == pytest.approx(0.6)
    seeds = parse_keys(["0:1", "10:7"], frame, int)
    assert value_at(seeds, 9) == 1 and value_at(seeds, 10) == 7
    assert split_key("style: oil painting") == (None, "style: oil painting")  # a colon in a plain prompt
    with pytest.raises(BadInputError):
        parse_keys(["0:a", "b"], frame)  # a value without a position among keyed ones
    with pytest.raises(BadInputError):
        parse_keys(["0:x", "5:y"], frame, float)


def test_bad_mask_options_get_one_clear_line(moving, tmp_path):
    clip, *_ = moving
    done = run("render", clip, "-o", tmp_path / "o.mp4", "--mask-at", "mask.png")
    assert done.returncode == 2
    assert "FRAME:PNG" in done.stderr and "Traceback" not in done.stderr
    done = run("render", clip, "-o", tmp_path / "o.mp4", "--mask", tmp_path / "missing.png")
    assert done.returncode == 2 and "mask not found" in done.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_schedules_survive_a_project_round_trip():
    params = StyleParams(engine="diffusion", model="m", prompt_keys=((0, "winter"), (24, "summer")),
                         strength_keys=((0, 0.3), (24, 0.6)), mask_anchors=((3, "/x.png"),))
    again = StyleParams.from_dict(params.to_dict())
    assert again == params and hash(again) == hash(params)
