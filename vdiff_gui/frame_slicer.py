"""The frame slicer: every frame the compare view shows is read, scaled and made a QImage here, off the GUI thread.

Modelled on napari's layer slicer (`components/_layer_slicer.py`): the GUI asks for a frame with
`request`; a newer request replaces a pending one, and the result of one already in flight is dropped
(`frame_sliced` carries the request's serial, and only the newest is delivered); the view keeps the
last frame meanwhile. A stylized frame read from the cache entry of settings edited since (while it was
read, or while it waited in the GUI thread's event queue) is delivered without it. `force_sync()` runs requests on the calling thread, so tests are deterministic.

A frame is read from the scrubbing proxy (pipeline.video.proxy) when one is ready and big enough for
the view, else from the source; it is scaled to the view's pixel size (never up) and, when the frame
cache holds the stylized frame, that is read and scaled too. QImage is reentrant: making one on this
thread is safe, and the GUI thread then only paints it.

Playback (`play`, `take`) decodes ahead, in order and looping over the in/out range, into a ring of
RING_FRAMES frames; the GUI takes the frame its clock says is due, and frames the clock passed are
dropped (the caller counts them).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from pipeline.cache import CacheEntry
from pipeline.engines.base import resize_to
from pipeline.errors import VdiffError
from pipeline.video import VideoInfo, VideoReader
from vdiff_gui.images import array_to_qimage

log = logging.getLogger(__name__)

RING_FRAMES = 8  # playback's decode-ahead: ~1/3 s at 24 fps, a few MB at the view's size
RESTART_GAP = 12  # a due frame further ahead than this restarts the decode-ahead there (a scrub while playing)
PLAYBACK = -1  # the serial of frames decoded ahead for playback


def fit_within(width: int, height: int, box: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) scaled to fit `box` (never enlarged; None: unchanged)."""
    if box is None:
        return width, height
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def proxy_fits(proxy_width: int, info: VideoInfo, box: tuple[int, int] | None) -> bool:
    """A proxy is sharp enough when the view shows the source at most ~10% wider than the proxy."""
    return box is not None and fit_within(info.width, info.height, box)[0] <= proxy_width * 1.1


@dataclass(frozen=True)
class SlicedFrame:
    index: int
    before: QImage  # the source frame at the view's size
    after: QImage | None  # the stylized frame (given, or from the cache), or None: not rendered
    serial: int  # the request's, or PLAYBACK
    error: str | None = None  # the frame could not be read (before is then null)
    after_entry: Path | None = None  # the folder of the cache entry `after` was read from (None: given, or none)


@dataclass(frozen=True)
class _Request:
    index: int
    after: np.ndarray | None
    read_cache: bool
    serial: int


