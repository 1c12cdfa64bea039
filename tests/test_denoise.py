"""The classical engine's denoiser (pipeline.denoise) on real clips: how much noise it removes, that
moving edges stay sharp, that the noise estimate is right, and that a bad strength is a clear error."""

import subprocess
import sys

import av
import numpy as np
import pytest

from pipeline.denoise import NoiseModel, clip_noise, estimate_noise
from pipeline.errors import BadInputError
from pipeline.events import Failed, Finished, FrameReady
from pipeline.footage import add_noise, footage_frames, make_footage_clip
from pipeline.render import render_frames
from pipeline.request import RenderRequest, StyleParams

VDIFF = [sys.executable, "-m", "pipeline"]


def denoised(path, **params) -> list[np.ndarray]:
    request = RenderRequest(path, StyleParams(engine="classical", look="denoise", **params), use_cache=False)
    events = list(render_frames(request))
    assert isinstance(events[-1], Finished), events[-1]
    return [e.image for e in events if isinstance(e, FrameReady)]


def rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_static_clip_noise_falls_by_at_least_the_square_root_of_the_window(tmp_path):
    # a still shot: every frame is the same photograph with its own Gaussian noise (sigma 20)
    path = make_footage_clip(tmp_path / "still.mkv", frames=7, width=96, height=72, noise="gaussian", sigma=20,
                             codec="ffv1", audio=False, speed=0.0)
    clean = next(footage_frames(1, 96, 72, speed=0.0))
    alone = denoised(path, denoise_window=1)
    window = denoised(path, denoise_window=5)
    middle = slice(2, 5)  # frames with two neighbours on each side
    before = np.mean([rms(noisy, clean) for noisy in _decode(path)[middle]])
    assert 17.0 < before < 21.0  # the noise the clip really has (clipped at black and white)
    # five aligned frames average the noise down by sqrt(5); the spatial stage removes more on top
    after = np.mean([rms(frame, clean) for frame in window[middle]])
    assert after < before / np.sqrt(5)
    assert after < 0.8 * np.mean([rms(frame, clean) for frame in alone[middle]])


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _edge_clip(path, frames=7, width=96, height=48, speed=3, sigma=10.0):
    """A soft vertical dark/bright edge moving right by `speed` px a frame, with Gaussian noise."""
    rng = np.random.default_rng(3)
    xs = np.arange(width, dtype=np.float32)
    clean = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        for i in range(frames):
            position = 30 + speed * i
            profile = 60 + 140 / (1 + np.exp(-(xs - position) / 0.6))  # 10-90% rise: about 2.6 px
            image = np.repeat(np.repeat(profile[None, :, None], height, 0), 3, 2).round().astype(np.uint8)
            clean.append(image)
            noisy = add_noise(image, "gaussian", sigma, rng)
            for packet in stream.encode(av.VideoFrame.from_ndarray(noisy, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return clean


def _edge_width(image: np.ndarray) -> tuple[float, float]:
    """(10-90% rise width, 50% position) of the mean row's edge, in pixels."""
    row = image.astype(np.float64).mean(axis=(0, 2))
    low, high = np.median(row[:10]), np.median(row[-10:])
    level = (row - low) / (high - low)

    def crossing(fraction):
        i = int(np.argmax(level >= fraction))
        return i - 1 + (fraction - level[i - 1]) / (level[i] - level[i - 1])

    return crossing(0.9) - crossing(0.1), crossing(0.5)


def test_a_moving_edge_stays_sharp_and_in_place(tmp_path):
    clean = _edge_clip(tmp_path / "edge.mkv")
    frames = denoised(tmp_path / "edge.mkv", denoise_window=5)
    for index in (2, 3, 4):
        width, position = _edge_width(frames[index])
        true_width, true_position = _edge_width(clean[index])
        assert width < true_width + 0.75, (index, width, true_width)  # no ghost edges from the neighbours
        assert abs(position - true_position) < 0.5
        # and the noise is gone on both sides of it
        assert rms(frames[index][:, :20], clean[index][:, :20]) < 3.0


@pytest.mark.parametrize("sigma", [10, 20, 30])
def test_noise_estimate_is_within_20_percent(sigma):
    rng = np.random.default_rng(sigma)
    frames = [add_noise(f, "gaussian", sigma, rng) for f in footage_frames(4, 128, 96, scene="cat", speed=2.0)]
    estimate = estimate_noise(frames)
    assert abs(estimate.sigma - sigma) < 0.2 * sigma, estimate
    assert not estimate.signal_dependent


def test_signal_dependent_noise_is_estimated_as_a_function_of_brightness(tmp_path):
    path = make_footage_clip(tmp_path / "shot.mkv", frames=8, width=128, height=96, noise="shot", sigma=20,
                             codec="ffv1", audio=False)
    estimate = clip_noise(path)
    truth = lambda level: 20 * np.sqrt(0.2 + 1.6 * level / 255)  # noqa: E731 (pipeline.footage.add_noise)
    assert estimate.signal_dependent
    for level in (40, 128, 200):
        assert abs(estimate.sigma_at(level) - truth(level)) < 0.2 * truth(level), (level, estimate)
    # the stabilising transform makes that noise uniform, and undoes itself
    x = np.linspace(10, 245, 50, dtype=np.float32)
    assert np.allclose(estimate.unstabilize(estimate.stabilize(x)) - estimate.b / 4, x, atol=0.01)


def test_strength_overrides_the_estimate(tmp_path):
    path = make_footage_clip(tmp_path / "n.mkv", frames=3, width=64, height=48, noise="gaussian", sigma=10,
                             codec="ffv1", audio=False)
    from pipeline.engines import create_engine
    from pipeline.video import probe

    engine = create_engine(StyleParams(engine="classical", look="denoise", denoise_strength=25))
    engine.measure_source(probe(path))
    assert engine.noise.sigma == pytest.approx(25.0)
    gentle, strong = denoised(path), denoised(path, denoise_strength=50)
    # a stronger setting smooths more: less left of the high frequencies
    detail = lambda image: np.abs(np.diff(image.astype(np.float64), axis=1)).mean()  # noqa: E731
    assert detail(strong[1]) < 0.85 * detail(gentle[1])


@pytest.mark.parametrize("value", [0, -3, 101, float("nan")])
def test_a_bad_strength_is_refused(value):
    with pytest.raises(BadInputError, match="denoise strength"):
        StyleParams(engine="classical", look="denoise", denoise_strength=value).validate()


def test_a_bad_strength_on_the_command_line_is_one_clear_line(tmp_path):
    path = make_footage_clip(tmp_path / "n.mkv", frames=3, width=64, height=48, codec="ffv1", audio=False)
    out = tmp_path / "out.mp4"
    for value in ("-3", "abc"):
        done = subprocess.run([*VDIFF, "render", str(path), "-o", str(out), "--engine", "classical",
                               "--look", "denoise", "--denoise-strength", value], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert "denoise-strength" in done.stderr or "denoise strength" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert not out.exists()


def test_a_clean_clip_is_left_almost_untouched(tmp_path):
    path = make_footage_clip(tmp_path / "clean.mkv", frames=3, width=96, height=72, codec="ffv1", audio=False)
    clean = list(footage_frames(3, 96, 72))
    assert rms(denoised(path)[1], clean[1]) < 2.0
    assert NoiseModel.uniform(0.0).sigma == 0.0


def test_large_frames_are_shrunk_in_strips_with_the_same_result():
    from pipeline.denoise import spatial

    rng = np.random.default_rng(0)
    image = (rng.random((3, 150, 70)) * 255).astype(np.float32)
    variance = (rng.random((150, 70)) * 100 + 50).astype(np.float32)
    for pilot in (None, image * 0.9):
        whole = spatial.shrink(image, variance, pilot)
        strips = spatial.shrink(image, variance, pilot, strip_pixels=2000)  # strips of 28 rows
        assert np.array_equal(whole, strips)
