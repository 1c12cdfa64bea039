"""The region edit of one render: which mask applies to each frame, and the composite with the source.

Built from the request's StyleParams (`mask`, `mask_anchors`, `mask_feather`); the render loop hands
each frame's mask to the engine (FrameContext.mask: diffusion keeps the source's latents outside it)
and composites every output with the source, so that outside the mask the output is the source.
"""

from __future__ import annotations

import threading

import numpy as np

from pipeline.editing.masks import MaskFile, MaskTrack, composite, feather, fit_mask, read_mask_image
from pipeline.request import StyleParams
from pipeline.video import VideoInfo, VideoReader


def has_region(params: StyleParams) -> bool:
    return bool(params.mask or params.mask_anchors)


class RegionEdit:
    """Masks for the frames of [start, end) of `info`'s clip; thread-safe (render workers share it)."""

    def __init__(self, params: StyleParams, info: VideoInfo, start: int, end: int):
        self.feather = float(params.mask_feather)
        self._file = MaskFile(params.mask) if params.mask else None
        self._track = None
        if params.mask_anchors:
            anchors = {int(frame): read_mask_image(path) for frame, path in params.mask_anchors}

            def frames(lo: int, hi: int):
                with VideoReader(info.path, info) as reader:
                    yield from reader.iter_frames(lo, hi)

            self._track = MaskTrack(anchors, start, end, frames)
        self._lock = threading.Lock()

    def mask_at(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Frame `index`'s mask at (width, height), feathered: 1 is edited, 0 keeps the source."""
        with self._lock:  # the mask file's reader and the track's first pass are not thread-safe
            parts = []
            if self._file is not None:
                parts.append(fit_mask(self._file.at(index), size))
            if self._track is not None:
                parts.append(fit_mask(self._track.at(index), size))
        mask = parts[0] if len(parts) == 1 else np.maximum(*parts)
        return feather(mask, self.feather)  # in output pixels

    def apply(self, index: int, source: np.ndarray, edited: np.ndarray) -> np.ndarray:
        """The output frame: `edited` inside the mask, `source` outside."""
        size = (edited.shape[1], edited.shape[0])
        return composite(source, edited, self.mask_at(index, size))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
