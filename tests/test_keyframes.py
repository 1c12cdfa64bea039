"""Keyframe rendering: the plan (cuts, placement), in-between synthesis, the render loop, cache and resume."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from pipeline.cache import CacheEntry, FrameCache, render_key
from pipeline.engines import create_engine
from pipeline.engines.base import resize_to
from pipeline.events import Failed, Finished, FrameReady
from pipeline.footage import make_footage_clip
from pipeline.keyframes import keyframe_positions, plan_keyframes, shot_boundaries
from pipeline.keyframes.synth import Keyframe, synthesize
from pipeline.render import cache_description, render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.video import VideoReader, probe

FAST = StyleParams(style="3", max_side=96, keyframe_interval=4)
CUTS = (9, 20)


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    """28 frames of hand-held footage with hard cuts at frames 9 and 20, 128x72."""
    return make_footage_clip(tmp_path_factory.mktemp("kf") / "cuts.mp4", frames=28, width=128, height=72,
                             cuts=CUTS, audio=False)


def frames_of(request):
    events = list(render_frames(request))
    assert not any(isinstance(e, Failed) for e in events), [e for e in events if isinstance(e, Failed)]
    assert isinstance(events[-1], Finished)
    return {e.index: e.image for e in events if isinstance(e, FrameReady)}


def test_the_plan_finds_the_cuts_and_every_shot_starts_and_ends_with_a_keyframe(cut_clip):
    plan = plan_keyframes(cut_clip, FAST, 0, 28)
    assert plan.shots == (0, *CUTS)
    assert plan.keyframes == (0, 4, 8, 9, 13, 17, 19, 20, 24, 27)
    for index in range(28):  # an in-between's two keyframes are always in its own shot
        a, b = plan.neighbours(index)
        assert plan.shot_of(a) == plan.shot_of(b) == plan.shot_of(index)
    assert shot_boundaries(cut_clip, FAST, 0, 28) == [0, 9, 20]
    # the plan depends on the start, not on the end: a shorter range finds the same keyframes
    short = plan_keyframes(cut_clip, FAST, 0, 11)
    assert short.keyframes == (0, 4, 8, 9, 13) and short.stop == 14
    assert keyframe_positions(cut_clip, FAST.replace(keyframe_interval=1), 2, 5) == [2, 3, 4]


def test_auto_placement_stays_between_its_minimum_and_maximum(cut_clip):
    plan = plan_keyframes(cut_clip, FAST.replace(keyframes="auto", keyframe_min=2, keyframe_max=5), 0, 28)
    assert set(CUTS) <= set(plan.keyframes) and {8, 19, 27} <= set(plan.keyframes)
    for a, b in zip(plan.keyframes, plan.keyframes[1:]):
        assert b - a <= 5
        if plan.shot_of(b) == plan.shot_of(a) and b not in (8, 19, 27):  # a shot's last frame may come sooner
            assert b - a >= 2


def test_nothing_propagates_across_a_cut(cut_clip):
    """The frames of the second shot are the same whether the render starts at frame 0 or at the cut."""
    whole = frames_of(RenderRequest(cut_clip, FAST, 0, 20, use_cache=False))
    from_cut = frames_of(RenderRequest(cut_clip, FAST, CUTS[0], 20, use_cache=False))
    assert sorted(whole) == list(range(20))
    for index in range(CUTS[0], 20):
        assert np.array_equal(whole[index], from_cut[index]), index


def _texture(height, width, seed):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 2.0)
    noise = (noise - noise.mean()) / noise.std()
    return np.clip(110 + 45 * noise, 30, 200).astype(np.uint8)


def test_an_inbetween_is_the_warp_and_blend_of_its_keyframes_on_a_known_translation():
    """Sources translate by (3, 1) px a frame; the keyframes are a 'stylized' texture translating alike,
    the later one 40 levels brighter. Frame t must be the texture at t's place, brightened by
    40 * (t - a) / (b - a): the warp follows the motion and the blend weighs by temporal distance."""
    size, margin, a, b = (128, 80), 20, 0, 4  # DIS is unsure within ~16 px of the border at these shifts
    big_source, big_style = _texture(140, 180, 1), _texture(140, 180, 2)

    def at(image, t):
        return np.ascontiguousarray(image[20 + t: 20 + t + size[1], 20 + 3 * t: 20 + 3 * t + size[0]])

    before = Keyframe(a, at(big_source, a), at(big_style, a))
    after = Keyframe(b, at(big_source, b), np.clip(at(big_style, b).astype(int) + 40, 0, 255).astype(np.uint8))
    for t in (1, 2, 3):
        out = synthesize(t, at(big_source, t), before, after).astype(np.float32)
        expected = at(big_style, t).astype(np.float32) + 40 * (t - a) / (b - a)
        error = np.abs(out - expected)[margin:-margin, margin:-margin]
        assert error.mean() < 1.5 and np.percentile(error, 99) < 8, (t, error.mean(), np.percentile(error, 99))


def test_what_a_moving_object_uncovers_comes_from_the_keyframe_that_sees_it():
    """A bright object slides 8 px a frame over a still background. Frame 2 shows background where
    keyframe 0 still had the object: there the in-between must carry keyframe 4's background, not a ghost
    of the object (the source match, not a forward-backward test, finds it)."""
    background = _texture(96, 160, 1)
    thing = np.clip(_texture(40, 32, 5).astype(int) + 90, 0, 255).astype(np.uint8)

    def frame(t):
        image = background.copy()
        image[28:68, 30 + 8 * t: 62 + 8 * t] = thing
        return image

    def style(image):  # a deterministic look: the keyframes' style of a pixel depends on that pixel only
        return (255 - image).astype(np.uint8)

    before, after = Keyframe(0, frame(0), style(frame(0))), Keyframe(4, frame(4), style(frame(4)))
    out = synthesize(2, frame(2), before, after).astype(np.float32)
    error = np.abs(out - style(frame(2)))
    uncovered = error[32:64, 32:44]  # background at frame 2 and 4, the object at frame 0
    ghost = np.abs(style(thing)[4:36, :12].astype(np.float32) - style(frame(2))[32:64, 32:44]).mean()
    assert uncovered.mean() < 0.15 * ghost, (uncovered.mean(), ghost)
    assert error[:, 100:].mean() < 3  # the still background stays where it is


def test_an_inbetween_made_in_strips_is_the_whole_frame_pass(monkeypatch):
    """The float steps run on strips of rows with a halo of context: the result is exactly one pass over
    the whole frame (here with holes filled by a local engine, so the fill's regions cross strips too)."""
    from pipeline.keyframes import synth

    source0, source4, source2 = (_texture(150, 210, seed) for seed in (1, 1, 1))
    shift = lambda image, dx: np.ascontiguousarray(np.roll(image, dx, axis=1))  # noqa: E731
    before = Keyframe(0, source0, _texture(150, 210, 2))
    after = Keyframe(4, shift(source4, 8), shift(_texture(150, 210, 3), 8))
    now = shift(source2, 4)
    now[40:90, 60:120] = 255 - now[40:90, 60:120]  # something neither keyframe shows: a region to fill
    fill = lambda crop: (255 - crop).astype(np.uint8)  # noqa: E731  (a local look: exact on a crop)
    monkeypatch.setattr(synth, "STRIP_PIXELS", 10**9)
    whole = synth.synthesize(2, now, before, after, fill)
    assert not np.array_equal(whole, synth.synthesize(2, now, before, after, None))  # the fill is in it
    monkeypatch.setattr(synth, "STRIP_PIXELS", 17 * 210)
    assert len(synth.strips(150, 210)) == 9
    assert np.array_equal(synth.synthesize(2, now, before, after, fill), whole)


def test_rendered_inbetweens_are_the_synthesis_of_the_cached_keyframes(cut_clip):
    params = FAST.replace(temporal_flow=False)
    frames_of(RenderRequest(cut_clip, params, 0, 9))
    info = probe(cut_clip)
    engine = create_engine(params)
    entry = FrameCache().find(render_key(info, cache_description(engine, 0)))
    assert entry.indices() == set(range(9))  # keyframe 8 closes the last segment and the shot
    engine.prepare()
    size = engine.output_size(info.width, info.height)
    with VideoReader(cut_clip) as reader:
        key = {k: Keyframe(k, resize_to(reader.frame(k), size), entry.load(k)) for k in (4, 8)}
        from pipeline.engines import FrameContext

        fill = (lambda crop: engine.process(crop, FrameContext(index=6))) if engine.fills_holes else None
        made = synthesize(6, resize_to(reader.frame(6), size), key[4], key[8], fill)
    assert np.array_equal(made, entry.load(6))
    # an in-between is neither keyframe and differs from the per-frame stylization of its frame
    assert not np.array_equal(made, key[4].image) and not np.array_equal(made, key[8].image)


def test_a_range_ending_between_keyframes_caches_the_closing_keyframe_and_a_longer_one_reuses_all(cut_clip):
    first = list(render_frames(RenderRequest(cut_clip, FAST, 0, 6)))
    assert [e.index for e in first if isinstance(e, FrameReady)] == list(range(6))
    info = probe(cut_clip)
    entry = FrameCache().find(render_key(info, cache_description(create_engine(FAST), 0)))
    assert entry.indices() == set(range(6)) | {8}
    assert entry.read_meta()["keyframes"]["keyframes"] == [0, 4, 8]
    stamps = {i: entry._frame_path(i).stat().st_mtime_ns for i in entry.indices()}
    longer = list(render_frames(RenderRequest(cut_clip, FAST, 0, 12)))
    assert longer[-1].rendered == 12 - 7  # 6, 7, 9, 10, 11: keyframe 8 was cached by the shorter range
    assert all(entry._frame_path(i).stat().st_mtime_ns == stamp for i, stamp in stamps.items())


@pytest.mark.parametrize("engine", ["classical", "fast-style"])
def test_keyframe_renders_keep_every_frame_in_order(cut_clip, engine):
    params = StyleParams(engine=engine, look="cartoon", style="5", max_side=96, keyframe_interval=3)
    frames = frames_of(RenderRequest(cut_clip, params, 2, 15, use_cache=False))
    assert sorted(frames) == list(range(2, 15))
    assert all(f.shape == (54, 96, 3) for f in frames.values())


def test_resume_after_a_kill_gives_the_same_frames(cut_clip, tmp_path):
    import os
    import time

    args = [sys.executable, "-m", "pipeline", "render", str(cut_clip), "-o", str(tmp_path / "out.mp4"),
            "--engine", "classical", "--look", "denoise", "--max-side", "128", "--keyframe-interval", "3"]

    def env(name):
        return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / name))

    assert subprocess.run(args, env=env("whole"), capture_output=True).returncode == 0
    process = subprocess.Popen(args, env=env("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "killed" / "vdiff" / "frames"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("*/*.vdf"))) < 6:
        assert process.poll() is None, "the render ended before it could be killed"
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=30)
    killed = len(list(folder.glob("*/*.vdf")))
    assert 6 <= killed < 28
    resumed = subprocess.run([*args, "--resume"], env=env("killed"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    def frames(name):
        return {p.name: CacheEntry(p.parent).load(int(p.stem)).tobytes()
                for p in sorted((tmp_path / name / "vdiff" / "frames").glob("*/*.vdf"))}

    assert frames("killed") == frames("whole") and len(frames("whole")) == 28


def test_cli_keyframe_options_and_bad_values(cut_clip, tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "pipeline", "render", "--help"], capture_output=True,
                               text=True).stdout
    assert "--keyframe-interval" in help_text and "--keyframes {fixed,auto}" in help_text
    bad = subprocess.run([sys.executable, "-m", "pipeline", "render", str(cut_clip), "-o", str(tmp_path / "o.mp4"),
                          "--keyframe-interval", "-2"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "keyframes" in bad.stderr
    out = tmp_path / "frame.png"
    ok = subprocess.run([sys.executable, "-m", "pipeline", "preview", str(cut_clip), "--frame", "6", "-o", str(out),
                         "--max-side", "96", "--keyframe-interval", "4"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert cv2.imread(str(out)).shape == (54, 96, 3)


@pytest.mark.diffusion
def test_diffusion_renders_by_keyframes_with_its_consistency_mechanisms(cut_clip, tmp_path):
    from pipeline.tiny_models import make_tiny_sd_folder

    model = make_tiny_sd_folder(tmp_path / "tiny-sd")
    params = StyleParams(engine="diffusion", model=str(model), prompt="a fox", steps=4, strength=0.5,
                         max_side=64, keyframe_interval=3)
    frames = frames_of(RenderRequest(cut_clip, params, 5, 12, use_cache=False))
    assert sorted(frames) == list(range(5, 12))  # keyframes 5, 8, 9 (the cut), 12 closes the range
    assert all(f.shape == (32, 64, 3) for f in frames.values())


def test_holes_are_filled_per_region_and_outlines_keep_the_plain_blend():
    from pipeline.keyframes.synth import FILL_MARGIN, hole_boxes

    holes = np.zeros((240, 400), bool)
    holes[20:60, 10:50] = True  # something revealed, at the left
    holes[150:200, 330:380] = True  # another, far from it: its own box, not one spanning the frame
    ring = np.zeros((240, 400), np.uint8)
    cv2.circle(ring, (200, 120), 60, 1, 2)  # a moving object's outline, where the flow is unreliable
    holes |= ring.astype(bool)
    boxes = hole_boxes(holes)
    assert len(boxes) == 2
    (x0, y0, x1, y1), (u0, v0, u1, v1) = sorted(boxes)
    assert x0 <= 10 - FILL_MARGIN // 2 and y0 <= 20 - FILL_MARGIN // 2 and x1 >= 50 and y1 >= 60  # margin kept
    assert x1 < 120 and u0 > 300  # the two stay apart, the ring joins neither
    assert not hole_boxes(ring.astype(bool))


def test_only_engines_exact_on_a_crop_fill_holes():
    assert create_engine(StyleParams(engine="classical", look="cartoon")).fills_holes
    assert not create_engine(StyleParams(engine="classical", look="denoise")).fills_holes
    assert not create_engine(FAST).fills_holes


def test_one_scan_of_the_clip_serves_every_start_and_spacing_and_plans_read_nothing_after(cut_clip, monkeypatch):
    from pipeline.keyframes import plan as planning

    asked = [(0, 28, FAST), (5, 17, FAST), (11, 26, FAST.replace(keyframe_interval=3)),
             (2, 28, FAST.replace(keyframes="auto", keyframe_min=2, keyframe_max=5))]
    monkeypatch.setattr(planning, "_SCANS", {})
    piecemeal = [plan_keyframes(cut_clip, params, start, end) for start, end, params in asked]  # scans as needed
    monkeypatch.setattr(planning, "_SCANS", {})
    planning.scan_clip(cut_clip)  # what the app does in the background when the clip opens
    opened = []
    import pipeline.video  # the scan imports its reader from here when it reads: count those opens

    monkeypatch.setattr(pipeline.video, "VideoReader", lambda *a, **k: opened.append(a) or VideoReader(*a, **k))
    whole = [plan_keyframes(cut_clip, params, start, end) for start, end, params in asked]
    assert whole == piecemeal and not opened
    assert piecemeal[1].shots == (5, 9) and piecemeal[1].keyframes[:3] == (5, 8, 9)  # a range starts a shot



@pytest.mark.parametrize("start,end,params", [
    (0, 28, FAST), (5, 17, FAST), (11, 26, FAST.replace(keyframe_interval=3)), (0, 20, FAST),  # 20: a cut
    (2, 28, FAST.replace(keyframes="auto", keyframe_min=2, keyframe_max=5))])
def test_a_render_of_a_clip_not_scanned_plans_as_it_reads_the_clip_once_and_makes_the_same_frames(
        cut_clip, monkeypatch, tmp_path, start, end, params):
    from pipeline.keyframes import plan as planning
    from pipeline.video.reader import VideoReader as Reader

    reads = []
    iter_frames = Reader.iter_frames
    monkeypatch.setattr(Reader, "iter_frames", lambda self, *a, **k: reads.append(a) or iter_frames(self, *a, **k))
    monkeypatch.setattr(planning, "_SCANS", {})  # a clip the app has not scanned: the CLI's case

    def render(name):
        cache = FrameCache(tmp_path / name)
        events = list(render_frames(RenderRequest(cut_clip, params, start, end), cache=cache))
        assert isinstance(events[-1], Finished), events[-1]
        entry = cache.find(render_key(probe(cut_clip), cache_description(create_engine(params), start)))
        return {e.index: e.image for e in events if isinstance(e, FrameReady)}, entry.read_meta()["keyframes"]

    live, live_plan = render("live")
    assert len(reads) == 1 and planning.clip_scan(cut_clip, start).scanned == start  # read once, nothing scanned
    assert live_plan == plan_keyframes(cut_clip, params, start, end).to_json()  # plan_keyframes scans the clip
    scanned, scanned_plan = render("scanned")  # the plan made from that scan (the app's case)
    assert scanned_plan == live_plan and sorted(live) == list(range(start, end))
    assert all(np.array_equal(live[i], scanned[i]) for i in live)


def test_a_shorter_render_leaves_the_longer_plan_for_the_timelines_marks(cut_clip, tmp_path, monkeypatch):
    from pipeline.keyframes import plan as planning

    cache = FrameCache(tmp_path / "cache")
    for end in (28, 6):  # the second render plans [0, 6) alone: its plan stops at keyframe 8
        monkeypatch.setattr(planning, "_SCANS", {})
        assert isinstance(list(render_frames(RenderRequest(cut_clip, FAST, 0, end), cache=cache))[-1], Finished)
    entry = cache.find(render_key(probe(cut_clip), cache_description(create_engine(FAST), 0)))
    assert entry.read_meta()["keyframes"] == plan_keyframes(cut_clip, FAST, 0, 28).to_json()

def test_a_plan_asked_again_is_not_made_again_and_equals_one_made_afresh(cut_clip, monkeypatch):
    from pipeline.keyframes import plan as planning

    asked = [(0, 28, FAST), (5, 17, FAST), (0, 28, FAST.replace(keyframes="auto", keyframe_min=2, keyframe_max=5))]
    monkeypatch.setattr(planning, "_SCANS", {})
    planning.scan_clip(cut_clip)
    first = [plan_keyframes(cut_clip, params, start, end) for start, end, params in asked]
    again = [plan_keyframes(cut_clip, params, start, end) for start, end, params in asked]
    assert all(a is b for a, b in zip(first, again))  # the idle preparation asks for the whole clip per frame
    assert planning.plan_if_scanned(cut_clip, FAST, 5, 17) is first[1]  # the draft decision, then the preview
    scan = planning.clip_scan(cut_clip, 0)
    for (start, end, params), plan in zip(asked, again):
        auto, low, high = planning._spacing(params)
        assert plan == planning._make_plan(scan, auto, low, high, start, end, min(scan.frame_count, end + high))
    for end in range(2, 28):  # a scrub through the clip: one plan per frame asked for
        plan_keyframes(cut_clip, FAST, 0, end)
    assert len(scan.plans) == planning.PLANS_KEPT


def test_threads_asking_for_a_clips_first_scan_at_once_share_one(cut_clip, monkeypatch):
    import threading

    from pipeline.keyframes import plan as planning

    monkeypatch.setattr(planning, "_SCANS", {})
    got, start = [], threading.Barrier(4)

    def ask():
        start.wait()
        got.append(planning.clip_scan(cut_clip, 0))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(scan) for scan in got}) == 1  # else a preview extends its own scan from the start each time


def test_a_scan_another_thread_extended_meanwhile_reads_nothing_more(cut_clip):
    """Two threads extend one scan: the second saw no frame count yet, the first has measured the frames
    by the time the second has opened the clip (the self-test's render failed so, one run in two, with
    "range 10..10 is outside the clip")."""
    from pipeline.keyframes.plan import ClipScan

    for upto in (10, 10**6):  # inside the clip, and past its end (clamped to the frame count)
        scan = ClipScan(cut_clip, 0)
        scan.extend(upto)
        scanned = scan.scanned
        scan.frame_count = None  # what the second thread saw before the first had opened the clip
        scan.extend(upto)
        assert scan.scanned == scanned == min(upto, 28)


def test_a_flow_size_override_renders_into_its_own_cache_entry(cut_clip, monkeypatch):
    """VDIFF_FLOW_SIDE changes the carried pixels: its frames must not be served to a default render."""
    from pipeline.temporal import flow

    info = probe(cut_clip)
    default = render_key(info, cache_description(create_engine(FAST), 0))
    monkeypatch.setattr(flow, "FLOW_MAX_SIDE", 32)
    small = render_key(info, cache_description(create_engine(FAST), 0))
    per_frame = StyleParams(style="3", max_side=96, keyframe_interval=1, temporal_flow=False)
    monkeypatch.setattr(flow, "FLOW_MAX_SIDE", flow.DEFAULT_FLOW_SIDE)
    plain = render_key(info, cache_description(create_engine(per_frame), 0))
    monkeypatch.setattr(flow, "FLOW_MAX_SIDE", 32)
    assert small != default
    assert render_key(info, cache_description(create_engine(per_frame), 0)) == plain  # no flow: same frames


def test_a_cache_filled_by_another_inbetween_version_is_not_reused(cut_clip, monkeypatch):
    """The in-between algorithm is part of a keyframe render's key: a cache from an older version (its
    carried frames differ) is not mixed into a resumed render; per-frame renders keep their key."""
    from pipeline.keyframes import synth

    info = probe(cut_clip)
    per_frame = StyleParams(style="3", max_side=96, keyframe_interval=1, temporal_flow=False)
    now = render_key(info, cache_description(create_engine(FAST), 0))
    plain = render_key(info, cache_description(create_engine(per_frame), 0))
    monkeypatch.setattr(synth, "SYNTHESIS_VERSION", synth.SYNTHESIS_VERSION - 1)
    assert render_key(info, cache_description(create_engine(FAST), 0)) != now
    assert render_key(info, cache_description(create_engine(per_frame), 0)) == plain
