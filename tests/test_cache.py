"""The frame cache: checksums, atomic writes, keys, LRU eviction."""

import os
import shutil
import time

import numpy as np

from pipeline.cache import FrameCache, render_key, source_identity
from pipeline.video import probe


def test_store_load_round_trip_and_damage_detection(tmp_path):
    entry = FrameCache(tmp_path).entry("k")
    image = (np.random.default_rng(1).random((20, 30, 3)) * 255).astype(np.uint8)
    entry.store(7, image)
    assert entry.indices() == {7}
    assert np.array_equal(entry.load(7), image)
    path = entry.folder / f"{7:07d}.vdf"
    data = bytearray(path.read_bytes())
    data[12] ^= 1
    path.write_bytes(bytes(data))
    assert entry.load(7) is None and not path.exists()  # detected and dropped, to be rendered again


def test_key_depends_on_source_content_and_parameters(sample_clip, ntsc_clip):
    a, b = probe(sample_clip), probe(ntsc_clip)
    assert render_key(a, {"style": "1"}) == render_key(a, {"style": "1"})
    assert render_key(a, {"style": "1"}) != render_key(a, {"style": "2"})
    assert render_key(a, {"style": "1"}) != render_key(b, {"style": "1"})


def test_a_source_rewritten_in_place_with_its_size_and_mtime_kept_is_another_source(sample_clip, tmp_path):
    clip = tmp_path / "clip.mp4"
    shutil.copyfile(sample_clip, clip)
    before = source_identity(clip)
    assert source_identity(clip) == before
    st = clip.stat()
    with open(clip, "r+b") as handle:  # a tool that rewrites bytes in place, then sets the time back
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = source_identity(clip)
    assert after["size"] == before["size"] and after["mtime_ns"] == before["mtime_ns"]
    assert after["sha256_ends"] != before["sha256_ends"]


def test_eviction_removes_least_recently_used_but_never_the_running_one(tmp_path):
    cache = FrameCache(tmp_path, max_bytes=10**9)
    image = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    for key in ("old", "middle", "new"):
        entry = cache.entry(key)
        entry.store(0, image)
        entry.write_meta({"source": key})
        time.sleep(0.01)
    one = cache.find("old").size_bytes()
    cache.max_bytes = one * 2 + 10
    cache.evict(keep={"old"})
    assert {row.key for row in cache.usage()} == {"old", "new"}
    cache.max_bytes = 0
    cache.evict(keep={"old"})
    assert {row.key for row in cache.usage()} == {"old"}
