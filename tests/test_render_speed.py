"""The render's speed paths keep their promises: reduced-size flow, the flow shared with the flicker meter,
per-stage profiles, the fused network kept on disk. Real clips, the real engine and encoder; no Qt."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.engines import create_engine
from pipeline.engines import fast_style
from pipeline.events import Finished, FrameReady
from pipeline.footage import make_footage_clip
from pipeline.render import render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.temporal import FlickerMeter
from pipeline.temporal import flow as flow_module
from pipeline.temporal.flow import compute_flow, flow_size, upsample_flow, warp
from pipeline.temporal.stabilizer import flow_source
from pipeline.video import VideoReader

CONSISTENT = StyleParams(style="5", keyframe_interval=1)  # the defaults, per frame: flow propagation on


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """10 frames of 400x224 hand-held footage: larger than the flow's size, so the flow is reduced."""
    return make_footage_clip(tmp_path_factory.mktemp("footage") / "shot.mp4", frames=10, width=400, height=224,
                             audio=False)


@pytest.fixture
def small_flow(monkeypatch):
    """Renders compute the flow with its longer side at 160 px (the frames are 400 px wide)."""
    monkeypatch.setattr(flow_module, "FLOW_MAX_SIDE", 160)


def _render(clip, params, end=10):
    events = list(render_frames(RenderRequest(clip, params, 0, end, use_cache=False)))
    assert isinstance(events[-1], Finished), events[-1]
    return [e for e in events if isinstance(e, FrameReady)]


def test_flow_size_keeps_the_aspect_and_never_enlarges():
    assert flow_size(1920, 1080, 320) == (320, 180)
    assert flow_size(200, 100, 320) == (200, 100)
    assert flow_size(1920, 1080, 0) == (1920, 1080)
    assert flow_size(1080, 1920, 320) == (180, 320)


