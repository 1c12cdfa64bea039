"""The live flicker meter: sampled pairs, reduced size, its own thread, skips when busy, holds at most four frames."""

import threading

import numpy as np
import pytest

from pipeline.engines.base import resize_to
from pipeline.footage import make_footage_clip
from pipeline.temporal import FlickerMeter
from pipeline.temporal.flicker_sampler import FlickerSampler
from pipeline.video import VideoReader


@pytest.fixture(scope="module")
def clip_and_frames(tmp_path_factory):
    path = make_footage_clip(tmp_path_factory.mktemp("flicker") / "clip.mp4", frames=20, width=192, height=108, audio=False)
    with VideoReader(path) as reader:
        sources = [frame for _, frame in reader.iter_frames()]
    # a flickering "render": every other frame brighter
    outputs = [np.clip(f.astype(int) + (12 if i % 2 else 0), 0, 255).astype(np.uint8) for i, f in enumerate(sources)]
    return path, sources, outputs


def expected_score(sources, outputs, firsts, size):
    errors = []
    for first in firsts:
        meter = FlickerMeter()
        for i in (first, first + 1):
            meter.add(i, resize_to(sources[i], size), resize_to(outputs[i], size))
        errors += meter.output_errors
    return float(np.mean(errors))


@pytest.mark.parametrize("give_source", [True, False])
def test_sampled_pairs_at_reduced_size_give_flicker_meters_number(clip_and_frames, give_source):
    path, sources, outputs = clip_and_frames
    scores = []
    sampler = FlickerSampler(path, lambda score, floor, pairs: scores.append((score, pairs)), max_side=64, stride=5)
    for i in range(20):
        sampler.offer(i, outputs[i], sources[i] if give_source else None)
        sampler.wait_idle()  # never busy: every stride-th pair is measured
    sampler.close(wait=True)
    assert sampler.measured == [0, 5, 10, 15] and sampler.skipped == 0
    assert scores[-1][1] == 4
    assert scores[-1][0] == pytest.approx(expected_score(sources, outputs, [0, 5, 10, 15], (64, 36)), rel=1e-9)
    assert sampler.score > sampler.floor  # the flicker added to the render shows


def test_a_busy_meter_skips_pairs_and_holds_at_most_four_frames(clip_and_frames):
    path, sources, outputs = clip_and_frames
    gate = threading.Event()
    sampler = FlickerSampler(path, lambda *_: gate.wait(20), max_side=64, stride=2)
    held = []
    for i in range(20):
        sampler.offer(i, outputs[i], sources[i])  # the render's side: never waits for the meter
        held.append(sampler.held_frames())
    still_measuring = sampler.held_frames() >= 2  # all 20 offers returned while the first pair was held
    gate.set()
    sampler.close(wait=True)
    assert still_measuring and max(held) <= 4
    assert sampler.skipped >= 5 and len(sampler.measured) <= 3
