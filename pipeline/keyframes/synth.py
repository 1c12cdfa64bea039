"""An in-between frame from its two keyframes: warp each along the source's optical flow, blend by
temporal distance and per-pixel confidence, restore the contrast a blend of two textures loses, and
fill what neither keyframe sees.

For frame t between keyframes a < t < b (all images at the output size):

1. Carry: the flow from source t to source k (k = a, b) brings the stylized keyframe S_k into t's
   place, W_k = warp(S_k, F_t->k) (forward from the previous keyframe, backward from the next). The
   flow is computed at the render's flow size (longer side FLOW_MAX_SIDE) and brought up, as the
   per-frame consistency's is; the warp itself is at the output size, bicubic.
2. Confidence c_k: exp(-mean_rgb(warp(I_k) - I_t)^2 / 0.1^2) (the warped source must match the
   source: `source_agreement`), Gaussian-smoothed, at the flow size. Unlike the per-frame stabilizer's
   weight, no forward-backward occlusion test: a pixel k does not see brings the wrong source pixels
   and fails the match anyway, and the test also distrusts every motion boundary. Without it an
   in-between needs two flows instead of four, and it is steadier: on 96 frames of 854x480 footage
   (a style image) warp error 0.00257 against 0.00285, fidelity 0.763 against 0.761; on the keyframe
   bench 0.00038 against 0.00041, in-between sharpness 0.90 against 0.89 of the keyframes'.
3. Blend: w_a = (b - t) / (b - a) * c_a, w_b = (t - a) / (b - a) * c_b; O = (w_a W_a + w_b W_b) / (w_a + w_b).
4. Contrast: averaging two textures that differ (the engine's keyframes are not identical) lowers the
   local contrast, which reads as smearing; the detail (image minus a Gaussian blur) of O is scaled
   locally so its energy is the weighted mean of the two warps' detail energies (no gain where they
   agree, at most MAX_GAIN; the energies, smooth fields, are blurred at half size).
5. Holes: where w_a + w_b < HOLE, neither keyframe sees the pixel. With a `fill` (engines whose
   output on a crop is their output on the frame: the classical looks), the engine runs on the
   bounding box of each cluster of holes that is a region (at least FILL_MIN of the frame and
   FILL_DENSITY of its box; thin outlines, where the flow is unreliable on a moving edge, are not)
   and those pixels come from it, feathered. Otherwise, and for the networks (a network's output on a
   crop differs from its output on the frame and flickers against the carried pixels around it),
   the plain temporal blend of the two warps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import cv2
import numpy as np

from pipeline.errors import CancelledError
from pipeline.events import CancelToken
from pipeline.profile import stage
from pipeline.temporal.flow import compute_flow, upsample_flow, warp
from pipeline.temporal.stabilizer import flow_source, source_agreement

SYNTHESIS_VERSION = 3  # part of a keyframe render's cache key: 2, confidence without the occlusion test;
# 3, the contrast restoration's energy blurred at half size
HOLE = 0.15  # summed blend weight below which neither keyframe is trusted
FILL_MIN = 0.002  # hole fraction of the frame from which the engine is run on the region
FILL_DENSITY = 0.25  # share of its box a cluster of holes must cover to be filled (an outline covers less)
FILL_MARGIN = 16  # px around the holes' bounding box: the engine needs context at the region's edge
DETAIL_SIGMA = 2.0  # px; what "detail" means for the contrast restoration
MAX_GAIN = 1.6
# the float steps run on strips of rows of about this many pixels (a 1080p frame's floats alone are 25 MB an
# array); a 480p frame takes two strips, a 1080p frame seven (each strip's halo is work done twice)
STRIP_PIXELS = 1920 * 160
# rows of context a strip's blurs need on each side: the detail blur (radius 8) feeds the energy, blurred at
# half size (pyramid down, radius 8 there, pyramid up: a row depends on 20 rows each side), so rows nearer
# the strip's edge than 28 could differ (in float) from a whole-frame pass; strips start on even rows, as
# the half size's grid does
STRIP_HALO = 28
# the energy's blur at half size: with the pyramid's own two ~1 px blurs, the 2 x DETAIL_SIGMA px of a
# full-size blur (the same output within 2 levels, mean 0.000; 16% less time for the restoration)
ENERGY_SIGMA_HALF = ((2 * DETAIL_SIGMA) ** 2 - 2) ** 0.5 / 2


@dataclass(frozen=True)
class Keyframe:
    """A finished keyframe: its index, its source frame and its stylized frame, both at the output size."""

    index: int
    source: np.ndarray
    image: np.ndarray

    @cached_property
    def small_source(self) -> np.ndarray:
        """The source at the flow's size, made once: every in-between beside this keyframe needs it."""
        h, w = self.source.shape[:2]
        return flow_source(self.source, (w, h))


