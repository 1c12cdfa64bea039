"""The temporal stage: neighbouring frames brought onto the current one along the optical flow, and
averaged with a weight per pixel that falls where the alignment failed.

The flow is OpenCV's DIS, computed on a smoothed grey copy of the frames (so noise does not read as
motion) and, for large frames, at reduced resolution. A warped neighbour is trusted at a pixel when the
mean squared difference over a 5x5 patch (all channels) to the current frame is what the noise alone
explains; where it is larger (an occlusion, a flow error at a moving edge) its weight falls off fast,
so the average keeps only the current frame there and nothing ghosts. The result carries a map of its
remaining noise variance, which the spatial stage uses.
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_MAX_SIDE = 360  # the flow is computed at most this large (longest side), then scaled up
PATCH = 5  # side of the patch the alignment error is measured over
# how fast a neighbour's weight falls once its alignment error exceeds the noise (in units of the
# noise-only error): w = exp(-excess / TOLERANCE)
TOLERANCE = 0.35
_CHANNEL_MEAN = np.full((1, 3), 1.0 / 3.0, np.float32)


def flow_guide(image: np.ndarray, sigma: float) -> np.ndarray:
    """The uint8 grey image the flow is computed on: the luma, smoothed more the noisier the clip."""
    grey = image[:, :, 0] if image.ndim == 3 else image
    blur = 0.6 + sigma / 15.0
    smooth = cv2.GaussianBlur(grey, (0, 0), blur)
    return np.clip(smooth, 0, 255).astype(np.uint8)


def flow_to(guide: np.ndarray, neighbour_guide: np.ndarray, dis: cv2.DISOpticalFlow) -> np.ndarray:
    """HxWx2 flow f with current(p) ~ neighbour(p + f(p)), computed at reduced size for large frames."""
    h, w = guide.shape
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    if scale >= 1.0:
        return dis.calc(guide, neighbour_guide, None)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = dis.calc(cv2.resize(guide, size, interpolation=cv2.INTER_AREA),
                     cv2.resize(neighbour_guide, size, interpolation=cv2.INTER_AREA), None)
    flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    flow[:, :, 0] *= w / size[0]
    flow[:, :, 1] *= h / size[1]
    return flow


def warp_along(image: np.ndarray, flow: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`image` sampled at p + flow(p) (bicubic; outside the frame: the nearest border pixel)."""
    return cv2.remap(image, grid[0] + flow[:, :, 0], grid[1] + flow[:, :, 1], cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REPLICATE)


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def alignment_weight(current: np.ndarray, warped: np.ndarray, variance: float,
                     reference_variance: float | None = None) -> np.ndarray:
    """HxW weight in (0, 1] of a warped neighbour: 1 where its patch differs from the current frame's
    by no more than noise, falling off where the alignment failed.

    `variance` is the noise variance of one frame; `reference_variance` that of `current` when it is
    already denoised (then the difference carries less noise than two noisy frames' would).
    """
    diff = cv2.subtract(warped, current)
    error = cv2.blur(cv2.transform(cv2.multiply(diff, diff), _CHANNEL_MEAN), (PATCH, PATCH))
    expected = variance + (variance if reference_variance is None else reference_variance)
    excess = np.maximum(error / max(expected, 1e-6) - 1.0, 0.0)
    return np.exp(-excess / TOLERANCE).astype(np.float32)


def combine(current: np.ndarray, warped: list[np.ndarray], weights: list[np.ndarray], variance: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean of the current frame (weight 1) and its warped neighbours, and the HxW
    variance of the noise left in it."""
    total = current.copy()
    norm = np.ones(current.shape[:2], np.float32)
    squares = np.ones(current.shape[:2], np.float32)
    for image, weight in zip(warped, weights):
        total += image * weight[:, :, None]
        norm += weight
        squares += weight * weight
    mean = total / norm[:, :, None]
    return mean, (variance * squares / (norm * norm)).astype(np.float32)
