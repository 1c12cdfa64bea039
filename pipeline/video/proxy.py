"""Scrubbing proxies: a low-resolution, all-intra copy of a source, as video editors make.

A phone's or camera's H.264 puts a keyframe every few seconds, so showing frame i of the source means
decoding from the keyframe before it (up to ~1 s at 1080p with a 10-s interval), at full size. The
proxy has every frame as a keyframe at a size that fits a preview box (960x540 by default), so any
frame is one small decode (a few ms). A source that already fits the box gets one at its own size
when its keyframes are far apart (SEEK_PIXELS), and none when it seeks cheaply. Frame i of the
proxy is frame i of the source, upright, 8-bit.

Proxies live in the user cache folder (`<cache>/vdiff/proxies`), one file per source identity (the
frame cache's `source_identity`) and proxy size, written to a temporary file and renamed once complete
and checked, so a half-written proxy is never used. Renders and exports never read proxies.

The app makes proxies in a child process (`make_proxy_in_child`, which runs `vdiff proxy --report`):
decoding and encoding a whole clip then never hold the app's Python lock, and the child runs at a
lower priority as a whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import platformdirs

from pipeline.engines.base import resize_to
from pipeline.errors import CancelledError, VdiffError
from pipeline.events import CancelToken
from pipeline.video.probe import VideoInfo, probe
from pipeline.video.reader import VideoReader

log = logging.getLogger(__name__)

PROXY_BOX = (960, 540)  # (width, height) a proxy's frame fits in
PROXY_VERSION = 1  # bump when the proxy's format changes: older proxies are then ignored
# every frame a keyframe; fastdecode drops CABAC and the deblocking filter, which cost decode time
ENCODER_OPTIONS = {"g": "1", "crf": "23", "preset": "ultrafast", "tune": "fastdecode"}
# a source that fits the box gets a proxy too when an average seek in it decodes more pixels than this
# (half its keyframe spacing times the frame): 854x480 with a keyframe every 48 frames decodes 9.8 Mpx
# (bench/scrub.py's 480p clip: its original showed at p50 112 ms, its proxy at 39 ms), every 12 frames 2.5
SEEK_PIXELS = 4_000_000
MAX_PROXY_BYTES = 4 * 1024**3  # least recently used proxies are deleted beyond this


def proxy_dir() -> Path:
    return Path(platformdirs.user_cache_dir("vdiff", appauthor=False)) / "proxies"


def proxy_size(info: VideoInfo, box: tuple[int, int] = PROXY_BOX) -> tuple[int, int] | None:
    """The proxy's (width, height) for this source, even-sided; None when the source already fits the box
    and seeks in it cheaply."""
    scale = min(box[0] / info.width, box[1] / info.height)
    if scale >= 1.0:
        if info.keyframe_spacing / 2 * info.width * info.height < SEEK_PIXELS:
            return None
        scale = 1.0  # small, but with far-apart keyframes: an all-intra copy at its own size
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
    temp = _partial_path(path, os.getpid())
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


def _partial_path(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.stem}.{pid}.partial.mp4")  # a dot name: never taken for a proxy


def cli_command() -> list[str]:
    """The argv that runs vdiff's CLI: the packaged app's own executable, or this Python with `-m pipeline`."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "pipeline"]


def make_proxy_in_child(info: VideoInfo, box: tuple[int, int] = PROXY_BOX, cancel: CancelToken | None = None,
                        on_progress: Callable[[int, int], None] | None = None, niceness: int = 0) -> Path | None:
    """make_proxy in a child process (`vdiff proxy --report`), at `niceness` where the system allows it.

    Same contract as make_proxy. Cancelling closes the child's stdin, which stops it (as the app
    quitting or crashing does); a child that does not stop in 5 s is killed and its partial file deleted.
    """
    path = proxy_path(info, box)
    if path is None or path.is_file():
        return path
    command = [*cli_command(), "proxy", str(info.path), "--box", f"{box[0]}x{box[1]}", "--report"]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a talkative child cannot block on it
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                 creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        _renice(child.pid, niceness)
        close_input = threading.Lock()  # the cancelling thread and this one both close stdin: once

        def stop() -> None:
            with close_input:
                if not child.stdin.closed:
                    child.stdin.close()

        forget = cancel.when_cancelled(stop) if cancel is not None else (lambda: None)
        try:
            for line in child.stdout:
                fields = line.split()
                if on_progress is not None and len(fields) == 2 and all(f.isdigit() for f in fields):
                    on_progress(int(fields[0]), int(fields[1]))
            code = child.wait(timeout=5.0)
        finally:
            forget()
            stop()
            if child.poll() is None:
                child.kill()
                child.wait()
                _partial_path(path, child.pid).unlink(missing_ok=True)
            child.stdout.close()
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace").strip()
    if cancel is not None and cancel.cancelled:
        raise CancelledError()
    if code != 0 or not path.is_file():
        reason = said.splitlines()[-1] if said else f"exit status {code}"
        raise VdiffError(f"the proxy's process failed: {reason}")
    return path


def _renice(pid: int, niceness: int) -> None:
    """Linux and macOS: the child's priority (its threads inherit it); elsewhere it keeps the app's."""
    if niceness:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except (AttributeError, OSError):
            pass


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
