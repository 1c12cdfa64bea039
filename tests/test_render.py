"""The render loop over real clips with the real fast-style and classical engines."""

import numpy as np
import pytest

from pipeline.cache import FrameCache, render_key
from pipeline.engines import FrameContext, create_engine
from pipeline.events import Cancelled, CancelToken, Failed, Finished, FrameReady, Started
from pipeline.render import cache_description, render_frames
from pipeline.request import OutputSpec, RenderRequest, StyleParams
from pipeline.video import VideoReader, probe

FAST = StyleParams(engine="fast-style", style="5", max_side=96)
PER_FRAME = FAST.replace(temporal_flow=False, color_anchor=False, keyframe_interval=1)  # frame by frame


def _events(request, **kwargs):
    return list(render_frames(request, **kwargs))


def test_render_reports_events_in_order_and_fills_the_cache(sample_clip):
    events = _events(RenderRequest(sample_clip, FAST, start=4, end=16))
    assert isinstance(events[0], Started) and events[0].total == 12
    frames = [e for e in events if isinstance(e, FrameReady)]
    assert [e.index for e in frames] == list(range(4, 16))
    assert [e.done for e in frames] == list(range(1, 13))
    assert isinstance(events[-1], Finished) and events[-1].rendered == 12
    info = probe(sample_clip)
    entry = FrameCache().find(render_key(info, cache_description(create_engine(FAST), start=4)))
    assert entry.indices() == set(range(4, 16)) | {16}  # and the keyframe that closes the last segment


def test_rendered_frames_equal_the_engine_on_each_frame(sample_clip):
    events = _events(RenderRequest(sample_clip, PER_FRAME, start=0, end=3))
    engine = create_engine(PER_FRAME)
    engine.prepare()
    with VideoReader(sample_clip) as reader:
        for event in (e for e in events if isinstance(e, FrameReady)):
            expected = engine.process(reader.frame(event.index), FrameContext(event.index))
            assert np.array_equal(event.image, expected)


def test_second_render_comes_from_the_cache(sample_clip):
    request = RenderRequest(sample_clip, FAST, start=0, end=10)
    first = [e for e in _events(request) if isinstance(e, FrameReady)]
    second = _events(request)
    assert second[0].cached == 10
    again = [e for e in second if isinstance(e, FrameReady)]
    assert all(e.from_cache for e in again) and second[-1].rendered == 0
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))


def test_cancel_gives_cancelled_never_finished_and_keeps_a_resumable_cache(sample_clip, tmp_path):
    cancel = CancelToken()
    out = tmp_path / "out.mp4"
    request = RenderRequest(sample_clip, FAST, start=0, end=40, output=OutputSpec(out))
    events = []
    for event in render_frames(request, cancel):
        events.append(event)
        if isinstance(event, FrameReady) and event.done == 5:
            cancel.cancel()
    assert isinstance(events[-1], Cancelled)
    assert not any(isinstance(e, Finished) for e in events)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    resumed = _events(request)
    assert resumed[0].cached >= 5
    assert isinstance(resumed[-1], Finished) and resumed[-1].verification["ok"]
    assert resumed[-1].rendered == 40 - resumed[0].cached


def test_closing_the_generator_early_stops_the_threads(sample_clip):
    import threading

    gen = render_frames(RenderRequest(sample_clip, FAST, start=0, end=40))
    for event in gen:
        if isinstance(event, FrameReady):
            break
    gen.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("vdiff-")]


def test_export_with_audio_is_verified(sample_clip, tmp_path):
    out = tmp_path / "styled.mp4"
    events = _events(RenderRequest(sample_clip, FAST, start=8, end=32, output=OutputSpec(out)))
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    assert finished.verification["ok"], finished.verification
    info = probe(out)
    assert info.frame_count == 24 and info.fps == 24 and info.has_audio
    assert (info.width, info.height) == (96, 54)


def test_classical_denoise_uses_a_window_of_frames(sample_clip):
    params = StyleParams(engine="classical", look="denoise", denoise_window=3, max_side=64)
    events = _events(RenderRequest(sample_clip, params, start=0, end=6, use_cache=False))
    assert isinstance(events[-1], Finished)
    assert [e.index for e in events if isinstance(e, FrameReady)] == list(range(6))
    assert create_engine(params).temporal_radius == 1


@pytest.mark.parametrize("look", ["stylization", "pencil", "pencil-color", "cartoon", "edge-preserving"])
def test_classical_looks_change_the_frame(sample_clip, look):
    engine = create_engine(StyleParams(engine="classical", look=look, max_side=80))
    with VideoReader(sample_clip) as reader:
        frame = reader.frame(3)
    out = engine.process(frame, FrameContext(3))
    assert out.shape == (45, 80, 3)
    assert np.abs(out.astype(int) - engine.process(frame, FrameContext(3)).astype(int)).max() == 0
    from pipeline.engines.base import resize_to

    assert np.abs(out.astype(int) - resize_to(frame, (80, 45)).astype(int)).mean() > 3


def test_fast_style_style_image_and_blend(sample_clip, tmp_path):
    import cv2

    style = tmp_path / "style.png"
    cv2.imwrite(str(style), (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    with VideoReader(sample_clip) as reader:
        frame = reader.frame(0)
    outputs = []
    for params in (StyleParams(style_image=str(style), max_side=96), StyleParams(style="3:0.5,12:0.5", max_side=96),
                   StyleParams(style="3", max_side=96, strength=0.0)):
        engine = create_engine(params)
        engine.prepare()
        outputs.append(engine.process(frame, FrameContext(0)))
    assert all(o.shape == (54, 96, 3) for o in outputs)
    assert np.abs(outputs[0].astype(int) - outputs[1].astype(int)).mean() > 5
    from pipeline.engines.base import resize_to

    assert np.array_equal(outputs[2], resize_to(frame, (96, 54)))  # strength 0 is the source


@pytest.mark.parametrize("kwargs,message", [
    ({"start": 40, "end": 30}, "end frame"),
    ({"start": 100}, "outside the clip"),
])
def test_bad_ranges_fail_clearly(sample_clip, kwargs, message):
    events = _events(RenderRequest(sample_clip, FAST, **kwargs))
    assert isinstance(events[-1], Failed) and message in events[-1].message and events[-1].exit_code == 2


def test_style_image_that_is_not_an_image(sample_clip, tmp_path):
    bogus = tmp_path / "style.png"
    bogus.write_text("not a picture")
    events = _events(RenderRequest(sample_clip, StyleParams(style_image=str(bogus))))
    assert isinstance(events[-1], Failed) and "not a picture" in events[-1].message


def test_damaged_cache_frame_is_rendered_again(sample_clip):
    request = RenderRequest(sample_clip, FAST, start=0, end=6)
    first = {e.index: e.image for e in _events(request) if isinstance(e, FrameReady)}
    entry = FrameCache().find(render_key(probe(sample_clip), cache_description(create_engine(FAST))))
    path = entry.folder / f"{3:07d}.vdf"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # flip bits inside the PNG payload
    path.write_bytes(bytes(data))
    (entry.folder / f"{4:07d}.vdf").write_bytes(path.read_bytes()[:30])  # truncated
    events = _events(request)
    again = {e.index: e for e in events if isinstance(e, FrameReady)}
    assert not again[3].from_cache and not again[4].from_cache and again[2].from_cache
    assert np.array_equal(again[3].image, first[3]) and np.array_equal(again[4].image, first[4])
