"""Previews prepared while the app is idle (pipeline.keyframes.preview.prepare_near), and cancels that stop
an engine call midway (a scrub that moved on does not wait for a stale preview)."""

import threading

import numpy as np
import pytest

from pipeline.engines import FrameContext, create_engine
from pipeline.errors import CancelledError
from pipeline.events import CancelToken
from pipeline.footage import make_footage_clip
from pipeline.keyframes import plan_keyframes
from pipeline.keyframes import preview as keyframe_previews
from pipeline.previews import prepare_previews, preview_frame, preview_ready
from pipeline.request import StyleParams
from pipeline.video import VideoReader

FAST = StyleParams(style="3", max_side=96, keyframe_interval=4)
SIZE = (64, 36)  # the view's size: previews are made at it


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """28 frames of hand-held footage with a cut at frame 17, 128x72."""
    return make_footage_clip(tmp_path_factory.mktemp("prep") / "clip.mp4", frames=28, width=128, height=72,
                             cuts=(17,), audio=False)


@pytest.fixture(scope="module")
def engine():
    engine = create_engine(FAST)
    engine.prepare()
    yield engine
    engine.close()


@pytest.fixture
def store(monkeypatch):
    """An empty store of prepared frames for the test (the module's is shared by the process)."""
    frames = keyframe_previews.PreviewFrames()
    monkeypatch.setattr(keyframe_previews, "_frames", frames)
    return frames


def ready(engine, clip, count=28):
    return [i for i in range(count) if preview_ready(engine, _info(clip), i, 0, SIZE)]


def _info(clip):
    with VideoReader(clip) as reader:
        return reader.info


def test_idle_work_prepares_the_keyframes_then_the_frames_between_nearest_first(engine, clip, store):
    keyframes = plan_keyframes(clip, FAST, 0, 28).keyframes
    with VideoReader(clip) as reader:
        order = []  # what each step made ready
        while prepare_previews(engine, reader, 12, size=SIZE):
            now = ready(engine, clip)
            order.extend(sorted(set(now) - set(order), key=lambda i: abs(i - 12)))
            assert len(order) <= 28
        assert sorted(order) == list(range(28))  # then there is nothing left: False
        assert order[:len(keyframes)] == sorted(keyframes, key=lambda k: abs(k - 12))  # keyframes first
        between = order[len(keyframes):]
        assert [abs(i - 12) for i in between] == sorted(abs(i - 12) for i in between)  # then nearest first

        prepared = {i: preview_frame(engine, reader, i, size=SIZE)[0] for i in range(28)}
        store.items.clear()
        store.nbytes = 0
        for i in (0, 5, 12, 17, 26):  # the same frames a scrub makes without preparation
            assert np.array_equal(prepared[i], preview_frame(engine, reader, i, size=SIZE)[0]), i


def test_every_keyframe_is_prepared_before_the_frames_between_them_beyond_the_playheads_reach(
        engine, clip, store, monkeypatch):
    monkeypatch.setattr(keyframe_previews, "PREPARE_REACH", 3)  # the 28-frame clip is far wider than it
    keyframes = plan_keyframes(clip, FAST, 0, 28).keyframes
    with VideoReader(clip) as reader:
        order = []
        while prepare_previews(engine, reader, 12, size=SIZE):
            order.extend(sorted(set(ready(engine, clip)) - set(order), key=lambda i: abs(i - 12)))
    assert order[:len(keyframes)] == sorted(keyframes, key=lambda k: abs(k - 12))  # each serves every frame beside it
    assert set(order[len(keyframes):][:6]) == {9, 10, 11, 13, 14, 15} - set(keyframes)  # then within reach


