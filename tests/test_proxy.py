"""Scrubbing proxies: low resolution, every frame a keyframe, frame i is source frame i, cached by source identity, atomic."""

import subprocess

import av
import numpy as np
import pytest

from pipeline.engines.base import resize_to
from pipeline.errors import CancelledError, VdiffError
from pipeline.events import CancelToken
from pipeline.footage import make_footage_clip
from pipeline.video import VideoReader, probe
from pipeline.video.proxy import (cli_command, find_proxy, make_proxy, make_proxy_in_child, proxy_dir, proxy_path,
                                  proxy_size)

BOX = (96, 54)


@pytest.fixture(scope="module")
def long_gop_clip(tmp_path_factory):
    """24 frames 192x108 in one GOP: what a phone writes, small."""
    return make_footage_clip(tmp_path_factory.mktemp("proxy") / "gop.mp4", frames=24, width=192, height=108, gop=240,
                             audio=False)


def test_a_proxy_is_small_all_intra_and_frame_exact(long_gop_clip):
    info = probe(long_gop_clip)
    assert find_proxy(info, BOX) is None
    path = make_proxy(info, BOX)
    assert path.parent == proxy_dir() and find_proxy(info, BOX) == path
    made = probe(path)
    assert (made.width, made.height) == proxy_size(info, BOX) == (96, 54)
    assert made.frame_count == info.frame_count
    with av.open(str(path)) as container:
        assert all(packet.is_keyframe for packet in container.demux(video=0) if packet.size)
    with VideoReader(long_gop_clip) as source, VideoReader(path) as proxy:
        shrunk = [resize_to(frame, (96, 54)).astype(float) for _, frame in source.iter_frames()]
        for index in (0, 17, 5, 23, 1):  # frame i of the proxy is frame i of the source, shrunk (random access)
            errors = [np.sqrt(((proxy.frame(index).astype(float) - s) ** 2).mean()) for s in shrunk]
            assert int(np.argmin(errors)) == index and errors[index] < 12
    assert list(proxy_dir().iterdir()) == [path]  # no temporary file left


def test_a_changed_source_gets_another_proxy_and_a_small_one_none(long_gop_clip, tmp_path, sample_clip):
    info = probe(long_gop_clip)
    other = make_footage_clip(tmp_path / "gop.mp4", frames=24, width=192, height=108, gop=240, audio=False, seed=3)
    assert proxy_path(info, BOX) != proxy_path(probe(other), BOX)
    assert proxy_path(probe(sample_clip)) is None and make_proxy(probe(sample_clip)) is None  # fits 960x540


def test_a_cancelled_proxy_leaves_nothing(long_gop_clip):
    token = CancelToken()

    def progress(done, total):
        if done == 5:
            token.cancel()

    with pytest.raises(CancelledError):
        make_proxy(probe(long_gop_clip), BOX, cancel=token, on_progress=progress)
    assert not proxy_dir().exists() or list(proxy_dir().iterdir()) == []


def test_a_small_clip_gets_a_proxy_at_its_own_size_only_when_its_keyframes_are_far_apart(
        long_gop_clip, tmp_path, monkeypatch):
    """The probe counts the seek points; a clip that fits the box but decodes many pixels per seek (here
    with the threshold lowered to this tiny clip's scale) gets an all-intra copy of its own size."""
    from pipeline.video import proxy

    far, near = probe(long_gop_clip), probe(make_footage_clip(tmp_path / "near.mp4", frames=24, width=192,
                                                              height=108, gop=2, audio=False))
    assert (far.keyframes, far.keyframe_spacing) == (1, 24.0) and near.keyframes == 12
    assert proxy_size(far) is None  # 12 frames of 192x108 a seek: cheap
    monkeypatch.setattr(proxy, "SEEK_PIXELS", 100_000)  # 12 x 192 x 108 = 248,832 above it, 1 x ... below
    assert proxy_size(near) is None
    assert proxy_size(far) == (192, 108)
    made = probe(make_proxy(far))
    assert (made.width, made.height, made.frame_count, made.keyframes) == (192, 108, 24, 24)


def test_the_app_makes_a_proxy_in_a_child_process_that_reports_its_progress(long_gop_clip):
    """`vdiff proxy --report` in a child: the same proxy as in-process, the progress read from its output."""
    info = probe(long_gop_clip)
    seen = []
    path = make_proxy_in_child(info, BOX, on_progress=lambda done, total: seen.append((done, total)), niceness=5)
    assert path == proxy_path(info, BOX) and find_proxy(info, BOX) == path
    made = probe(path)
    assert (made.width, made.height, made.frame_count) == (96, 54, 24)
    assert seen == [(done, 24) for done in range(1, 25)]  # 24 frames: every frame is 2% or more
    assert list(proxy_dir().iterdir()) == [path]
    assert make_proxy_in_child(info, BOX, on_progress=seen.append) == path and len(seen) == 24  # found, not made again


def test_cancelling_the_child_process_stops_it_and_leaves_nothing(tmp_path):
    clip = make_footage_clip(tmp_path / "long.mp4", frames=600, width=192, height=108, gop=600, audio=False)
    token = CancelToken()
    seen = []

    def progress(done, total):
        seen.append(done)
        token.cancel()  # at the first report (12 of 600 frames): the child stops long before its end

    with pytest.raises(CancelledError):
        make_proxy_in_child(probe(clip), BOX, cancel=token, on_progress=progress)
    assert seen[0] == 12 and seen[-1] < 600
    assert not proxy_dir().exists() or list(proxy_dir().iterdir()) == []


def test_a_child_that_fails_says_why(tmp_path):
    info = probe(make_footage_clip(tmp_path / "clip.mp4", frames=6, width=192, height=108, audio=False))
    info.path.write_bytes(b"not a video at all")  # the clip is overwritten after it was opened
    with pytest.raises(VdiffError, match="the proxy's process failed: vdiff: error: clip.mp4"):
        make_proxy_in_child(info, BOX)


def test_the_proxy_command_prints_where_the_proxy_is(long_gop_clip, sample_clip):
    made = subprocess.run([*cli_command(), "proxy", str(long_gop_clip), "--box", "96x54"], capture_output=True,
                          text=True, check=True)
    assert made.stdout.strip() == str(proxy_path(probe(long_gop_clip), BOX))
    small = subprocess.run([*cli_command(), "proxy", str(sample_clip)], capture_output=True, text=True, check=True)
    assert "fits 960x540: it needs no proxy" in small.stdout
    bad = subprocess.run([*cli_command(), "proxy", str(sample_clip), "--box", "wide"], capture_output=True, text=True)
    assert bad.returncode == 2 and "'wide' is not WIDTHxHEIGHT" in bad.stderr
