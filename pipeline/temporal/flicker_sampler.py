"""The live flicker meter of a render: sampled, at reduced resolution, on its own thread, never in the way.

`FlickerMeter` (metrics.py) computes two optical flows per frame pair at the output's size: about a
second per frame at 1080p, far too slow to run inline. `FlickerSampler` takes the frames a render
reports (`offer`, which never blocks), keeps pairs of consecutive frames at most every `stride`
frames, shrinks them so the longer side is at most `max_side`, and measures them on its own thread.
A pair that arrives while the previous one is still being measured is skipped (counted in
`skipped`): the sampler holds at most one pair waiting and one being measured (four small frames).
The source frames come with the offer when the caller has them, else from the sampler's own reader,
which streams the source forward (one extra decode, on this thread).

The score is FlickerMeter's warp error over the sampled pairs at the reduced size: the same measure
as `vdiff metrics` on those pairs of frames at that size, not the full-size number of the whole range.
"""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pipeline.engines.base import fit_size, resize_to
from pipeline.temporal.metrics import FlickerMeter

log = logging.getLogger(__name__)

MAX_SIDE = 320  # the flow is computed at this size: ~4 ms a pair instead of ~1 s at 1080p
STRIDE = 4  # a pair starts at most every this many frames


class FlickerSampler:
    """Measure a render's flicker on sampled frame pairs; `on_score(score, floor, pairs)` runs on its thread."""

    def __init__(self, source: str | Path | None, on_score: Callable[[float, float, int], None],
                 max_side: int = MAX_SIDE, stride: int = STRIDE, start: int = 0):
        self.output_errors: list[float] = []  # E(t) of the output, one per measured pair
        self.input_errors: list[float] = []  # E(t) of the source: the floor
        self.measured: list[int] = []  # the first index of each measured pair
        self.skipped = 0  # pairs left out because the previous one was still being measured
        self._source_path = Path(source) if source is not None else None
        self._on_score = on_score
        self._max_side, self._stride = max_side, max(1, stride)
        self._start = start
        self._lock = threading.Condition()
        self._first: tuple | None = None  # (index, output, source) waiting for its next frame
        self._queued: tuple | None = None  # a complete pair waiting for the thread
        self._measuring = False
        self._next_pair = start
        self._closed = False
        self._frames: Iterator | None = None  # the source, streamed forward from _frames_at
        self._frames_at = 0
        self._thread = threading.Thread(target=self._run, name="vdiff-flicker", daemon=True)
        self._thread.start()

    # -- the render's side (never blocks) ---------------------------------------------------------

    def offer(self, index: int, output: np.ndarray, source: np.ndarray | None = None) -> None:
        with self._lock:
            first = self._first
            if first is not None and first[0] == index - 1:
                self._first = None
                if self._queued is None:
                    self._queued = (first, (index, self._small(output), self._small(source)))
                    self._lock.notify_all()
                else:
                    self.skipped += 1
                return
            self._first = None
            busy = self._queued is not None or self._measuring
            if index >= self._next_pair and not busy:
                self._first = (index, self._small(output), self._small(source))
                self._next_pair = index + self._stride
            elif index >= self._next_pair:
                self.skipped += 1
                self._next_pair = index + self._stride

    def held_frames(self) -> int:
        """Frames held in memory now (at most four)."""
        with self._lock:
            return (self._first is not None) + 2 * (self._queued is not None) + 2 * self._measuring

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no pair is queued or being measured."""
        with self._lock:
            return self._lock.wait_for(lambda: self._queued is None and not self._measuring, timeout)

    def close(self, wait: bool = False, timeout: float = 5.0) -> None:
        """Stop; with `wait`, measure the pair already queued first. Joins the thread (bounded)."""
        with self._lock:
            if wait:
                self._lock.wait_for(lambda: self._queued is None and not self._measuring, timeout)
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _small(self, image: np.ndarray | None) -> np.ndarray | None:
        if image is None:
            return None
        h, w = image.shape[:2]
        return np.ascontiguousarray(resize_to(image, fit_size(w, h, self._max_side)))

    # -- the sampler's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._closed or self._queued is not None)
                    if self._closed:
                        return
                    pair, self._queued = self._queued, None
                    self._measuring = True
                try:
                    self._measure(pair)
                finally:
                    with self._lock:
                        self._measuring = False
                        self._lock.notify_all()
        except Exception:
            log.error("flicker meter failed:\n%s", traceback.format_exc())
        finally:
            self._frames = None

    @property
    def score(self) -> float | None:
        return float(np.mean(self.output_errors)) if self.output_errors else None

    @property
    def floor(self) -> float | None:
        return float(np.mean(self.input_errors)) if self.input_errors else None

    def _measure(self, pair) -> None:
        meter = FlickerMeter()  # one pair: FlickerMeter's own measure, nothing carried over between pairs
        for index, output, source in pair:
            if source is None:
                source = self._small(self._source_frame(index))
                if source is None:
                    return
            meter.add(index, source, output)
        self.output_errors += meter.output_errors
        self.input_errors += meter.input_errors
        self.measured.append(pair[0][0])
        self._on_score(self.score, self.floor, len(self.output_errors))

    def _source_frame(self, index: int) -> np.ndarray | None:
        """Frame `index` of the source, streaming forward (pairs come in order)."""
        if self._source_path is None:
            return None
        from pipeline.video import VideoReader

        for _ in range(2):  # once more from `index` if the stream was past it
            if self._frames is None or self._frames_at > index:
                self._frames = VideoReader(self._source_path).iter_frames(max(self._start, index))
                self._frames_at = max(self._start, index)
            for got, frame in self._frames:
                self._frames_at = got + 1
                if got == index:
                    return frame
            self._frames = None
        return None
