"""Real-looking footage for benchmarks, quality tests and the first-launch sample.

Generated test patterns flatter temporal measures (smooth gradients hide flicker and warp errors), so
measurements use photographs shipped inside scikit-image (read straight from its data folder, no
skimage import needed) moved along a hand-held camera path: a far layer that pans, zooms and shakes,
a near layer (a cut-out from another photograph) that moves faster across it (parallax) and occludes
it, optional scene cuts, and real noise models (Gaussian, signal-dependent shot noise, film grain).

`footage_frames` yields the clean RGB frames (the ground truth); `make_footage_clip` encodes them,
optionally with noise, to a file through PyAV.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import av
import numpy as np

# (background photograph, cut-out photograph, cut-out box as fractions (x0, y0, x1, y1) of that photo)
SCENES = {
    "astronaut": ("astronaut.png", "coffee.png", (0.25, 0.05, 0.85, 0.75)),
    "cat": ("chelsea.png", "rocket.jpg", (0.25, 0.05, 0.75, 0.95)),
    "street": ("motorcycle_left.png", "chelsea.png", (0.35, 0.15, 0.75, 0.95)),
    "coffee": ("coffee.png", "astronaut.png", (0.3, 0.0, 0.75, 0.55)),
}
NOISE_KINDS = ("gaussian", "shot", "grain")


def photo_path(name: str) -> Path:
    """A photograph shipped in scikit-image's data folder (found without importing scikit-image; in the
    packaged app, the copy build.spec puts beside it)."""
    folders = []
    if getattr(sys, "frozen", False):
        folders.append(Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "skimage" / "data")
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.submodule_search_locations:
        folders.extend(Path(location) / "data" for location in spec.submodule_search_locations)
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"the photograph {name} is not there: install scikit-image (it ships it)")


@lru_cache(maxsize=8)
def load_photo(name: str) -> np.ndarray:
    """The photograph as HxWx3 uint8 RGB (grey photographs are repeated on three channels)."""
    from PIL import Image

    with Image.open(photo_path(name)) as image:
        rgb = np.asarray(image.convert("RGB"))
    rgb.setflags(write=False)
    return rgb


def footage_frames(
    frames: int = 48,
    width: int = 320,
    height: int = 180,
    scene: str = "astronaut",
    cuts: tuple[int, ...] = (),
    seed: int = 0,
    speed: float = 1.0,
) -> Iterator[np.ndarray]:
    """Clean frames of a hand-held shot of `scene`; at each index in `cuts` the shot changes to the
    next scene (a hard cut). `speed` scales the camera and object motion."""
    import cv2

    names = list(SCENES)
    shot = names.index(scene)
    shot_start = 0
    layers = _layers(names[shot], width, height)
    rng = np.random.default_rng(seed)
    shake = rng.normal(size=(4, 3))  # per-shot phase and amplitude jitter of the hand-held path
    for i in range(frames):
        if i in cuts:
            shot = (shot + 1) % len(names)
            shot_start = i
            layers = _layers(names[shot], width, height)
        t = (i - shot_start) * speed
        far, near, alpha = layers
        # far layer: a slow pan with a gentle push-in, a hand-held wobble and a little roll
        zoom = 1.0 + 0.0025 * t
        pan_x = 0.9 * t + 2.0 * math.sin(t / 7.0 + shake[0, 0]) + 0.6 * math.sin(t / 2.3 + shake[0, 1])
        pan_y = 0.25 * t + 1.5 * math.sin(t / 5.0 + shake[1, 0]) + 0.5 * math.sin(t / 1.9 + shake[1, 1])
        roll = 0.3 * math.sin(t / 11.0 + shake[2, 0])
        fh, fw = far.shape[:2]
        centre = (fw / 2 + pan_x - 0.15 * fw, fh / 2 + pan_y - 0.1 * fh)
        m = cv2.getRotationMatrix2D(centre, roll, zoom)
        m[:, 2] += (width / 2 - centre[0], height / 2 - centre[1])
        image = cv2.warpAffine(far, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # near layer: closer to the camera, so it moves about 3x faster, and walks across on its own
        nh, nw = near.shape[:2]
        x = width * 0.95 - (2.8 * t + 1.2 * pan_x) * width / 320
        y = height * 0.55 - nh / 2 + 4.0 * math.sin(t / 6.0) + 1.5 * pan_y
        mn = np.float32([[1, 0, x - nw / 2], [0, 1, y]])
        sprite = cv2.warpAffine(near, mn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cover = cv2.warpAffine(alpha, mn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cover = cover[..., None]
        image = (image * (1.0 - cover) + sprite * cover).astype(np.uint8)
        yield image


@lru_cache(maxsize=8)
def _layers(scene: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The far layer (the background photograph scaled to cover the frame with room to pan) and the
    near layer (a soft-edged elliptical cut-out of the other photograph) with its alpha."""
    import cv2

    back_name, cut_name, box = SCENES[scene]
    back = load_photo(back_name)
    scale = max(1.6 * width / back.shape[1], 1.6 * height / back.shape[0])
    far = cv2.resize(back, (round(back.shape[1] * scale), round(back.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    photo = load_photo(cut_name)
    ph, pw = photo.shape[:2]
    x0, y0, x1, y1 = (round(box[0] * pw), round(box[1] * ph), round(box[2] * pw), round(box[3] * ph))
    cut = photo[y0:y1, x0:x1]
    side = 0.55 * height
    scale = side / cut.shape[0]
    near = cv2.resize(cut, (max(2, round(cut.shape[1] * scale)), max(2, round(side))), interpolation=cv2.INTER_AREA)
    nh, nw = near.shape[:2]
    yy, xx = np.mgrid[0:nh, 0:nw].astype(np.float32)
    r = np.sqrt(((xx - nw / 2) / (nw / 2)) ** 2 + ((yy - nh / 2) / (nh / 2)) ** 2)
    alpha = np.clip((1.0 - r) / 0.08, 0.0, 1.0).astype(np.float32)  # a soft 8% edge, like a real silhouette
    for array in (far, near, alpha):
        array.setflags(write=False)
    return far, near, alpha


def add_noise(frame: np.ndarray, kind: str, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """`frame` with noise of standard deviation `sigma` (in 0-255 units) at mid-grey:
    gaussian: the same everywhere; shot: Poisson-Gaussian camera noise, variance growing with the
    signal (sigma^2 * (0.2 + 1.6 * x)); grain: spatially correlated film grain, stronger in the mid-tones."""
    import cv2

    x = frame.astype(np.float32)
    if kind == "gaussian":
        noise = rng.normal(0.0, sigma, x.shape)
    elif kind == "shot":
        level = x / 255.0
        noise = rng.normal(0.0, 1.0, x.shape) * sigma * np.sqrt(0.2 + 1.6 * level)
    elif kind == "grain":
        white = rng.normal(0.0, 1.0, x.shape[:2]).astype(np.float32)
        grain = cv2.GaussianBlur(white, (0, 0), 0.8)
        grain *= 1.0 / max(1e-6, float(grain.std()))
        level = x.mean(axis=2, keepdims=True) / 255.0
        noise = grain[..., None] * sigma * (0.5 + 2.0 * level * (1.0 - level)) + rng.normal(0.0, 0.3 * sigma, x.shape)
    else:
        raise ValueError(f"unknown noise kind '{kind}'; choose one of {', '.join(NOISE_KINDS)}")
    return np.clip(x + noise, 0, 255).round().astype(np.uint8)


def make_footage_clip(
    path: str | Path,
    frames: int = 48,
    width: int = 320,
    height: int = 180,
    fps: Fraction | int | str = 24,
    scene: str = "astronaut",
    cuts: tuple[int, ...] = (),
    noise: str | None = None,
    sigma: float = 0.0,
    seed: int = 0,
    audio: bool = True,
    codec: str = "libx264",
    crf: int = 14,
    gop: int | None = None,
    speed: float = 1.0,
) -> Path:
    """Encode `footage_frames(...)` (with `noise` at `sigma` if given) to `path`, with a tone as audio.

    codec "libx264rgb" with crf 0 (or "ffv1") stores the frames losslessly, for measurements against
    the clean frames; `gop` sets the keyframe interval in frames (default: the encoder's).
    """
    from pipeline.sample import _write_tone

    path = Path(path)
    fps = Fraction(fps)
    rng = np.random.default_rng(seed + 1)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = {"libx264rgb": "rgb24", "ffv1": "bgr0"}.get(codec, "yuv420p")
        options = {}
        if codec in ("libx264", "libx265", "libx264rgb"):
            options = {"crf": str(crf), "preset": "ultrafast" if crf == 0 else "veryfast"}
        if gop:
            options["g"] = str(gop)
            options["keyint_min"] = str(gop)
        video.options = options
        sound = container.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for image in footage_frames(frames, width, height, scene, cuts, seed, speed):
            if noise:
                image = add_noise(image, noise, sigma, rng)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, frames / float(fps))
    return path


def moving_object_frames(frames: int = 60, width: int = 320, height: int = 180,
                         seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, true mask) pairs: a round cut-out of one photograph moving along a curve over another
    photograph that the camera pans across; the mask (HxW float32, 1 on the object) is exact, for
    measuring how well a tracked mask follows the object."""
    import cv2

    back = load_photo("astronaut.png")
    scale = height / back.shape[0]
    far = cv2.resize(back, (max(width * 2, round(back.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    radius = max(6, height // 6)
    side = 2 * radius
    thing = cv2.resize(load_photo("coffee.png"), (side, side), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    phase = float(rng.uniform(0, math.pi))
    for i in range(frames):
        x0 = min(i, far.shape[1] - width)  # the camera pans a pixel a frame
        image = far[:, x0 : x0 + width].copy()
        cx = round(radius + 5 + (width - 2 * radius - 10) * i / max(1, frames - 1))
        cy = round(height / 2 + height / 6 * math.sin(i / 9.0 + phase))
        mask = np.zeros((height, width), np.float32)
        cv2.circle(mask, (cx, cy), radius, 1.0, -1)
        sprite = np.zeros_like(image)
        ys, xs = slice(max(0, cy - radius), min(height, cy + radius)), slice(max(0, cx - radius), min(width, cx + radius))
        sprite[ys, xs] = thing[ys.start - (cy - radius) : ys.stop - (cy - radius), xs.start - (cx - radius) : xs.stop - (cx - radius)]
        image = np.where(mask[:, :, None] > 0, sprite, image)
        yield image, mask


def write_frames(path: str | Path, images, fps: Fraction | int = 24, codec: str = "libx264rgb", crf: int = 0) -> Path:
    """Encode RGB frames to `path` (default: lossless RGB H.264), no audio."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        video = None
        for image in images:
            if video is None:
                video = container.add_stream(codec, rate=Fraction(fps))
                video.height, video.width = image.shape[:2]
                video.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
                video.options = {"crf": str(crf), "preset": "ultrafast"}
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        if video is not None:
            for packet in video.encode():
                container.mux(packet)
    return path