def test_a_frame_between_kept_keyframes_needs_no_network_run(engine, clip, store, tmp_path):
    from pipeline.keyframes.preview import needs_keyframes

    plan = plan_keyframes(clip, FAST, 0, 28)
    a, b = plan.neighbours(6)
    assert a < 6 < b
    assert needs_keyframes(engine, clip, 6, start=0, size=SIZE)
    with VideoReader(clip) as reader:
        preview_frame(engine, reader, a, size=SIZE)
        assert needs_keyframes(engine, clip, 6, start=0, size=SIZE)  # one of its two is still missing
        preview_frame(engine, reader, b, size=SIZE)
    assert not needs_keyframes(engine, clip, 6, start=0, size=SIZE)
    assert not needs_keyframes(engine, clip, b, start=0, size=SIZE)  # a keyframe kept is itself ready
    assert needs_keyframes(engine, clip, 6, start=0, size=(32, 18))  # kept at another size only
    assert needs_keyframes(engine, clip, 2, start=4, size=SIZE)  # before the range: a range of its own

    unscanned = tmp_path / "unscanned.mp4"
    unscanned.write_bytes(clip.read_bytes())
    assert needs_keyframes(engine, unscanned, 6, start=0, size=SIZE)  # answered without reading the clip
    from pipeline.keyframes.plan import clip_scan

    assert clip_scan(unscanned, 0).scanned == 0


def test_the_memory_budget_keeps_the_frames_nearest_the_playhead(engine, clip, store):
    frame_bytes = 64 * 36 * 3
    store.budget = 12 * frame_bytes  # a keyframe counts twice (its source and its stylized frame)
    with VideoReader(clip) as reader:
        while prepare_previews(engine, reader, 20, size=SIZE):
            pass
        near_20 = ready(engine, clip)
        assert 20 in near_20 and store.nbytes <= store.budget
        assert max(abs(i - 20) for i in near_20) <= 6  # nothing far was kept in place of something near
        while prepare_previews(engine, reader, 2, size=SIZE):
            pass
        near_2 = ready(engine, clip)
    assert 2 in near_2 and 20 not in near_2 and max(near_2) < 12  # the playhead moved: the far frames went


def test_slow_engines_and_full_size_previews_are_not_prepared(clip, store):
    with VideoReader(clip) as reader:
        fast = create_engine(FAST)
        fast.prepare()
        assert prepare_previews(fast, reader, 3, size=None) is False  # full size: a frame each is too much memory
        per_frame = create_engine(StyleParams(style="3", max_side=96, keyframe_interval=1))
        per_frame.prepare()
        assert prepare_previews(per_frame, reader, 3, size=SIZE) is False  # only keyframe renders prepare
        diffusion_like = create_engine(FAST)
        diffusion_like.prepares_previews = False  # as the diffusion engine declares
        assert prepare_previews(diffusion_like, reader, 3, size=SIZE) is False
    assert store.items == {}


def test_a_cancel_stops_preparing(engine, clip, store):
    token = CancelToken()
    token.cancel()
    with VideoReader(clip) as reader, pytest.raises(CancelledError):
        prepare_previews(engine, reader, 5, token, size=SIZE)
    assert store.items == {}


def test_a_cancel_ends_a_network_run_midway_and_the_engine_runs_on():
    engine = create_engine(StyleParams(style="7"))
    engine.prepare()
    big = np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), np.uint8)  # seconds of work on a CPU
    token = CancelToken()
    started = threading.Event()
    token.when_cancelled(started.set)

    threading.Timer(0.05, token.cancel).start()
    with pytest.raises(CancelledError):
        engine.process(big, FrameContext(index=0, cancel=token))
    assert started.is_set()
    small = big[:72, :128]
    assert engine.process(small, FrameContext(index=0)).shape == (72, 128, 3)  # the session still works
    engine.close()


def test_a_cancel_tokens_callbacks_run_once_and_can_be_forgotten():
    token, calls = CancelToken(), []
    token.when_cancelled(lambda: calls.append("a"))
    forget = token.when_cancelled(lambda: calls.append("b"))
    forget()
    token.cancel()
    token.cancel()
    token.when_cancelled(lambda: calls.append("late"))  # already cancelled: at once
    assert calls == ["a", "late"]


def test_opening_another_clip_drops_the_first_clips_prepared_frames(engine, clip, store, tmp_path):
    other = make_footage_clip(tmp_path / "other.mp4", frames=8, width=128, height=72, audio=False)
    with VideoReader(clip) as reader:
        assert prepare_previews(engine, reader, 0, size=SIZE)
    assert store.nbytes > 0
    restyled = create_engine(StyleParams(style="5", max_side=96, keyframe_interval=4))
    restyled.prepare()
    with VideoReader(clip) as reader:
        assert prepare_previews(restyled, reader, 0, size=SIZE)
    assert {key[0][0].style for key in store.items} == {"3", "5"}  # another style of the same clip: both kept
    with VideoReader(other) as reader:
        assert prepare_previews(engine, reader, 0, size=SIZE)
    assert {key[0][1][0] for key in store.items} == {str(other)}
    assert store.nbytes == sum(kept.nbytes for kept in store.items.values())