def warp_sharp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """warp() with bicubic instead of bilinear sampling: a keyframe is carried over several frames, and
    bilinear sampling blurs it each time (measured: in-betweens at 0.67x the keyframes' sharpness, 0.90x
    bicubic; docs/quality.md)."""
    return warp(image, flow, cv2.INTER_CUBIC)


def carry(key: Keyframe, source: np.ndarray, small_source: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The keyframe's stylized frame warped into `source`'s place, and the HxW float32 confidence
    (`small_source`: `source` at the flow's size, when the caller has it)."""
    h, w = source.shape[:2]
    small_source = flow_source(source, (w, h)) if small_source is None else small_source
    flow, confidence = carry_flow(key.small_source, small_source)  # at the flow's size
    if confidence.shape != (h, w):
        confidence = cv2.resize(confidence, (w, h), interpolation=cv2.INTER_LINEAR)
    return warp_sharp(key.image, upsample_flow(flow, (w, h))), confidence


@stage("flow")
def carry_flow(key_source: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flow from `source` to `key_source` (one size) and the HxW float32 confidence in it: how well the
    keyframe's source brought along it matches, smoothed (the module's step 2)."""
    flow = compute_flow(source, key_source)
    return flow, cv2.GaussianBlur(source_agreement(key_source, source, flow), (5, 5), 0)


@stage("in-between")  # its flows count in "flow", a fill's engine call in "engine"
def synthesize(index: int, source: np.ndarray, before: Keyframe, after: Keyframe,
               fill: Callable[[np.ndarray], np.ndarray] | None = None, restore: bool = True,
               cancel: CancelToken | None = None) -> np.ndarray:
    """In-between frame `index` (before.index < index < after.index) of `source`; see the module.
    `cancel` is checked between the flows and between strips (a stale preview stops within ~20 ms)."""
    def check() -> None:
        if cancel is not None and cancel.cancelled:
            raise CancelledError()
    span = after.index - before.index
    if not before.index < index < after.index:
        raise ValueError(f"frame {index} is not between keyframes {before.index} and {after.index}")
    near_a = (after.index - index) / span
    h, w = source.shape[:2]
    small = flow_source(source, (w, h))
    warped_a, conf_a = carry(before, source, small)
    check()
    warped_b, conf_b = carry(after, source, small)
    w_a, w_b = conf_a * np.float32(near_a), conf_b * np.float32(1.0 - near_a)
    total = w_a + w_b
    share_a = w_a / np.maximum(total, np.float32(1e-6))
    seen = np.clip(total * np.float32(1.0 / HOLE), 0.0, 1.0)
    regions = []  # (x0, y0, x1, y1, the engine's pixels there)
    if fill is not None and float((seen < 0.5).mean()) >= FILL_MIN:
        regions = _fill_regions(source, seen < 0.5, fill)
    out = np.empty_like(warped_a)
    height, width = out.shape[:2]
    for y0, y1 in strips(height, width):  # the float work a strip at a time: memory flat in the frame size
        check()
        lo, hi = max(0, y0 - STRIP_HALO), min(height, y1 + STRIP_HALO)
        rows = slice(lo, hi)
        out[y0:y1] = _blend(warped_a[rows], warped_b[rows], share_a[rows], seen[rows], near_a, restore,
                            [(x0, r0 - y0, x1, r1 - y0, pixels) for x0, r0, x1, r1, pixels in regions
                             if r0 < y1 and r1 > y0], (y0 - lo, y1 - lo))
    return out


def strips(height: int, width: int) -> list[tuple[int, int]]:
    """(first row, end row) of the strips a frame's float steps run on: equal, about STRIP_PIXELS each."""
    count = max(1, -(-height * width // STRIP_PIXELS))
    rows = -(-height // count)
    rows += rows % 2  # even: every strip's half-size grid is the whole frame's
    return [(y0, min(height, y0 + rows)) for y0 in range(0, height, rows)]


def _blend(warped_a, warped_b, share_a, seen, near_a: float, restore: bool, regions,
           core: tuple[int, int]) -> np.ndarray:
    """Steps 3-5 of the module on rows of the frame (a halo of context around the `core` rows it returns;
    `regions` in the core's coordinates); uint8 out."""
    # OpenCV's element-wise operations throughout: numpy's broadcasts over HxWx3 floats cost as much as the flow
    a, b = warped_a.astype(np.float32), warped_b.astype(np.float32)
    blended = cv2.blendLinear(a, b, share_a, 1.0 - share_a)
    if restore:
        blended = restore_contrast(blended, a, b, share_a)
    rows = slice(*core)  # only the blurs needed the halo
    blended, a, b, seen = blended[rows], a[rows], b[rows], seen[rows]
    plain = cv2.addWeighted(a, near_a, b, 1.0 - near_a, 0.0)
    for x0, y0, x1, y1, pixels in regions:  # the engine's output where neither keyframe sees
        top, bottom = max(0, y0), min(plain.shape[0], y1)
        plain[top:bottom, x0:x1] = pixels[top - y0:bottom - y0]
    out = cv2.blendLinear(blended, plain, seen, 1.0 - seen)
    return np.clip(out + np.float32(0.5), 0, 255).astype(np.uint8)


def restore_contrast(blended: np.ndarray, a: np.ndarray, b: np.ndarray, share_a: np.ndarray) -> np.ndarray:
    """`blended` (float RGB) with its local detail energy raised to share_a * E(a) + (1 - share_a) * E(b)
    (share_a: HxW float32)."""
    def detail(x):
        return cv2.subtract(x, cv2.GaussianBlur(x, (0, 0), DETAIL_SIGMA))

    def energy(d):  # the blurred sum over the channels of d squared; a smooth field: blurred at half size
        summed = cv2.transform(cv2.multiply(d, d), _CHANNEL_SUM)
        small = cv2.GaussianBlur(cv2.pyrDown(summed), (0, 0), ENERGY_SIGMA_HALF)
        return cv2.pyrUp(small, dstsize=(summed.shape[1], summed.shape[0]))

    d_mix = detail(blended)
    target = cv2.blendLinear(energy(detail(a)), energy(detail(b)), share_a, 1.0 - share_a)
    gain = np.sqrt(target / np.maximum(energy(d_mix), np.float32(1e-3)))
    gain = np.clip(gain, 1.0, MAX_GAIN) - np.float32(1.0)
    return cv2.add(blended, cv2.multiply(d_mix, cv2.merge([gain, gain, gain])))


_CHANNEL_SUM = np.ones((1, 3), np.float32)


def _fill_regions(source: np.ndarray, holes: np.ndarray, fill) -> list:
    """The engine's output (float32) on each cluster of holes' bounding box, margin included."""
    regions = []
    for x0, y0, x1, y1 in hole_boxes(holes):
        region = fill(np.ascontiguousarray(source[y0:y1, x0:x1]))
        if region.shape[:2] == (y1 - y0, x1 - x0):  # an engine that cannot keep the size: no fill
            regions.append((x0, y0, x1, y1, region.astype(np.float32)))
    return regions


def hole_boxes(holes: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) boxes, margin included, around the clusters of hole pixels worth the engine (holes
    closer than the margin join one cluster): at least FILL_MIN of the frame and FILL_DENSITY of the box."""
    h, w = holes.shape
    mask = holes.astype(np.uint8)
    joined = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (FILL_MARGIN + 1, FILL_MARGIN + 1)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    sizes = np.bincount(labels[mask > 0], minlength=count)  # hole pixels (not dilated ones) per cluster
    boxes = []
    for label in range(1, count):
        x, y, bw, bh = (int(v) for v in stats[label, :4])
        if sizes[label] < FILL_MIN * h * w or sizes[label] < FILL_DENSITY * bw * bh:
            continue
        boxes.append((max(0, x - FILL_MARGIN // 2), max(0, y - FILL_MARGIN // 2),
                      min(w, x + bw + FILL_MARGIN // 2), min(h, y + bh + FILL_MARGIN // 2)))
    return boxes


def sharpness(image: np.ndarray) -> float:
    """Mean squared Laplacian of the grey image (0-1): the fine detail a blurry or ghosted blend loses."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
    return float((cv2.Laplacian(grey, cv2.CV_32F) ** 2).mean())