def test_a_flow_computed_small_and_upsampled_finds_the_full_size_motion():
    rng = np.random.default_rng(3)
    coarse = rng.random((45, 80, 3)).astype(np.float32)
    image = (cv2.resize(coarse, (640, 360), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
    shift = np.float32([[1, 0, 8], [0, 1, -4]])  # content moves 8 right, 4 up at full size
    moved = cv2.warpAffine(image, shift, (640, 360), borderMode=cv2.BORDER_REFLECT)
    small = compute_flow(flow_source(image, (640, 360)), flow_source(moved, (640, 360)))
    assert small.shape[:2] != (360, 640)  # computed at the reduced size
    full = upsample_flow(small, (640, 360))
    inside = (slice(24, -24), slice(24, -24))
    assert full.shape == (360, 640, 2)
    assert np.abs(np.median(full[inside], axis=(0, 1)) - [8, -4]).max() < 0.3
    assert np.abs(warp(moved, full)[inside].astype(int) - image[inside]).mean() < 6


def test_consistent_frames_carry_the_render_s_motion_at_the_reduced_size(footage, small_flow):
    frames = _render(footage, CONSISTENT)
    assert frames[0].motion is None  # the range's first frame has no previous one
    for event in frames[1:]:
        assert event.motion is not None
        assert event.motion.size == flow_size(400, 224, 160) == (160, 90)
        assert event.motion.to_previous.shape == event.motion.from_previous.shape == (90, 160, 2)
    assert all(e.motion is None for e in _render(footage, CONSISTENT.replace(temporal_flow=False), end=4))


def test_the_meter_reuses_the_render_s_flow_and_still_tells_flicker_apart(footage, small_flow):
    consistent = _render(footage, CONSISTENT)
    per_frame = _render(footage, CONSISTENT.replace(temporal_flow=False))
    with VideoReader(footage) as reader:
        sources = [frame for _, frame in reader.iter_frames(0, 10)]
    steady, flickering, full_size = FlickerMeter(), FlickerMeter(), FlickerMeter()
    for source, a, b in zip(sources, consistent, per_frame):
        steady.add(a.index, source, a.image, a.motion)
        flickering.add(b.index, source, b.image, a.motion)  # the same source flow, on the per-frame render
        full_size.add(a.index, source, a.image)
    assert steady.pairs == flickering.pairs == full_size.pairs == 9
    assert steady.score < 0.7 * flickering.score
    assert steady.floor == flickering.floor  # the input's warp error depends on the sources and flow only
    assert 0.3 * full_size.score < steady.score < 1.5 * full_size.score


def test_reduced_flow_keeps_the_flicker_reduction(footage, small_flow, monkeypatch):
    with VideoReader(footage) as reader:
        sources = [frame for _, frame in reader.iter_frames(0, 10)]

    def warp_error(frames):
        meter = FlickerMeter()  # the full-size measure of `vdiff metrics`
        for source, event in zip(sources, frames):
            meter.add(event.index, source, event.image)
        return meter.score

    reduced = warp_error(_render(footage, CONSISTENT))
    monkeypatch.setattr(flow_module, "FLOW_MAX_SIDE", 0)
    full = warp_error(_render(footage, CONSISTENT))
    naive = warp_error(_render(footage, CONSISTENT.replace(temporal_flow=False)))
    assert reduced < 0.6 * naive
    assert reduced < 1.15 * full


def test_render_profile_times_every_stage(sample_clip, tmp_path, capsys):
    report = tmp_path / "profile.json"
    code = main(["render", str(sample_clip), "-o", str(tmp_path / "out.mp4"), "--style", "5", "--max-side", "96",
                 "--end", "12", "--keyframe-interval", "1", "--quiet", "--profile", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    stages = data["stages"]
    assert list(stages) == ["decode", "engine", "flow", "consistency", "cache", "encode"]
    assert data["frames"] == 12
    assert stages["engine"]["calls"] == 12 and stages["consistency"]["calls"] == 12
    assert stages["flow"]["calls"] == 11  # every frame but the first has a previous one
    assert stages["encode"]["calls"] == 13 and stages["cache"]["calls"] == 12  # 12 frames, then the flush
    assert stages["decode"]["calls"] >= 12
    assert all(s["wall_s"] >= 0 and s["cpu_s"] >= 0 for s in stages.values())
    assert data["peak_rss_mb"] > 0 and data["process_cpu_s"] > 0
    printed = capsys.readouterr().err
    assert "consistency" in printed and "peak memory" in printed


def test_a_keyframe_render_profiles_its_inbetweens(sample_clip, tmp_path):
    report = tmp_path / "profile.json"
    code = main(["render", str(sample_clip), "-o", str(tmp_path / "out.mp4"), "--style", "5", "--max-side", "96",
                 "--end", "12", "--keyframe-interval", "4", "--quiet", "--profile", str(report)])
    assert code == 0
    stages = json.loads(report.read_text())["stages"]
    assert stages["in-between"]["calls"] == 9  # keyframes 0, 4, 8 and 12 (which closes the range): 9 between
    assert stages["engine"]["calls"] == 4


def test_the_fused_network_is_kept_on_disk_and_a_damaged_copy_is_rebuilt(tmp_path):
    pytest.importorskip("onnx")
    fast_style.network_bytes.cache_clear()
    try:
        first = fast_style.network_bytes("multistyle26")
        stored = list((tmp_path / "xdg-cache" / "vdiff" / "networks").glob("multistyle26-*.onnx"))
        assert len(stored) == 1
        fast_style.network_bytes.cache_clear()
        assert fast_style.network_bytes("multistyle26") == first  # read back from the file
        data = bytearray(stored[0].read_bytes())
        data[-10] ^= 0xFF
        stored[0].write_bytes(bytes(data))
        fast_style.network_bytes.cache_clear()
        assert fast_style.network_bytes("multistyle26") == first  # the damaged copy is refused and rewritten
        assert stored[0].read_bytes()[32:] == first
    finally:
        fast_style.network_bytes.cache_clear()


def test_prepare_makes_no_session_until_a_frame_needs_one(sample_clip):
    engine = create_engine(StyleParams(style="5", max_side=64))
    engine.prepare()
    assert engine._pool.empty()
    with VideoReader(sample_clip) as reader:
        frame = reader.frame(3)
    from pipeline.engines import FrameContext

    alone = engine.process(frame, FrameContext(3))
    assert not engine._pool.empty()  # the all-core session, kept for the next preview
    with engine.parallel(2):
        assert np.array_equal(engine.process(frame, FrameContext(3)), alone)
