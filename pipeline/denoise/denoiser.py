"""The video denoiser: one frame denoised from the window of frames around it.

Steps for each frame:
1. stabilise: the noise-level function's variance-stabilising transform makes signal-dependent noise
   uniform (deviation `sigma` everywhere), then an orthonormal opponent-colour transform (luma and two
   chroma channels; the noise stays white and of the same deviation, the chroma becomes smooth).
2. temporal (pipeline.denoise.temporal): neighbours warped along the optical flow, averaged with
   per-pixel weights from their alignment error.
3. spatial (pipeline.denoise.spatial): DCT-block hard thresholding of that average, with the noise it
   has left at each pixel: the basic estimate.
4. refine: the neighbours' weights measured again against the basic estimate (a clean reference tells
   noise from misalignment far better), a new average, and Wiener shrinkage of its luma against the
   basic estimate.
5. back to RGB and through the inverse transform.

A frame's result depends only on the source frames of its window, so frames can be denoised in any
order and in parallel threads (nothing here keeps state between calls).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from pipeline.denoise import spatial, temporal
from pipeline.denoise.estimate import NoiseModel

# orthonormal RGB -> (luma, red-blue, green-magenta): white noise keeps its deviation in each channel
_OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], np.float32)
_OPPONENT /= np.linalg.norm(_OPPONENT, axis=1, keepdims=True)
_LUMA_TO_GREY = 1.0 / np.sqrt(3.0)  # the luma row above is (r + g + b) / sqrt(3)
_local = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    """One DIS instance per thread (they are not thread-safe)."""
    if getattr(_local, "dis", None) is None:
        _local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    return _local.dis


def denoise_frame(frames: list[np.ndarray], center: int, noise: NoiseModel, refine: bool = True,
                  step: int = 4) -> np.ndarray:
    """Denoise frames[center] (HxWx3 uint8 RGB) using the other frames of the window.

    `noise` is the clip's noise-level function (or the user's strength); `refine` adds step 4;
    `step` is the spacing of the spatial stage's block grid (1: every position, best and slowest).
    """
    sigma = noise.sigma
    if sigma <= 0.05:
        return frames[center]
    variance = sigma * sigma
    # 1. stabilise
    stacks = [cv2.transform(noise.stabilize(f), _OPPONENT) for f in frames]
    current = stacks[center]
    h, w = current.shape[:2]
    # 2. temporal
    guides = [temporal.flow_guide(s[:, :, 0] * _LUMA_TO_GREY, sigma) for s in stacks]
    grid = temporal.pixel_grid(h, w)
    dis = _dis()
    warped = [temporal.warp_along(s, temporal.flow_to(guides[center], guides[i], dis), grid)
              for i, s in enumerate(stacks) if i != center]
    weights = [temporal.alignment_weight(current, image, variance) for image in warped]
    mean, left = temporal.combine(current, warped, weights, variance)
    # 3. spatial: the basic estimate
    basic = spatial.shrink(_planes(mean), left, step=step)
    result = basic
    if refine:
        # 4. refine against the basic estimate
        if warped:
            reference = _interleaved(basic)
            weights = [temporal.alignment_weight(reference, image, variance, reference_variance=0.0) for image in warped]
            mean, left = temporal.combine(current, warped, weights, variance)
        # the luma only: the chroma is smooth, and its Wiener step measured +0.07 dB for 15% more time
        result = basic.copy()
        result[:1] = spatial.shrink(_planes(mean)[:1], left, basic[:1], step=step)
    # 5. back to RGB
    rgb = noise.unstabilize(cv2.transform(_interleaved(result), _OPPONENT.T))
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _planes(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def _interleaved(planes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(planes.transpose(1, 2, 0))
