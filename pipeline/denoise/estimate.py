"""How noisy a clip is: a noise-level function estimated from its frames, and the transform that makes
that noise uniform.

Camera noise and film grain are signal-dependent: their variance grows with the brightness. The model
here is the Poisson-Gaussian one, variance(x) = a + b * x at intensity x (0-255 levels, per RGB
channel), which covers Gaussian noise (b = 0) and shot noise. It is estimated from a high-pass residual
(Immerkaer's 3x3 mask, which cancels any locally linear signal) on the flattest pixels of each
brightness band, with a robust spread (MAD), then fitted by weighted least squares.

`stabilize` applies the generalised Anscombe transform f(x) = 2 s / b * (sqrt(b x + a) - sqrt(a)), after which the
noise has the same deviation s (the model's deviation at mid-grey) at every brightness, so the
denoiser can treat it as Gaussian; `unstabilize` inverts it with the first-order bias correction.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

MID_GREY = 128.0
# Immerkaer (1996): the response to a locally linear image is 0; for white noise its deviation is 6 sigma
_RESIDUAL_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0
_BANDS = 12  # brightness bands for the noise-level function
_FLATTEST = 0.3  # share of each band's pixels (the flattest) the spread is measured on
_MIN_SAMPLES = 400  # fewer pixels than this in a band: the band is not used


@dataclass(frozen=True)
class NoiseModel:
    """Noise variance a + b * x at intensity x (0-255 levels, each RGB channel)."""

    a: float
    b: float = 0.0

    @classmethod
    def uniform(cls, sigma: float) -> "NoiseModel":
        return cls(a=float(sigma) ** 2, b=0.0)

    def sigma_at(self, level: float = MID_GREY) -> float:
        return math.sqrt(max(self.a + self.b * level, 0.0))

    @property
    def sigma(self) -> float:
        """The deviation at mid-grey: the one number shown to the user and set by --denoise-strength."""
        return self.sigma_at(MID_GREY)

    @property
    def signal_dependent(self) -> bool:
        """Whether the deviation differs by more than 15% between shadows and highlights."""
        low, high = self.sigma_at(32.0), self.sigma_at(224.0)
        return high > 1.15 * max(low, 1e-6) or low > 1.15 * max(high, 1e-6)

    def scaled_to(self, sigma: float) -> "NoiseModel":
        """The same dependence on brightness with deviation `sigma` at mid-grey."""
        if self.sigma <= 1e-6:
            return NoiseModel.uniform(sigma)
        k = (sigma / self.sigma) ** 2
        return NoiseModel(self.a * k, self.b * k)

    def describe(self) -> str:
        text = f"noise σ {self.sigma:.1f}"
        if self.signal_dependent:
            text += f" (signal-dependent: {self.sigma_at(32.0):.1f} in shadows, {self.sigma_at(224.0):.1f} in highlights)"
        return text

    # the variance-stabilising transform
    def _floor(self) -> float:
        return max(self.a, 1e-2 * max(self.sigma, 1e-3) ** 2)  # keeps sqrt(b x + a) > 0 at x = 0

    def _is_uniform(self) -> bool:
        return self.b * 255.0 < 0.02 * self._floor()

    def stabilize(self, x: np.ndarray) -> np.ndarray:
        """float32 image in which the noise deviation is `self.sigma` everywhere."""
        if self._is_uniform():
            return x.astype(np.float32)
        if x.dtype == np.uint8:  # a table of the 256 levels is faster than the square root
            return self._table()[x]
        return self._forward(x.astype(np.float32))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        # minus f(0): the result stays in about the input's range (the flow is computed on it)
        s, a, b = self.sigma, self._floor(), self.b
        return ((2.0 * s / b) * (np.sqrt(np.maximum(b * x + a, 0.0)) - math.sqrt(a))).astype(np.float32)

    def _table(self) -> np.ndarray:
        table = self.__dict__.get("_levels")
        if table is None:
            table = self._forward(np.arange(256, dtype=np.float32))
            object.__setattr__(self, "_levels", table)  # a cache on a frozen dataclass
        return table

    def unstabilize(self, y: np.ndarray) -> np.ndarray:
        """The inverse of `stabilize` for a denoised image (with the bias of averaging in the
        transformed domain removed: about b / 4 levels)."""
        if self._is_uniform():
            return y
        s, a, b = self.sigma, self._floor(), self.b
        root = np.maximum(y.astype(np.float64) * (b / (2.0 * s)) + math.sqrt(a), 0.0)
        return ((root * root - a) / b + b / 4.0).astype(np.float32)


def estimate_noise(frames: Iterable[np.ndarray]) -> NoiseModel:
    """The noise-level function of HxWx3 uint8 RGB frames (of one clip), pooled over all of them."""
    levels, residuals = [], []
    for frame in frames:
        level_score, residual = _samples(frame)
        levels.append(level_score)
        residuals.append(residual)
    if not levels:
        return NoiseModel.uniform(0.0)
    return _fit(np.concatenate(levels, axis=1), np.concatenate(residuals))


SAMPLE_FRAMES = 8  # frames of a clip the estimate pools, evenly spaced
_SAMPLES_PER_FRAME = 300_000  # more pixels than this in a frame: a regular subset of them
_clip_estimates: dict[tuple, NoiseModel] = {}
_clip_lock = threading.Lock()


def clip_noise(path: str | Path, size: tuple[int, int] | None = None) -> NoiseModel:
    """The noise-level function of the clip at `path`, from SAMPLE_FRAMES frames spread over it, at
    the (width, height) `size` the frames are denoised at (None: the source's). Remembered per file
    and size for the process's lifetime, so a render, its previews and the app's display agree."""
    from pipeline.engines.base import resize_to
    from pipeline.video import VideoReader

    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, size)
    with _clip_lock:
        if key in _clip_estimates:
            return _clip_estimates[key]
    with VideoReader(path) as reader:
        count = reader.info.frame_count
        picks = sorted({round(i * (count - 1) / max(1, SAMPLE_FRAMES - 1)) for i in range(min(SAMPLE_FRAMES, count))})
        frames = [reader.frame(i) for i in picks]
    if size is not None:
        frames = [resize_to(f, size) for f in frames]
    model = estimate_noise(frames)
    with _clip_lock:
        _clip_estimates[key] = model
    return model


def _samples(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, N) local mean and flatness score, and (N,) high-pass residual, of N interior pixels of
    every channel of `frame`."""
    x = frame.astype(np.float32)
    level = cv2.blur(x, (5, 5))
    residual = cv2.filter2D(x, -1, _RESIDUAL_MASK, borderType=cv2.BORDER_REFLECT)
    # flatness: the gradient of a smoothed copy, which the high-frequency residual hardly depends on
    smooth = cv2.GaussianBlur(x, (0, 0), 1.5)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    score = cv2.blur(gx * gx + gy * gy, (5, 5))
    inner = (slice(3, -3), slice(3, -3))
    level, residual, score = level[inner].ravel(), residual[inner].ravel(), score[inner].ravel()
    every = max(1, level.size // _SAMPLES_PER_FRAME)
    return np.stack([level[::every], score[::every]]), residual[::every]


def _fit(level_score: np.ndarray, residual: np.ndarray) -> NoiseModel:
    level, score = level_score
    band = np.minimum((level * (_BANDS / 256.0)).astype(np.int32), _BANDS - 1)
    centres, variances, counts = [], [], []
    for k in range(_BANDS):
        inside = np.flatnonzero(band == k)
        if inside.size < _MIN_SAMPLES / _FLATTEST:
            continue
        count = int(inside.size * _FLATTEST)
        flattest = inside[np.argpartition(score[inside], count)[:count]]
        spread = 1.4826 * np.median(np.abs(residual[flattest]))
        centres.append(float(np.mean(level[flattest])))
        variances.append(float(spread) ** 2)
        counts.append(flattest.size)
    if not centres:
        return NoiseModel.uniform(0.0)
    centres, variances, counts = map(np.asarray, (centres, variances, counts))
    # bands near black and white are clipped (less variance than the model): fit on the middle ones
    sigma_guess = math.sqrt(float(np.median(variances)))
    usable = (centres > 1.5 * sigma_guess) & (centres < 255.0 - 1.5 * sigma_guess)
    if usable.sum() >= 1:
        centres, variances, counts = centres[usable], variances[usable], counts[usable]
    if len(centres) < 3 or np.ptp(centres) < 48.0:
        return NoiseModel.uniform(math.sqrt(float(np.average(variances, weights=counts))))
    # weighted least squares on the variance; the weight also falls with the variance (its error grows)
    weights = counts / np.maximum(variances, 1e-3) ** 2
    design = np.stack([np.ones_like(centres), centres], axis=1)
    wd = design * weights[:, None]
    a, b = np.linalg.lstsq(design.T @ wd, wd.T @ variances, rcond=None)[0]
    if b <= 0.0:  # brighter is not noisier: a uniform level
        return NoiseModel.uniform(math.sqrt(float(np.average(variances, weights=counts))))
    if a < 0.0:  # pure shot noise, or a fit through zero
        a = 0.0
    model = NoiseModel(float(a), float(b))
    if not model.signal_dependent:  # within the estimate's own spread: call it uniform
        return NoiseModel.uniform(model.sigma)
    return model
