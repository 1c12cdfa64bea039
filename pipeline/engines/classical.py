"""classical: OpenCV looks and motion-aligned video denoising (pipeline.denoise). No weights, no downloads."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import cv2
import numpy as np

from pipeline.denoise import NoiseModel, clip_noise, denoise_frame, estimate_noise
from pipeline.engines.base import Engine, FrameContext, resize_to
from pipeline.engines.fast_style import _usable_cores, mix


class ClassicalEngine(Engine):
    """Non-photorealistic OpenCV filters, and denoising over a window of neighbouring frames."""

    name = "classical"

    def __init__(self, params):
        super().__init__(params)
        # the denoiser looks at window//2 frames on each side of the current one
        self.temporal_radius = params.denoise_window // 2 if params.look == "denoise" else 0
        self.fills_holes = params.look != "denoise"  # the looks are local filters; the denoiser needs neighbours
        self.noise: NoiseModel | None = None  # the clip's noise, once measure_source() has seen it
        self._noise_lock = threading.Lock()

    @property
    def frame_workers(self) -> int:
        """Denoised frames depend only on their source window: one worker per core."""
        return _usable_cores() if self.params.look == "denoise" else 1

    @contextmanager
    def parallel(self, workers: int):
        """One OpenCV thread per frame worker: the workers already fill the cores."""
        previous = cv2.getNumThreads()
        cv2.setNumThreads(1 if workers > 1 else previous)
        try:
            yield
        finally:
            cv2.setNumThreads(previous)

    def measure_source(self, info) -> None:
        """The denoiser's noise level for this clip (at the output size), estimated once per clip."""
        if self.params.look != "denoise":
            return
        model = clip_noise(info.path, self.output_size(info.width, info.height))
        with self._noise_lock:
            self.noise = self._with_strength(model)

    def _with_strength(self, model: NoiseModel) -> NoiseModel:
        strength = self.params.denoise_strength
        return model if strength is None else model.scaled_to(strength)

    def process(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        ctx.check_cancelled()
        h, w = frame.shape[:2]
        size = self.output_size(w, h)
        source = resize_to(frame, size)
        bgr = np.ascontiguousarray(source[:, :, ::-1])
        look = self.params.look
        if look == "stylization":
            out = cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)
        elif look in ("pencil", "pencil-color"):
            gray, color = cv2.pencilSketch(bgr, sigma_s=60, sigma_r=0.07, shade_factor=0.05)
            out = color if look == "pencil-color" else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        elif look == "cartoon":
            out = _cartoon(bgr)
        elif look == "edge-preserving":
            out = cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4)
        else:
            out = self._denoise(bgr, ctx, size)
        return mix(source, np.ascontiguousarray(out[:, :, ::-1]), self.params.strength)

    def _denoise(self, bgr: np.ndarray, ctx: FrameContext, size: tuple[int, int]) -> np.ndarray:
        """pipeline.denoise over the frames around this one (the window is clamped at the clip's ends)."""
        window = [resize_to(n, size) for n in ctx.neighbors] or [np.ascontiguousarray(bgr[:, :, ::-1])]
        center = ctx.center if ctx.neighbors else 0
        with self._noise_lock:
            noise = self.noise
        if noise is None:  # not told the clip (a bare process() call): this window's own estimate
            noise = self._with_strength(estimate_noise(window))
        return denoise_frame(window, center, noise)[:, :, ::-1]


def _cartoon(bgr: np.ndarray) -> np.ndarray:
    color = bgr
    for _ in range(2):
        color = cv2.bilateralFilter(color, 9, 60, 60)
    gray = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return cv2.bitwise_and(color, color, mask=edges)
