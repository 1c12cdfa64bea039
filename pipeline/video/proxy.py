"""Scrubbing proxies: a low-resolution, all-intra copy of a source, as video editors make.

A phone's or camera's H.264 puts a keyframe every few seconds, so showing frame i of the source means
decoding from the keyframe before it (up to ~1 s at 1080p with a 10-s interval), at full size. The
proxy has every frame as a keyframe at a size that fits a preview box (960x540 by default), so any
frame is one small decode (a few ms). Frame i of the proxy is frame i of the source, upright, 8-bit.

Proxies live in the user cache folder (`<cache>/vdiff/proxies`), one file per source identity (the
frame cache's `source_identity`) and proxy size, written to a temporary file and renamed once complete
and checked, so a half-written proxy is never used. Renders and exports never read proxies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import platformdirs

from pipeline.engines.base import resize_to
from pipeline.errors import CancelledError
from pipeline.events import CancelToken
from pipeline.video.probe import VideoInfo, probe
from pipeline.video.reader import VideoReader

log = logging.getLogger(__name__)

PROXY_BOX = (960, 540)  # (width, height) a proxy's frame fits in
PROXY_VERSION = 1  # bump when the proxy's format changes: older proxies are then ignored
# every frame a keyframe; fastdecode drops CABAC and the deblocking filter, which cost decode time
ENCODER_OPTIONS = {"g": "1", "crf": "23", "preset": "ultrafast", "tune": "fastdecode"}
MAX_PROXY_BYTES = 4 * 1024**3  # least recently used proxies are deleted beyond this


def proxy_dir() -> Path:
    return Path(platformdirs.user_cache_dir("vdiff", appauthor=False)) / "proxies"


def proxy_size(info: VideoInfo, box: tuple[int, int] = PROXY_BOX) -> tuple[int, int] | None:
    """The proxy's (width, height) for this source, even-sided; None when the source already fits the box."""
    scale = min(box[0] / info.width, box[1] / info.height)
    if scale >= 1.0:
        return None
    return max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2)


def proxy_path(info: VideoInfo, box: tuple[int, int] = PROXY_BOX) -> Path | None:
    """Where this source's proxy is (or will be) stored; None when it needs none."""
    from pipeline.cache import source_identity

    size = proxy_size(info, box)
    if size is None:
        return None
    blob = json.dumps({"source": source_identity(info.path), "size": size, "version": PROXY_VERSION,
                       "frames": info.frame_count}, sort_keys=True)
    return proxy_dir() / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.mp4"


def find_proxy(info: VideoInfo, box: tuple[int, int] = PROXY_BOX) -> Path | None:
    """The finished proxy of this source, or None (not made yet, or the source needs none)."""
    path = proxy_path(info, box)
    if path is None or not path.is_file():
        return None
    try:
        os.utime(path)  # used: last to be pruned
    except OSError:
        pass
    return path


def make_proxy(info: VideoInfo, box: tuple[int, int] = PROXY_BOX, cancel: CancelToken | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> Path | None:
    """Make (or find) the proxy of `info`'s source and return its path; None when the source needs none.

    Decodes the source once, in order; raises CancelledError when `cancel` is set (nothing is left
    behind). The file is renamed into place only once it has exactly the source's frame count.
    """
    path = proxy_path(info, box)
    if path is None:
        return None
    if path.is_file():
        return path
    size = proxy_size(info, box)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.partial.mp4")
    try:
        _encode(info, size, temp, cancel, on_progress)
        made = probe(temp)
        if made.frame_count != info.frame_count:
            raise ValueError(f"the proxy has {made.frame_count} frames, the source {info.frame_count}")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    prune_proxies(keep=path)
    log.info("proxy of %s: %s (%dx%d)", info.path.name, path.name, *size)
    return path


def _encode(info: VideoInfo, size: tuple[int, int], temp: Path, cancel: CancelToken | None, on_progress) -> None:
    rate = Fraction(info.fps) if info.fps > 0 else Fraction(24)
    with av.open(str(temp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = dict(ENCODER_OPTIONS)
        stream.codec_context.time_base = 1 / rate
        with VideoReader(info.path, info) as reader:
            for index, image in reader.iter_frames():
                if cancel is not None and cancel.cancelled:
                    raise CancelledError()
                frame = av.VideoFrame.from_ndarray(resize_to(image, size), format="rgb24")
                frame.pts = index  # evenly spaced: frame i of the proxy is frame i of the source
                for packet in stream.encode(frame):
                    container.mux(packet)
                if on_progress is not None:
                    on_progress(index + 1, info.frame_count)
        for packet in stream.encode():
            container.mux(packet)


def prune_proxies(max_bytes: int = MAX_PROXY_BYTES, keep: Path | None = None) -> None:
    """Delete the least recently used proxies until the folder holds at most max_bytes (never `keep`)."""
    try:
        files = [(p.stat().st_mtime, p.stat().st_size, p) for p in proxy_dir().glob("*.mp4")
                 if not p.name.startswith(".")]  # never another process's partial file
    except OSError:
        return
    total = sum(size for _, size, _ in files)
    for _, size, file in sorted(files):
        if total <= max_bytes:
            break
        if file != keep:
            file.unlink(missing_ok=True)
            total -= size
