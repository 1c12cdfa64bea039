"""The real-looking clips benchmarks and quality tests measure on: texture, camera motion, cuts, noise."""

import numpy as np
import pytest

from pipeline.footage import add_noise, footage_frames, make_footage_clip
from pipeline.temporal.flow import compute_flow
from pipeline.video import probe


def test_footage_has_texture_camera_motion_parallax_and_cuts():
    frames = list(footage_frames(24, 320, 180, "astronaut", cuts=(16,)))
    assert all(f.shape == (180, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert min(float(f.std()) for f in frames) > 30  # photographs, not flat gradients
    flow = compute_flow(frames[8], frames[9])
    speeds = np.hypot(flow[..., 0], flow[..., 1])
    assert 0.3 < float(np.median(speeds)) < 6  # the camera moves, a little each frame
    assert float(np.percentile(speeds, 99)) > 2 * float(np.median(speeds))  # the near layer moves faster
    same_shot = np.abs(frames[14].astype(int) - frames[15]).mean()
    across_cut = np.abs(frames[15].astype(int) - frames[16]).mean()
    assert across_cut > 3 * same_shot


@pytest.mark.parametrize("kind", ["gaussian", "shot", "grain"])
def test_noise_models_have_the_asked_strength(kind):
    rng = np.random.default_rng(0)
    flat = np.full((200, 200, 3), 128, np.uint8)
    noisy = add_noise(flat, kind, 20.0, rng).astype(float) - 128
    assert 14 < noisy.std() < 26
    dark, bright = np.full_like(flat, 30), np.full_like(flat, 220)
    ratio = add_noise(bright, kind, 20.0, rng).std() / add_noise(dark, kind, 20.0, rng).std()
    if kind == "shot":
        assert ratio > 1.5  # signal-dependent: brighter pixels are noisier
    elif kind == "gaussian":
        assert 0.9 < ratio < 1.1


def test_a_footage_clip_is_a_real_video_file(tmp_path):
    clip = make_footage_clip(tmp_path / "f.mp4", frames=12, width=160, height=96, gop=4)
    info = probe(clip)
    assert info.frame_count == 12 and (info.width, info.height) == (160, 96) and info.has_audio
