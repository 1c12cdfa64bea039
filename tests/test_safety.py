"""Never lose a user's data, never write a wrong file and call it verified (issue #10 items 1, 2, 8, 12, 13).
Injected faults; run alone with `pytest -m reliability`."""

import errno
import os
import shutil
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from pipeline.cache import FrameCache
from pipeline.events import Failed, Finished, FrameReady
from pipeline.render import render_frames
from pipeline.request import OutputSpec, RenderRequest, StyleParams
from pipeline.sample import make_sample_clip
from pipeline.video import VideoWriter, probe

pytestmark = pytest.mark.reliability

QUICK = StyleParams(engine="classical", look="cartoon", max_side=64, temporal_flow=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_sample_clip(tmp_path_factory.mktemp("safety") / "clip.mp4", frames=12, width=96, height=64)


def vdiff(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def user_folder(tmp_path):
    """A folder the user already keeps things in, with an old PNG sequence of 9 frames."""
    folder = tmp_path / "Pictures"
    (folder / "holiday").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "holiday" / "beach.jpg").write_bytes(b"photo")
    for i in range(9):
        (folder / f"frame_{i:06d}.png").write_bytes(b"old frame")
    return folder


def test_a_png_export_into_a_folder_that_is_not_empty_is_refused(clip, tmp_path):
    """Item 1: nothing in the folder is removed or changed; one line, exit 2."""
    folder = user_folder(tmp_path)
    before = sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file())
    result = vdiff("render", clip, "-o", folder, "--codec", "png", "--end", "4", "--engine", "classical", "--quiet")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "choose an empty or new folder" in result.stderr and "Traceback" not in result.stderr
    assert sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file()) == before
    assert not list(tmp_path.glob(".*partial*"))


