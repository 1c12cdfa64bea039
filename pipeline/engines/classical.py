"""classical: OpenCV looks and temporal video denoising. No weights, no downloads."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.engines.base import Engine, FrameContext, resize_to
from pipeline.engines.fast_style import mix


class ClassicalEngine(Engine):
    """Non-photorealistic OpenCV filters, and denoising over a window of neighbouring frames."""

    name = "classical"

    def __init__(self, params):
        super().__init__(params)
        # the denoiser looks at window//2 frames on each side of the current one
        self.temporal_radius = params.denoise_window // 2 if params.look == "denoise" else 0

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
        """fastNlMeansDenoisingColoredMulti over the frames around this one (odd window, clamped at the ends)."""
        window = [np.ascontiguousarray(resize_to(n, size)[:, :, ::-1]) for n in ctx.neighbors]
        # the window is clamped at the clip's ends; OpenCV wants it odd and centred on this frame
        reach = min(ctx.center, len(window) - 1 - ctx.center) if window else 0
        if reach < 1:
            return cv2.fastNlMeansDenoisingColored(bgr, None, 6, 6, 7, 21)
        return cv2.fastNlMeansDenoisingColoredMulti(window, ctx.center, 2 * reach + 1, None, 6, 6, 7, 21)


def _cartoon(bgr: np.ndarray) -> np.ndarray:
    color = bgr
    for _ in range(2):
        color = cv2.bilateralFilter(color, 9, 60, 60)
    gray = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return cv2.bitwise_and(color, color, mask=edges)
