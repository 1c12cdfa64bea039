"""Optical flow between input frames, warping along it, and which pixels it can be trusted for.

Flow is OpenCV's DIS (fixed preset, so every measure and render uses the same flow), computed on the
frames' grey levels. Measures (`vdiff metrics`) compute it at the frames' size; renders compute it at
a reduced size (`flow_size`, longer side at most FLOW_MAX_SIDE) and bring it up with `upsample_flow`:
the motion of consecutive frames is smooth, and the full-size flow cost more than the style network. A flow `f` from frame a to frame b says that a's pixel p is b's pixel p + f(p);
`warp(b, f)` therefore brings b into a's place. The occlusion test is the one of Lai et al. 2018
("Learning Blind Video Temporal Consistency"), in a's coordinates.
"""

from __future__ import annotations

import os
from functools import lru_cache

import cv2
import numpy as np

DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM


DEFAULT_FLOW_SIDE = 480


def _flow_side_setting(default: int = DEFAULT_FLOW_SIDE) -> int:
    text = os.environ.get("VDIFF_FLOW_SIDE", "").strip()
    return int(text) if text.isdigit() else default


# longer side of a render's flow in pixels (bench/flow_size.py: a warp error within 3-5% of the full-size
# flow's on 480p to 1080p footage, at 1/3 to 1/17 of its cost); VDIFF_FLOW_SIDE=N overrides, 0: full size
FLOW_MAX_SIDE = _flow_side_setting()


def compute_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The HxWx2 float32 flow (dx, dy) from RGB frame a to RGB frame b (same size)."""
    dis = cv2.DISOpticalFlow_create(DIS_PRESET)
    return dis.calc(_grey(a), _grey(b), None)


def flow_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flows a -> b and b -> a."""
    return compute_flow(a, b), compute_flow(b, a)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def flow_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """The (width, height) a render computes the flow of a width x height frame at (never larger);
    max_side None: FLOW_MAX_SIDE."""
    max_side = FLOW_MAX_SIDE if max_side is None else max_side
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(8, round(width * scale)), max(8, round(height * scale))


def upsample_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A flow computed at a smaller size, brought up to (width, height): resized, its vectors scaled."""
    h, w = flow.shape[:2]
    if (w, h) == tuple(size):
        return flow
    big = cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(big, (size[0] / w, size[1] / h, 0.0, 0.0), dst=big)


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` (frame b) sampled at p + flow(p): b brought into the place of the flow's first frame.

    Bilinear unless told; pixels sampled outside the frame take the nearest border value. Keeps the dtype.
    """
    h, w = flow.shape[:2]
    positions = cv2.add(_grid(h, w), np.ascontiguousarray(flow, dtype=np.float32))  # one HxWx2 map of (x, y)
    return cv2.remap(image, positions, None, interpolation, borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> np.ndarray:
    """HxWx2 float32: each pixel's (x, y), made once per size (a render warps every frame at one size)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.ascontiguousarray(np.dstack([xs, ys]))
    grid.setflags(write=False)
    return grid


def occlusion_mask(flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """HxW bool, in frame a's coordinates: True where a's pixel is not seen in b, or the flow is unreliable.

    Occluded where the forward-backward check fails, |f + b~|^2 > 0.01 (|f|^2 + |b~|^2) + 0.5 with
    b~(p) = flow_ba(p + f(p)), or on a motion boundary, |grad f_x|^2 + |grad f_y|^2 > 0.01 |f|^2 + 0.002.
    """
    back = warp(flow_ba, flow_ab)
    mag_ab = squared_length(flow_ab)
    mag_back = squared_length(back)
    mismatch = squared_length(flow_ab + back) > 0.01 * (mag_ab + mag_back) + 0.5
    # forward differences, 0 on the last row/column
    du = np.zeros_like(flow_ab)
    dv = np.zeros_like(flow_ab)
    du[:, :-1] = flow_ab[:, 1:] - flow_ab[:, :-1]
    dv[:-1, :] = flow_ab[1:, :] - flow_ab[:-1, :]
    boundary = squared_length(du) + squared_length(dv) > 0.01 * mag_ab + 0.002
    return mismatch | boundary


def squared_length(vectors: np.ndarray) -> np.ndarray:
    """dx^2 + dy^2 of an HxWx2 field: the same numbers as (v**2).sum(axis=2), seven times faster (numpy
    reduces a last axis of two slowly)."""
    x, y = vectors[:, :, 0], vectors[:, :, 1]
    return x * x + y * y
