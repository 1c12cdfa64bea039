"""The spatial stage: shrinkage of overlapping 8x8 blocks in the DCT domain, with a noise level per pixel.

Each block on a grid (every `step` pixels, step dividing 8) is transformed with a 2-D DCT; its
coefficients are either hard-thresholded at 2.7 sigma (the basic estimate) or Wiener-shrunk against a
pilot image's coefficients (the final estimate), as in BM3D's two steps, without the block matching:
the temporal stage already put the similar pixels of neighbouring frames on top of each other. The
blocks are put back with BM3D's aggregation weights (blocks with fewer surviving coefficients count
more).

The noise level comes as a variance map, because after the temporal stage it differs from pixel to
pixel (more frames agreed here than at a moving edge). All of it is matrix products over the blocks of
all channels at once, and the blocks are put back tile by tile (step x step tiles, (8 / step)^2 adds),
so there is no Python loop over blocks or pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BLOCK = 8
HARD_THRESHOLD = 2.7  # in noise deviations; BM3D's value for its hard-thresholding step
STRIP_PIXELS = 1 << 18  # larger images are shrunk in strips of about this many pixels (~40 MB of blocks)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.astype(np.float32)


_DCT = _dct_matrix(BLOCK)


def _pad(image: np.ndarray, step: int) -> np.ndarray:
    """Reflect-pad the last two axes by 8 - step, and to a multiple of step, so that the blocks of
    the step grid cover every pixel of the image the same number of times."""
    h, w = image.shape[-2:]
    margin = BLOCK - step
    extra_h, extra_w = (-h) % step, (-w) % step
    pads = [(0, 0)] * (image.ndim - 2) + [(margin, margin + extra_h), (margin, margin + extra_w)]
    return np.pad(image, pads, mode="reflect")


def _blocks(padded: np.ndarray, step: int) -> np.ndarray:
    """(C, ny * nx, 64) the blocks of the step grid of a (C, H, W) padded image, as rows."""
    view = sliding_window_view(padded, (BLOCK, BLOCK), axis=(1, 2))[:, ::step, ::step]
    c, ny, nx = view.shape[:3]
    return np.ascontiguousarray(view).reshape(c, ny * nx, BLOCK * BLOCK)


def _transform(rows: np.ndarray, inverse: bool = False) -> np.ndarray:
    """The 2-D DCT (or its inverse) of each 64-row, separably: along the block's rows, then its columns.
    Coefficient k * 8 + l is horizontal frequency k, vertical l; 0 is the block's mean."""
    c, n, _ = rows.shape
    m = c * n
    matrix = _DCT if inverse else _DCT.T
    # cv2.gemm follows cv2.setNumThreads, which the engine pins to one thread per frame worker
    half = cv2.gemm(rows.reshape(m * BLOCK, BLOCK), matrix, 1.0, None, 0.0)
    half = np.ascontiguousarray(half.reshape(m, BLOCK, BLOCK).transpose(0, 2, 1)).reshape(m * BLOCK, BLOCK)
    return cv2.gemm(half, matrix, 1.0, None, 0.0).reshape(c, n, BLOCK * BLOCK)


def _put_back(rows: np.ndarray, weights: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    """The weighted mean of the overlapping blocks (C, ny * nx, 64) at each pixel of the padded image."""
    hp, wp = shape
    ty, tx = hp // step, wp // step  # tiles of step x step pixels
    k = BLOCK // step
    c = rows.shape[0]
    ny, nx = ty - k + 1, tx - k + 1
    blocks = (rows * weights[:, :, None]).reshape(c, ny, nx, k, step, k, step)
    total = np.zeros((c, ty, tx, step, step), np.float32)
    norm = np.zeros((c, ty, tx), np.float32)
    w = weights.reshape(c, ny, nx)
    for a in range(k):
        for b in range(k):
            total[:, a:a + ny, b:b + nx] += blocks[:, :, :, a, :, b, :]
            norm[:, a:a + ny, b:b + nx] += w
    mean = total / np.maximum(norm, 1e-12)[:, :, :, None, None]
    return mean.transpose(0, 1, 3, 2, 4).reshape(c, hp, wp)


def shrink(image: np.ndarray, variance: np.ndarray, pilot: np.ndarray | None = None, step: int = 4,
           strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """Denoise a float32 (C, H, W) image whose noise has the per-pixel `variance` (HxW) in every channel.

    Without `pilot`: hard thresholding (the basic estimate). With `pilot` (a first denoised estimate
    of the same image): empirical Wiener shrinkage, which keeps more of the fine detail. Large images
    go in horizontal strips (memory stays bounded); the result is the same as in one piece.
    """
    if BLOCK % step:
        raise ValueError(f"the block grid's step must divide {BLOCK}, got {step}")
    _, h, w = image.shape
    rows = max(4 * BLOCK, strip_pixels // max(w, 1)) // step * step
    if h <= rows + 2 * BLOCK:
        return _shrink(image, variance, pilot, step)
    out = np.empty_like(image)
    for top in range(0, h, rows):
        # BLOCK rows of context on each side: every block touching the kept rows lies inside the strip
        bottom = min(h, top + rows)
        lo, hi = max(0, top - BLOCK), min(h, bottom + BLOCK)
        part = _shrink(image[:, lo:hi], variance[lo:hi], None if pilot is None else pilot[:, lo:hi], step)
        out[:, top:bottom] = part[:, top - lo: bottom - lo]
    return out


def _shrink(image: np.ndarray, variance: np.ndarray, pilot: np.ndarray | None, step: int) -> np.ndarray:
    _, h, w = image.shape
    padded = _pad(image, step)
    coef = _transform(_blocks(padded, step))
    # the mean noise variance over each block
    block_var = cv2.blur(_pad(variance, step), (BLOCK, BLOCK), anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    noise = block_var[: padded.shape[1] - BLOCK + 1: step, : padded.shape[2] - BLOCK + 1: step].reshape(1, -1, 1)
    if pilot is None:
        keep = coef * coef > (HARD_THRESHOLD * HARD_THRESHOLD) * noise
        keep[:, :, 0] = True  # the block's mean is never thresholded
        coef *= keep
        weights = 1.0 / (noise[:, :, 0] * np.count_nonzero(keep, axis=2) + 1e-6)
    else:
        reference = _transform(_blocks(_pad(pilot, step), step))
        power = reference * reference
        gain = power / (power + noise)
        coef *= gain
        weights = 1.0 / (noise[:, :, 0] * np.einsum("cnk,cnk->cn", gain, gain) + 1e-6)
    out = _put_back(_transform(coef, inverse=True), weights.astype(np.float32), padded.shape[1:], step)
    margin = BLOCK - step
    return out[:, margin:margin + h, margin:margin + w]