def test_a_clip_rewritten_in_place_is_not_served_its_old_prepared_frames(engine, tmp_path, store):
    import shutil

    path = tmp_path / "clip.mp4"
    make_footage_clip(path, frames=8, width=128, height=72, audio=False, scene="astronaut")
    with VideoReader(path) as reader:
        assert prepare_previews(engine, reader, 2, size=SIZE)
        assert preview_ready(engine, reader.info, 0, 0, SIZE)
    rewritten = make_footage_clip(tmp_path / "new.mp4", frames=8, width=128, height=72, audio=False, scene="coffee")
    shutil.move(rewritten, path)
    with VideoReader(path) as reader:
        assert not preview_ready(engine, reader.info, 0, 0, SIZE)


def test_a_source_that_seeks_slowly_gets_its_keyframes_prepared_in_reading_order(engine, clip, store, monkeypatch):
    # a long-GOP original before its proxy is made: a seek decodes from the clip's keyframe, up to 1 s at 1080p
    keyframes = plan_keyframes(clip, FAST, 0, 28).keyframes  # the shots measured, as the app's scan does
    with VideoReader(clip) as reader:
        seeks, seek = [], reader._seek
        monkeypatch.setattr(reader, "_seek", lambda index: (seeks.append(index), seek(index)))
        first = preview_frame(engine, reader, 14, size=SIZE)[0]  # the scrub the preparation follows
        position, seeks[:], scrubbed = reader.position, [], set(ready(engine, clip))
        made = []
        while prepare_previews(engine, reader, 14, size=SIZE, in_order=True):
            new = set(ready(engine, clip)) - set(made) - scrubbed
            assert len(new) == 1, new  # one keyframe a step, no frame between
            made.extend(new)
        assert scrubbed == {12, 14, 16}  # its two keyframes kept
        missing = [k for k in keyframes if k not in scrubbed]
        assert made == [k for k in missing if k >= position] + [k for k in missing if k < position]
        assert seeks == [0]  # once, to the start, after the clip's end: the rest decoded on
        assert set(ready(engine, clip)) == set(keyframes) | {14}
        prepared = {k: preview_frame(engine, reader, k, size=SIZE)[0] for k in keyframes}
        store.items.clear()
        store.nbytes = 0
        for k in keyframes:  # the same frames a scrub makes without preparation
            assert np.array_equal(prepared[k], preview_frame(engine, reader, k, size=SIZE)[0]), k
        assert np.array_equal(first, preview_frame(engine, reader, 14, size=SIZE)[0])


def test_reading_in_order_waits_for_the_shots_and_stops_within_a_frame_when_cancelled(engine, clip, store, tmp_path):
    unscanned = tmp_path / "unscanned.mp4"
    unscanned.write_bytes(clip.read_bytes())
    with VideoReader(unscanned) as reader:
        assert prepare_previews(engine, reader, 3, size=SIZE, in_order=True) is False  # a plan would read the clip
        assert reader.position == -1  # and nothing was read
        plan_keyframes(unscanned, FAST, 0, 28)
        token = CancelToken()
        token.cancel()
        with pytest.raises(CancelledError):
            prepare_previews(engine, reader, 3, token, size=SIZE, in_order=True)
        assert ready(engine, unscanned) == []
        assert prepare_previews(engine, reader, 3, size=SIZE, in_order=True) is True
        assert ready(engine, unscanned) == [0]  # nothing open: from the clip's start


def test_reading_in_order_stops_when_the_memory_holds_only_nearer_frames(engine, clip, store):
    store.budget = 64 * 36 * 3 * 2 * 4  # four keyframes' worth (each counts its source, image and small source)
    plan_keyframes(clip, FAST, 0, 28)
    with VideoReader(clip) as reader:
        steps = 0
        while prepare_previews(engine, reader, 20, size=SIZE, in_order=True):
            steps += 1
            assert steps < 10
        kept = ready(engine, clip)
    assert kept and store.nbytes <= store.budget
    assert max(abs(k - 20) for k in kept) <= 8  # from 0 on, the far ones gave way to those nearer frame 20
