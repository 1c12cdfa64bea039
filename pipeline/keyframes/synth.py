"""An in-between frame from its two keyframes: warp each along the source's optical flow, blend by
temporal distance and per-pixel confidence, restore the contrast a blend of two textures loses, and
fill what neither keyframe sees.

For frame t between keyframes a < t < b (all images at the output size):

1. Carry: the flow from source t to source k (k = a, b) brings the stylized keyframe S_k into t's
   place, W_k = warp(S_k, F_t->k) (forward from the previous keyframe, backward from the next).
2. Confidence c_k: 1 where the pixel is visible in k (the forward-backward / motion-boundary test of
   pipeline.temporal.flow) times exp(-mean_rgb(warp(I_k) - I_t)^2 / 0.1^2) (the warped source must
   match the source), Gaussian-smoothed.
3. Blend: w_a = (b - t) / (b - a) * c_a, w_b = (t - a) / (b - a) * c_b; O = (w_a W_a + w_b W_b) / (w_a + w_b).
4. Contrast: averaging two textures that differ (the engine's keyframes are not identical) lowers the
   local contrast, which reads as smearing; the detail (image minus a Gaussian blur) of O is scaled
   locally so its energy is the weighted mean of the two warps' detail energies (no gain where they
   agree, at most MAX_GAIN).
5. Holes: where w_a + w_b < HOLE, neither keyframe sees the pixel (a disocclusion). With a `fill`
   (the engine on the bounding box of the holes) those pixels come from it, feathered; without one,
   the plain temporal blend of the two warps (the cheap fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from pipeline.temporal.flow import flow_pair, occlusion_mask, warp

SOURCE_TOLERANCE = 0.1  # as the stabilizer's: RMS RGB (0-1) error at which the confidence falls to 1/e
HOLE = 0.15  # summed blend weight below which neither keyframe is trusted
FILL_MIN = 0.002  # hole fraction of the frame from which the engine is run on the region
FILL_MARGIN = 16  # px around the holes' bounding box: the engine needs context at the region's edge
DETAIL_SIGMA = 2.0  # px; what "detail" means for the contrast restoration
MAX_GAIN = 1.6


@dataclass(frozen=True)
class Keyframe:
    """A finished keyframe: its index, its source frame and its stylized frame, both at the output size."""

    index: int
    source: np.ndarray
    image: np.ndarray


def flows(source: np.ndarray, key_source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flows this frame -> keyframe and back: the one place the in-betweens compute flow."""
    return flow_pair(source, key_source)


def warp_sharp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """warp() with bicubic instead of bilinear sampling: a keyframe is carried over several frames, and
    bilinear sampling blurs it each time (measured: in-betweens at 0.67x the keyframes' sharpness, 0.90x
    bicubic; docs/quality.md)."""
    h, w = flow.shape[:2]
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, grid[1] + flow[:, :, 0], grid[0] + flow[:, :, 1], cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REPLICATE)


def carry(key: Keyframe, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keyframe's stylized frame warped into `source`'s place, and the HxW float32 confidence."""
    forward, backward = flows(source, key.source)
    visible = ~occlusion_mask(forward, backward)
    error = ((warp(key.source, forward).astype(np.float32) - source.astype(np.float32)) * (1.0 / 255.0)) ** 2
    agreement = np.exp(-(error[:, :, 0] + error[:, :, 1] + error[:, :, 2]) / np.float32(3 * SOURCE_TOLERANCE**2))
    confidence = cv2.GaussianBlur(visible.astype(np.float32) * agreement, (5, 5), 0)
    return warp_sharp(key.image, forward), confidence


def synthesize(index: int, source: np.ndarray, before: Keyframe, after: Keyframe,
               fill: Callable[[np.ndarray], np.ndarray] | None = None, restore: bool = True) -> np.ndarray:
    """In-between frame `index` (before.index < index < after.index) of `source`; see the module."""
    span = after.index - before.index
    if not before.index < index < after.index:
        raise ValueError(f"frame {index} is not between keyframes {before.index} and {after.index}")
    near_a = (after.index - index) / span
    warped_a, conf_a = carry(before, source)
    warped_b, conf_b = carry(after, source)
    w_a = (near_a * conf_a)[:, :, None]
    w_b = ((1.0 - near_a) * conf_b)[:, :, None]
    total = w_a + w_b
    a, b = warped_a.astype(np.float32), warped_b.astype(np.float32)
    blended = (w_a * a + w_b * b) / np.maximum(total, 1e-6)
    if restore:
        blended = restore_contrast(blended, a, b, w_a / np.maximum(total, 1e-6))
    seen = np.clip(total / HOLE, 0.0, 1.0)
    plain = near_a * a + (1.0 - near_a) * b
    if fill is not None and float((seen < 0.5).mean()) >= FILL_MIN:
        plain = _filled(plain, source, seen[:, :, 0] < 0.5, fill)
    out = seen * blended + (1.0 - seen) * plain
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def restore_contrast(blended: np.ndarray, a: np.ndarray, b: np.ndarray, share_a: np.ndarray) -> np.ndarray:
    """`blended` (float RGB) with its local detail energy raised to share_a * E(a) + (1 - share_a) * E(b)."""
    def detail(x):
        return x - cv2.GaussianBlur(x, (0, 0), DETAIL_SIGMA)

    def energy(d):
        return cv2.GaussianBlur((d * d).sum(axis=2), (0, 0), 2 * DETAIL_SIGMA)

    d_mix = detail(blended)
    share = share_a[:, :, 0]
    target = share * energy(detail(a)) + (1.0 - share) * energy(detail(b))
    gain = np.sqrt(target / np.maximum(energy(d_mix), 1e-3))
    gain = np.clip(gain, 1.0, MAX_GAIN)[:, :, None]
    return blended + (gain - 1.0) * d_mix


def _filled(plain: np.ndarray, source: np.ndarray, holes: np.ndarray, fill) -> np.ndarray:
    """`plain` with the holes' bounding box (plus a margin) replaced by the engine's output there."""
    ys, xs = np.nonzero(holes)
    h, w = holes.shape
    y0, y1 = max(0, ys.min() - FILL_MARGIN), min(h, ys.max() + 1 + FILL_MARGIN)
    x0, x1 = max(0, xs.min() - FILL_MARGIN), min(w, xs.max() + 1 + FILL_MARGIN)
    region = fill(np.ascontiguousarray(source[y0:y1, x0:x1]))
    if region.shape[:2] != (y1 - y0, x1 - x0):  # an engine that cannot keep the size: no fill
        return plain
    out = plain.copy()
    out[y0:y1, x0:x1] = region.astype(np.float32)
    return out


def sharpness(image: np.ndarray) -> float:
    """Mean squared Laplacian of the grey image (0-1): the fine detail a blurry or ghosted blend loses."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
    return float((cv2.Laplacian(grey, cv2.CV_32F) ** 2).mean())
