"""Scrubbing proxies: low resolution, every frame a keyframe, frame i is source frame i, cached by source identity, atomic."""

import av
import numpy as np
import pytest

from pipeline.engines.base import resize_to
from pipeline.errors import CancelledError
from pipeline.events import CancelToken
from pipeline.footage import make_footage_clip
from pipeline.video import VideoReader, probe
from pipeline.video.proxy import find_proxy, make_proxy, proxy_dir, proxy_path, proxy_size

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