class FrameSlicer(QObject):
    frame_sliced = Signal(object)  # SlicedFrame, on the GUI thread; stale requests are never delivered
    _sliced = Signal(object)  # from the slicer's thread to _deliver, queued to the GUI thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: _Request | None = None
        self._serial = 0
        self._sync = False
        self._busy = False
        self._stopping = False
        self._info: VideoInfo | None = None
        self._proxy: Path | None = None
        self._entry: CacheEntry | None = None
        self._box: tuple[int, int] | None = None
        # playback: the next index to decode, the loop range, and the ring (GUI and thread, under the lock)
        self._playing = False
        self._next = 0
        self._inflight: int | None = None  # the index being decoded ahead now
        self._due: int | None = None  # the newest index the GUI's clock asked for
        self._seconds = 0.0  # how long decoding one frame ahead takes (a running average)
        self._fps = 24.0
        self._range = (0, 0)
        self._ring: deque[SlicedFrame] = deque()
        self._generation = 0
        # the reading side: used by one thread at a time (the slicer's, or the caller's under force_sync)
        self._readers: dict[Path, VideoReader] = {}
        self._sliced.connect(self._deliver)
        self._thread = threading.Thread(target=self._run, name="vdiff-frame-slicer", daemon=True)
        self._thread.start()

    # -- configuration (GUI thread) ---------------------------------------------------------------

    def set_source(self, info: VideoInfo | None) -> None:
        with self._cond:
            self._info, self._proxy, self._entry = info, None, None
            self._pending, self._playing = None, False
            self._ring.clear()
            self._serial += 1

    def set_proxy(self, path: Path | None, width: int = 0) -> None:
        """The source's scrubbing proxy (frames `width` pixels wide), once it is made."""
        with self._cond:
            self._proxy = (Path(path), width) if path else None

    def set_entry(self, entry: CacheEntry | None) -> None:
        """The cache entry stylized frames are read from (the current settings'); frames read from the one
        before are delivered without its stylized frame: it shows settings edited since."""
        with self._cond:
            self._entry = entry
            self._ring = deque(self._current(frame) for frame in self._ring)

    def set_display_size(self, box: tuple[int, int] | None) -> None:
        """The view's size in device pixels; frames are scaled to fit it (None: full size)."""
        with self._cond:
            self._box = box

    # -- scrubbing ----------------------------------------------------------------------------

    def request(self, index: int, after: np.ndarray | None = None, read_cache: bool = True) -> int:
        """Ask for frame `index` (with `after`, a stylized frame at hand, else the cache's); returns its serial."""
        with self._cond:
            self._serial += 1
            request = _Request(index, after, read_cache and after is None, self._serial)
            if not self._sync:
                self._pending = request
                self._cond.notify_all()
                return request.serial
        self.frame_sliced.emit(self._slice(request, *self._config()))
        return request.serial

    @property
    def latest_serial(self) -> int:
        with self._cond:
            return self._serial

    @contextlib.contextmanager
    def force_sync(self):
        """Within this block, request() and take() do their work at once on the calling thread."""
        with self._cond:
            self._sync = True
            self._pending = None
            while self._busy:
                self._cond.wait()
        try:
            yield self
        finally:
            with self._cond:
                self._sync = False
                self._cond.notify_all()

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy and self._pending is None, timeout)

    # -- playback -----------------------------------------------------------------------------

    def play(self, start: int, in_point: int, out_point: int, fps: float = 24.0) -> None:
        """Start decoding ahead from `start`, looping over in..out (inclusive), for a clock at `fps`."""
        with self._cond:
            self._playing, self._range, self._fps, self._due = True, (in_point, out_point), fps, None
            self._restart(start)

    def stop_playback(self) -> None:
        with self._cond:
            self._playing, self._due = False, None
            self._ring.clear()
            self._generation += 1

    def take(self, index: int) -> SlicedFrame | None:
        """The decoded-ahead frame `index`, or None when it is not decoded yet (frames before it are discarded)."""
        with self._cond:
            if self._sync:
                self._restart(index)
                request = _Request(index, None, True, PLAYBACK)
            else:
                self._due = index
                for k, item in enumerate(self._ring):
                    if item.index == index:
                        for _ in range(k + 1):
                            self._ring.popleft()
                        self._cond.notify_all()
                        return item
                producer = self._next if self._inflight is None else self._inflight
                if self._behind(producer, index):
                    self._ring.clear()  # all before `index`: the clock passed them (the thread catches up)
                elif self.distance(index, producer) > RING_FRAMES + RESTART_GAP:
                    self._restart(index)  # the playhead moved: decode from there
                # else: the thread is just ahead of a frame it dropped; the next due one is coming
                self._cond.notify_all()
                return None
        frame = self._slice(request, *self._config())
        with self._cond:
            self._next = self._after(index)
        return frame

    def _restart(self, index: int) -> None:
        self._ring.clear()
        self._next, self._inflight = index, None
        self._generation += 1
        self._cond.notify_all()

    def _after(self, index: int) -> int:
        in_point, out_point = self._range
        return in_point if index >= out_point else index + 1

    def _advance(self, index: int, frames: int) -> int:
        for _ in range(frames):
            index = self._after(index)
        return index

    def _behind(self, producer: int, due: int) -> bool:
        """Whether decoding `producer` next is at or within RESTART_GAP frames before the clock's `due` frame.
        In a loop shorter than the ring and the gap, a producer up to the ring's reach after `due` is also a
        few frames before it: that one is ahead, not behind."""
        ahead = 0 < self.distance(due, producer) <= RING_FRAMES + 1
        return self.distance(producer, due) <= RESTART_GAP and not ahead

    def distance(self, a: int, b: int) -> int:
        """Frames from a to b in playback order (looping over the range)."""
        in_point, out_point = self._range
        if b >= a:
            return b - a
        return (out_point - a + 1) + (b - in_point) if in_point <= b else 1 << 30

    # -- shutting down ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the thread (joined, with a bound) and close the readers."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(5.0)
        self._close_readers()

    # -- the slicer thread --------------------------------------------------------------------

    def _config(self):
        return self._info, self._proxy, self._entry, self._box

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (not self._sync and (
                    self._pending is not None or (self._playing and len(self._ring) < RING_FRAMES))))
                if self._stopping:
                    return
                config = self._config()
                request, self._pending = self._pending, None
                if request is None:  # decode ahead
                    index = self._next
                    if self._due is not None and index != self._due and self._behind(index, self._due):
                        # behind the clock: skip to the frame that will be due when this one is decoded
                        index = self._advance(self._due, int(self._seconds * self._fps))
                    request = _Request(index, None, True, PLAYBACK)
                    generation = self._generation
                    self._inflight, self._next = index, self._after(index)
                self._busy = True
                began = time.perf_counter()
            try:
                frame = self._slice(request, *config)
            except Exception:  # never die: the view would wait forever
                log.error("frame slicer failed:\n%s", traceback.format_exc())
                frame = None
            with self._cond:
                self._busy = False
                if request.serial == PLAYBACK:
                    self._inflight = None
                    self._seconds = 0.7 * self._seconds + 0.3 * (time.perf_counter() - began)
                self._cond.notify_all()
                if frame is None:
                    continue
                if request.serial == PLAYBACK:
                    if generation != self._generation or not self._playing:
                        continue  # restarted or stopped meanwhile
                    self._ring.append(self._current(frame))  # the entry may have changed while it was read
                elif request.serial != self._serial:
                    continue  # a newer request came: drop this one
            self._sliced.emit(frame)

    def _deliver(self, frame: SlicedFrame) -> None:
        """On the GUI thread: the settings may have been edited, or a newer frame asked for, since the
        thread sent this frame (it waited in the event queue): the checks are made again here."""
        with self._cond:
            if frame.serial != PLAYBACK and frame.serial != self._serial:
                return
            frame = self._current(frame)
        self.frame_sliced.emit(frame)

    def _current(self, frame: SlicedFrame) -> SlicedFrame:
        """`frame`, without its stylized frame if that was read from another entry than the current one (it
        shows settings edited since). Called under the lock."""
        if frame.after_entry is None or (self._entry is not None and self._entry.folder == frame.after_entry):
            return frame
        return replace(frame, after=None, after_entry=None)

    def _slice(self, request: _Request, info, proxy, entry, box) -> SlicedFrame:
        if info is None:
            return SlicedFrame(request.index, QImage(), None, request.serial, "no clip")
        try:
            source = self._read(info, proxy, box, request.index)
        except (VdiffError, OSError) as exc:
            return SlicedFrame(request.index, QImage(), None, request.serial, str(exc))
        before = array_to_qimage(resize_to(source, fit_within(source.shape[1], source.shape[0], box)))
        after, after_entry = request.after, None
        if after is None and request.read_cache and entry is not None:
            after = entry.load(request.index)
            after_entry = entry.folder if after is not None else None
        if after is not None:
            after = array_to_qimage(resize_to(after, fit_within(after.shape[1], after.shape[0], box)))
        return SlicedFrame(request.index, before, after, request.serial, after_entry=after_entry)

    def _read(self, info: VideoInfo, proxy: Path | None, box, index: int) -> np.ndarray:
        use_proxy = proxy is not None and proxy_fits(proxy[1], info, box)
        path = proxy[0] if use_proxy else info.path
        reader = self._readers.get(path)
        if reader is None:
            if len(self._readers) > 2:
                self._close_readers()
            reader = VideoReader(path, None if use_proxy else info)
            self._readers[path] = reader
        return reader.frame(index)

    def _close_readers(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

