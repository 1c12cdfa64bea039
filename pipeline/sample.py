"""Generated sample clips: the first-launch demo, the tests and the benchmarks all use these."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_sample_clip(
    path: str | Path,
    frames: int = 48,
    width: int = 320,
    height: int = 180,
    fps: Fraction | int | str = 24,
    audio: bool = True,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    vfr: bool = False,
) -> Path:
    """Write a clip of a textured background panning right with two moving shapes and a sine tone.

    Every frame differs, so tests can tell frames apart; the pan and the shapes give optical flow and
    occlusions for temporal-consistency measures. `vfr` spaces the frames unevenly (1 or 2 ticks).
    """
    path = Path(path)
    fps = Fraction(fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if codec in ("libx264", "libx265"):
            video.options = {"crf": "12", "preset": "ultrafast"}
        if rotation:
            video.set_display_rotation(rotation)
        tick = Fraction(1, fps.numerator) * fps.denominator / 2 if vfr else 1 / fps
        if vfr:
            video.codec_context.time_base = tick
        sound = container.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
        background = _background(width * 2, height)
        pts = 0
        for i in range(frames):
            image = render_sample_frame(background, i, frames, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if vfr:
                frame.pts = pts
                frame.time_base = tick
                pts += 1 + (i % 3 == 0)  # uneven steps: 1 or 2 ticks
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            seconds = float(pts * tick) if vfr else frames / float(fps)
            _write_tone(container, sound, seconds)
    return path


def _background(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 11.0) * np.cos(y / 17.0)
    g = 128 + 90 * np.sin((x + y) / 23.0)
    b = 110 + 80 * np.cos(x / 31.0 - y / 13.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def render_sample_frame(background: np.ndarray, i: int, frames: int, width: int, height: int) -> np.ndarray:
    """Frame i: the background shifted by 2 px a frame, a moving disc and a bouncing square."""
    import cv2

    shift = (2 * i) % (background.shape[1] - width + 1)
    image = np.ascontiguousarray(background[:, shift : shift + width])
    cx = int(width * (0.2 + 0.6 * i / max(1, frames - 1)))
    cy = int(height * (0.5 + 0.25 * math.sin(i / 5.0)))
    cv2.circle(image, (cx, cy), max(4, height // 8), (240, 60, 40), -1)
    sx = int(width * 0.7 - width * 0.4 * i / max(1, frames - 1))
    sy = int(height * 0.25)
    side = max(4, height // 6)
    cv2.rectangle(image, (sx, sy), (sx + side, sy + side), (30, 200, 240), -1)
    return image


def _write_tone(container, stream, seconds: float, hz: float = 440.0) -> None:
    rate = stream.codec_context.sample_rate
    total = int(seconds * rate)
    t = np.arange(total, dtype=np.float32) / rate
    samples = (0.3 * np.sin(2 * math.pi * hz * t)).astype(np.float32)
    chunk = 1024
    for start in range(0, total, chunk):
        block = samples[start : start + chunk][None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