def test_overwrite_replaces_only_the_frames_of_the_sequence(clip, tmp_path):
    """Item 1: --overwrite puts the new frames in and removes only the old sequence's extra frames."""
    folder = user_folder(tmp_path)
    result = vdiff("render", clip, "-o", folder, "--codec", "png", "--end", "4", "--engine", "classical",
                   "--quiet", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (folder / "holiday" / "beach.jpg").read_bytes() == b"photo"
    frames = sorted(p.name for p in folder.glob("frame_*.png"))
    assert frames == [f"frame_{i:06d}.png" for i in range(4)]
    assert all((folder / name).read_bytes()[:4] == b"\x89PNG" for name in frames)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert vdiff("render", clip, "-o", empty, "--codec", "png", "--end", "3", "--engine", "classical", "--quiet").returncode == 0
    assert len(list(empty.glob("frame_*.png"))) == 3


def test_the_source_is_never_the_output(clip, tmp_path):
    source = tmp_path / "mine.mp4"
    shutil.copy(clip, source)
    before = source.read_bytes()
    result = vdiff("render", source, "-o", source, "--engine", "classical", "--quiet")
    assert result.returncode == 2 and "is the source clip itself" in result.stderr
    assert source.read_bytes() == before


def test_a_file_that_fails_verification_never_replaces_the_target(clip, tmp_path, monkeypatch):
    """Item 2: the encoder "drops" a frame; the existing export stays, the failed file is kept and named."""
    target = tmp_path / "export.mp4"
    target.write_bytes(b"last week's export")
    real_write = VideoWriter.write

    def dropping_write(self, image, pts):
        if self.frames == 3 and not getattr(self, "_dropped", False):
            self._dropped = True  # the frame never reaches the file
            return
        real_write(self, image, pts)

    monkeypatch.setattr(VideoWriter, "write", dropping_write)
    events = list(render_frames(RenderRequest(clip, QUICK, 0, 8, OutputSpec(target), use_cache=False)))
    assert isinstance(events[-1], Failed), events[-1]
    assert target.read_bytes() == b"last week's export"
    kept = tmp_path / "export.vdiff-unverified.mp4"
    assert str(kept) in events[-1].message and "frames: expected 8, got 7" in events[-1].message
    assert probe(kept).frame_count == 7
    assert events[-1].exit_code == 1
    assert not list(tmp_path.glob(".*partial*"))


def _fill(cache: FrameCache, key: str, frames: int, size: int) -> None:
    """An older render in the cache: `frames` frames of `size` bytes, used a day ago."""
    entry = cache.entry(key)
    for i in range(frames):
        (entry.folder / f"{i:07d}.vdf").write_bytes(b"\0" * size)
    entry.write_meta({"source": "old.mp4"})
    meta = entry.read_meta()
    meta["last_used"] = time.time() - 86400
    import json

    (entry.folder / "meta.json").write_text(json.dumps(meta))


def test_the_cache_bound_holds_while_a_render_runs(clip, tmp_path):
    """Item 8: an older render is evicted as the new one grows, not only when it starts."""
    frame = 16 + 64 * 43 * 3  # one cached 64x43 frame (max side 64 of a 96x64 clip)
    cache = FrameCache(tmp_path / "cache", max_bytes=14 * frame)
    _fill(cache, "older", 8, frame)
    assert cache.total_bytes() <= cache.max_bytes  # it fits when the render starts
    events = list(render_frames(RenderRequest(clip, QUICK, 0, 12), cache=cache))
    assert isinstance(events[-1], Finished), events[-1]
    assert cache.total_bytes() <= cache.max_bytes
    assert [row.key for row in cache.usage()] != ["older"] and "older" not in {row.key for row in cache.usage()}


def test_a_render_bigger_than_the_cache_bound_stops_before_it_starts(clip, tmp_path):
    """Item 8: the running render alone needs more than the bound: a clear message, nothing filled."""
    cache = FrameCache(tmp_path / "cache", max_bytes=5 * (16 + 64 * 43 * 3))
    events = list(render_frames(RenderRequest(clip, QUICK, 0, 12), cache=cache))
    assert isinstance(events[-1], Failed), events[-1]
    assert "the cache is limited to" in events[-1].message and "--limit" in events[-1].message
    assert events[-1].exit_code == 2
    assert cache.total_bytes() <= cache.max_bytes


def test_a_disk_without_room_stops_the_render_before_it_is_full(clip, tmp_path, monkeypatch):
    """Item 8: the disk reports 100 MB free (under the reserve vdiff keeps): stop with a clear message."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**8, 10**8))
    cache = FrameCache(tmp_path / "cache", max_bytes=10**9)
    events = list(render_frames(RenderRequest(clip, QUICK, 0, 12), cache=cache))
    assert isinstance(events[-1], Failed), events[-1]
    assert "the disk holding the frame cache" in events[-1].message and "free" in events[-1].message
    assert not any(isinstance(e, FrameReady) for e in events)


def test_a_slow_consumer_holds_the_render_back_instead_of_growing_memory(tmp_path):
    """Item 12: frames waiting for the consumer stay bounded (each holds a full frame)."""
    clip = make_sample_clip(tmp_path / "long.mp4", frames=30, width=64, height=48, audio=False)
    import pipeline.render

    bound = getattr(pipeline.render, "EVENT_QUEUE", 8)
    cache = FrameCache(tmp_path / "cache", max_bytes=10**9)
    ahead = []
    entry_folder = None
    for event in render_frames(RenderRequest(clip, QUICK, 0, 30), cache=cache):
        if isinstance(event, FrameReady):
            if entry_folder is None:
                entry_folder = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
            time.sleep(0.1)  # a display that cannot keep up
            stored = len(list(entry_folder.glob("*.vdf")))
            ahead.append(stored - event.done)
    assert len(ahead) == 30
    assert max(ahead) <= bound + 1, ahead  # stored but not yet consumed


def test_an_error_in_a_cache_file_names_the_file(clip, tmp_path):
    """Item 13: the message says which file failed and why (here the cache folder became a file)."""
    cache = FrameCache(tmp_path / "cache", max_bytes=10**9)
    events = []
    for event in render_frames(RenderRequest(clip, QUICK, 0, 12), cache=cache):
        events.append(event)
        if isinstance(event, FrameReady) and event.done == 2:
            folder = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
            # a rename is atomic while the cache writer thread is mid-file; rmtree races it
            folder.rename(tmp_path / "moved-away")
            folder.write_text("not a folder")
    assert isinstance(events[-1], Failed), events[-1]
    assert "frame cache" in events[-1].message and str(tmp_path / "cache") in events[-1].message


def test_describe_os_error_blames_the_file_that_failed(tmp_path):
    from pipeline.render import describe_os_error

    try:
        open(tmp_path / "elsewhere" / "style.png", "rb")
    except OSError as exc:
        message = describe_os_error(exc, tmp_path / "cache")
    assert "frame cache" not in message and "style.png" in message and "No such file" in message
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "a" / "0000001.vdf"))
    assert "the disk is full while writing the frame cache" in describe_os_error(full, tmp_path / "cache")
