"""Small frames for the timeline strip, read in the background with the pipeline's frame-accurate reader."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.video import VideoInfo, VideoReader

MAX_THUMBNAILS = 32
SEQUENTIAL_FRAMES = 3000  # up to this many frames, thumbnails come from one pass through the clip


def thumbnail_indices(frame_count: int, count: int = MAX_THUMBNAILS) -> list[int]:
    count = max(1, min(count, frame_count))
    return [round(i * (frame_count - 1) / max(1, count - 1)) for i in range(count)] if count > 1 else [0]


def read_thumbnails(info: VideoInfo, height: int, count: int = MAX_THUMBNAILS) -> list[np.ndarray]:
    """Evenly spaced frames of the clip scaled to `height` px high (RGB arrays)."""
    width = max(1, round(info.width * height / info.height))
    wanted = thumbnail_indices(info.frame_count, count)
    thumbs = []
    with VideoReader(info.path, info, cache_frames=2) as reader:
        if info.frame_count <= SEQUENTIAL_FRAMES:
            # one pass in order: with a long keyframe interval, 32 seeks would decode the clip many times over
            picked = set(wanted)
            frames = (frame for index, frame in reader.iter_frames() if index in picked)
        else:
            frames = (reader.frame(index) for index in wanted)
        for frame in frames:
            thumbs.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
    return thumbs
