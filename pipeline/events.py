"""Typed events a render reports, and the token that cancels it.

A render is a generator of these events; each is a progress point and a cancel point.
It ends with exactly one of Finished, Cancelled or Failed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


class CancelToken:
    """Thread-safe flag checked between frames and between denoising steps; a long call that cannot
    check it (an ONNX run) registers a callback that stops it (`when_cancelled`)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list = []

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def when_cancelled(self, callback):
        """Call `callback()` on the cancelling thread when cancelled (at once if already); returns a
        function that forgets it (call it when the work it would stop is over)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Started:
    total: int  # frames in the range
    cached: int  # of which already in the cache
    device: str = "cpu"


@dataclass(frozen=True)
class Step:
    index: int  # frame index in the source
    step: int
    steps: int


@dataclass(frozen=True)
class FrameReady:
    index: int
    image: np.ndarray = field(repr=False)  # HxWx3 uint8 RGB
    from_cache: bool
    done: int  # frames finished so far in this range
    total: int
    # pipeline.temporal.stabilizer.Motion from the previous source frame, when the render computed the flow
    motion: object | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Finished:
    total: int
    rendered: int  # frames computed (not taken from the cache)
    seconds: float
    output: str | None = None
    verification: dict | None = None


@dataclass(frozen=True)
class Cancelled:
    done: int
    total: int


@dataclass(frozen=True)
class Failed:
    message: str
    exit_code: int = 1
    done: int = 0
    kind: str = "error"  # "out_of_memory" when a lower-memory setting may help


Event = Started | Step | FrameReady | Finished | Cancelled | Failed
