"""Read a range of frames once, in order, each with its temporal neighbours (for engines that look around)."""

from __future__ import annotations

from collections import deque
from typing import Iterator

from pipeline.video.probe import VideoInfo
from pipeline.video.reader import VideoReader


def frames_with_neighbors(info: VideoInfo, start: int, stop: int, radius: int,
                          wanted: set[int] | None = None) -> Iterator[tuple]:
    """(index, frame, neighbours, centre) for each frame of [start, stop), in order, in one decode pass.

    `neighbours` holds up to `radius` frames either side (fewer at the clip's ends) and `centre` is the
    frame's place in it. Frames outside `wanted` (when given) come as (index, None, [], 0), and when none
    is wanted nothing is decoded at all."""
    if wanted is not None and not wanted:
        for index in range(start, stop):
            yield index, None, [], 0
        return
    first, last = max(0, start - radius), min(info.frame_count, stop + radius)
    window: deque = deque(maxlen=2 * radius + 1)  # (index, frame): the neighbourhood of the frame being emitted

    def emit(index: int) -> tuple:
        if wanted is not None and index not in wanted:
            return index, None, [], 0
        base = window[0][0]
        frames = [frame for _, frame in window]
        return index, frames[index - base], frames, index - base

    with VideoReader(info.path, info) as reader:
        for index, frame in reader.iter_frames(first, last):
            window.append((index, frame))
            ready = index - radius  # its right-hand neighbours are all read now
            if start <= ready < stop:
                yield emit(ready)
    for ready in range(max(start, last - radius), stop):  # the clip's end clamps these windows
        yield emit(ready)
