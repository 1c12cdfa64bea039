"""How a range is cut into chunks, and where each chunk's worker starts so that its seam does not show.

A chunk is a run of frames [start, end) one worker renders and returns. When a frame depends on the
frames before it (flow propagation, pipeline.temporal), a worker that starts mid-range has no previous
output to propagate; it starts from its predecessor's output when that is known (a resumed render, a
re-queued remainder), otherwise it renders `overlap` frames before its chunk and throws them away: the
propagated state forgets its start by a factor of at most `flow_blend` per frame, so after a few frames
the chunk's first frame matches a single-machine render to well under one 8-bit level (docs/distributed.md).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

MAX_CHUNK_FRAMES = 240  # 8 s at 30 fps: the seam overlap costs under 3% of a chunk this long
MIN_CHUNK_FRAMES = 24  # the tail's shortest chunks: workers finish within about a second of each other
SEAM_OVERLAP = 6  # frames rendered before a chunk to warm its propagated state (0.35**6 < 0.002)


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of the range that starts at `range_start`."""

    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def chunk_boundaries(start: int, end: int, workers: int, max_frames: int = MAX_CHUNK_FRAMES,
                     min_frames: int = MIN_CHUNK_FRAMES, keyframes: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """[start, end) cut into consecutive (a, b) chunks with guided sizes: ceil(remaining / (2 * workers))
    clamped to [min_frames, max_frames], so early chunks are long (seams are rare) and the last ones short
    (the workers finish at about the same time).

    Hook for keyframe rendering: with `keyframes` (sorted frame indices), each cut moves to the nearest
    keyframe after the chunk's start, so every chunk but the first starts on a keyframe.
    """
    if end <= start:
        return []
    workers = max(1, workers)
    max_frames = max(1, max_frames)
    min_frames = max(1, min(min_frames, max_frames))
    cuts = []
    a = start
    while a < end:
        size = min(max_frames, max(min_frames, -(-(end - a) // (2 * workers))))
        b = min(end, a + size)
        if keyframes is not None and b < end:
            b = _nearest_keyframe(keyframes, a, b, end)
        cuts.append((a, b))
        a = b
    return cuts


def _nearest_keyframe(keyframes: Sequence[int], a: int, b: int, end: int) -> int:
    """The keyframe in (a, end) closest to b, or end when there is none."""
    i = bisect_left(keyframes, b)
    near = [k for k in (keyframes[i - 1] if i > 0 else None, keyframes[i] if i < len(keyframes) else None)
            if k is not None and a < k < end]
    return min(near, key=lambda k: (abs(k - b), k)) if near else end


def runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted frame indices as maximal [a, b) runs of consecutive frames."""
    out: list[list[int]] = []
    for index in sorted(indices):
        if out and index == out[-1][1]:
            out[-1][1] += 1
        else:
            out.append([index, index + 1])
    return [(a, b) for a, b in out]


def plan_chunks(missing: Iterable[int], workers: int, max_frames: int = MAX_CHUNK_FRAMES,
                min_frames: int = MIN_CHUNK_FRAMES, keyframes: Sequence[int] | None = None) -> list[Chunk]:
    """The chunks that render exactly the `missing` frames (a resume sends only those), in frame order."""
    return [Chunk(a, b) for run_start, run_end in runs(missing)
            for a, b in chunk_boundaries(run_start, run_end, workers, max_frames, min_frames, keyframes)]


@dataclass(frozen=True)
class WarmStart:
    """Where a worker begins a chunk: it renders from `first` (<= chunk.start) and returns frames from
    chunk.start; `seed`, when set, is a frame whose known output it continues from (first == seed + 1)."""

    first: int
    seed: int | None = None


def warm_start(chunk: Chunk, range_start: int, propagates: bool, known: Callable[[int], bool],
               overlap: int = SEAM_OVERLAP) -> WarmStart:
    """How to start `chunk` so that it matches a single-machine render of the range from `range_start`.

    `propagates`: a frame takes in the previous output (flow propagation); `known(i)`: frame i's output
    is already in the frame cache. Without propagation every frame stands alone and nothing is needed.
    """
    if not propagates or chunk.start == range_start:
        return WarmStart(chunk.start)
    if known(chunk.start - 1):
        return WarmStart(chunk.start, seed=chunk.start - 1)
    return WarmStart(max(range_start, chunk.start - overlap))
