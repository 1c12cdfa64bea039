"""Decode frames as HxWx3 uint8 RGB: sequential streaming for renders, frame-accurate seeks for scrubbing."""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from pipeline.errors import BadInputError, CancelledError
from pipeline.profile import stage_iter
from pipeline.video.probe import VideoInfo, open_container, probe

log = logging.getLogger(__name__)

SEEK_BACKOFF = (0, 8, 32, 128, 1 << 62)  # frames before the wanted one to seek to; the last: the start


def frame_to_rgb(frame: av.VideoFrame, bit_depth: int, rotation: int) -> np.ndarray:
    """Convert a decoded frame to upright 8-bit RGB.

    Deeper sources are decoded at 16 bits per channel and rounded to 8 bits once, here, so that
    10-bit gradients are not truncated by an intermediate 8-bit YUV conversion.
    """
    if bit_depth > 8:
        wide = frame.to_ndarray(format="rgb48le").astype(np.uint32)
        image = np.minimum((wide + 128) >> 8, 255).astype(np.uint8)
    else:
        image = frame.to_ndarray(format="rgb24")
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


class VideoReader:
    """Reads one clip. Not thread-safe: each thread opens its own reader.

    `iter_frames` streams a range with constant memory; `frame(i)` seeks to the keyframe before i and
    decodes forward, keeping a small cache so that stepping frame by frame does not seek again.
    A frame that fails to decode is replaced by the previous good one (counted in `repaired`), so the
    frame count and timing always match the probe.
    """

    def __init__(self, path: str | Path, info: VideoInfo | None = None, cache_frames: int = 24):
        self.info = info or probe(path)
        self.path = Path(path)
        self.repaired = 0
        self._index_of: dict[int, int] = {}
        for i, pts in enumerate(self.info.pts):
            self._index_of.setdefault(pts, i)  # equal timestamps: the first; the others follow in order
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = cache_frames
        self._container = None
        self._decoder: Iterator | None = None
        self._next_index = -1  # the index the open decoder will produce next

    # -- streaming ----------------------------------------------------------------------------

    @stage_iter("decode")
    def iter_frames(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, image) for start <= index < end, in order, each exactly once."""
        start, end = self._check_range(start, end)
        if start >= end:
            return
        container, decoded = self._open_at(start)
        with container:
            expected = start
            previous = None
            for index, image in decoded:
                if index < expected:
                    continue
                if index >= end:
                    break
                while expected < index and previous is not None:  # frames the decoder lost
                    self.repaired += 1
                    yield expected, previous
                    expected += 1
                if expected < index:  # lost frames at the very start: use the first good one
                    for missing in range(expected, index):
                        self.repaired += 1
                        yield missing, image
                    expected = index
                yield index, image
                previous = image
                expected = index + 1
            if previous is None and expected < end:
                raise BadInputError(f"{self.path.name}: no frame could be decoded from frame {start} on")
            while expected < end:  # the file ended early or the tail is damaged
                self.repaired += 1
                yield expected, previous
                expected += 1
        if self.repaired:
            log.warning("%s: %d damaged frame(s) replaced by their neighbour", self.path.name, self.repaired)

    def _open_at(self, index: int, raw: bool = False):
        """A container and a decoder positioned at the keyframe at or before `index`.

        A seek can land past the wanted frame (MPEG-TS, B-frames: the keyframe's packet comes before
        its timestamp), which would lose frames; then it seeks again further back, and at last decodes
        from the start of the file.
        """
        for back in SEEK_BACKOFF:
            target = index - back
            container = open_container(self.path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if target > 0:
                container.seek(self.info.pts[target], stream=stream, backward=True)
            decoded = self._decode_indexed(container, stream, raw)
            first = next(decoded, None)
            if target <= 0 or (first is not None and first[0] <= index):
                return container, itertools.chain([first] if first is not None else [], decoded)
            container.close()
        raise AssertionError("unreachable: the last attempt decodes from the start")

    def _decode_indexed(self, container, stream, raw: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Decode packet by packet so one damaged packet does not end the stream (raw: av.VideoFrames)."""
        info = self.info
        counter = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                index = self._index_of.get(frame.pts) if frame.pts is not None else None
                if index is None or (index < counter < info.frame_count and info.pts[counter] == frame.pts):
                    index = counter  # no timestamp, or the next of several frames sharing one
                counter = index + 1
                yield index, frame if raw else frame_to_rgb(frame, info.bit_depth, info.rotation)

    # -- random access -------------------------------------------------------------------------

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` exactly (the same pixels iter_frames gives)."""
        if not 0 <= index < self.info.frame_count:
            raise BadInputError(f"frame {index} is outside the clip (0 to {self.info.frame_count - 1})")
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        # stepping forward a few frames: keep decoding instead of seeking
        if self._decoder is None or not (self._next_index <= index <= self._next_index + 12):
            self._seek(index)
        image = None
        for got_index, got in self._decoder:
            if got_index < index - self._cache_frames:
                self._next_index = got_index + 1
                continue  # would leave the cache before it is used: not worth its RGB conversion
            got = frame_to_rgb(got, self.info.bit_depth, self.info.rotation)
            self._remember(got_index, got)
            self._next_index = got_index + 1
            if got_index >= index:
                image = got if got_index == index else None
                break
        if image is None:
            image = self._nearest_cached(index)
        return image

    @property
    def position(self) -> int:
        """The frame the open decoder gives next, which frame() reads without seeking (-1: none open)."""
        return self._next_index if self._decoder is not None else -1

    def advance(self, index: int, cancel=None) -> None:
        """Decode on, without converting a frame or seeking, until the next frame is `index` (or the clip
        ends): how a long-GOP source is read in order far ahead, where a seek decodes from its keyframe,
        up to a second at 1080p. Opens the clip at its start when nothing is open or `index` lies behind."""
        def cancelled() -> bool:
            return cancel is not None and cancel.cancelled

        if cancelled():
            raise CancelledError()
        if self._decoder is None or index < self._next_index:
            self._seek(0)
            if index <= 0:
                return
        while self._next_index < index:
            if cancelled():
                raise CancelledError()
            got = next(self._decoder, None)
            if got is None:
                return
            self._next_index = got[0] + 1

    def _seek(self, index: int) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._decoder = self._open_at(index, raw=True)  # converted to RGB by frame()
        self._next_index = -1

    def _remember(self, index: int, image: np.ndarray) -> None:
        self._cache[index] = image
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)

    def _nearest_cached(self, index: int) -> np.ndarray:
        """A damaged frame: fall back to the closest earlier decodable one, like iter_frames does."""
        for candidate in range(index - 1, max(-1, index - 64), -1):
            if candidate in self._cache:
                return self._cache[candidate]
        for start, image in self.iter_frames(max(0, index - 64), index + 1):
            if start == index:
                return image
        raise BadInputError(f"{self.path.name}: frame {index} cannot be decoded")

    def _check_range(self, start: int, end: int | None) -> tuple[int, int]:
        count = self.info.frame_count
        end = count if end is None else end
        if not (0 <= start < count) or not (start < end <= count):
            raise BadInputError(f"range {start}..{end} is outside the clip (frames 0 to {count}, end exclusive)")
        return start, end

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._decoder = None
        self._cache.clear()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
