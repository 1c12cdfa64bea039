"""Region masks for content editing: loaded from files, or painted on a few frames and carried along
the source's optical flow to the rest of the range.

A mask is HxW float32 in [0, 1]; 1 (white) is edited, 0 keeps the source. `--mask PATH` gives one mask
for the range (an image) or one per frame (a video or a folder of PNGs, frame i of the range taking
the file's frame i). `--mask-at FRAME:PNG` anchors a painted mask at a frame; MaskTrack carries each
anchor forward and backward along the flow and, between two anchors, blends the two carried masks by
temporal distance, so painting again on a later frame re-anchors the track there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from pipeline.errors import BadInputError
from pipeline.temporal.flow import DIS_PRESET

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TRACK_SIDE = 480  # masks are tracked at most this long a side: flow there is plenty for a soft edge


def read_mask_image(path: str | Path) -> np.ndarray:
    """An image file as a float32 mask: its grey level (or alpha, where it has one and no grey content)."""
    path = Path(path)
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise BadInputError(f"cannot read the mask image {path} (a PNG or JPEG, white where the edit goes)")
    if data.dtype != np.uint8:
        data = (data / (np.iinfo(data.dtype).max / 255.0)).astype(np.uint8)
    if data.ndim == 3 and data.shape[2] == 4:
        grey = cv2.cvtColor(data[:, :, :3], cv2.COLOR_BGR2GRAY)
        alpha = data[:, :, 3]
        data = alpha if grey.max() == grey.min() else np.minimum(grey, alpha)  # painted as opacity, or as white
    elif data.ndim == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2GRAY)
    return data.astype(np.float32) / 255.0


def fit_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The mask at (width, height), stretched if the aspect differs (masks are painted on the frame)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)


def feather(mask: np.ndarray, pixels: float) -> np.ndarray:
    """Soften the mask's edge over about `pixels` (a Gaussian of sigma pixels/2); 0 keeps it as is."""
    if pixels <= 0:
        return mask
    return cv2.GaussianBlur(mask, (0, 0), max(0.3, pixels / 2.0))


def composite(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """edited where the mask is 1, the source where it is 0, mixed in between (in pixel space)."""
    if edited.shape[:2] != source.shape[:2]:
        source = cv2.resize(source, (edited.shape[1], edited.shape[0]), interpolation=cv2.INTER_AREA)
    m = fit_mask(mask, (edited.shape[1], edited.shape[0]))[:, :, None]
    out = edited.astype(np.float32) * m + source.astype(np.float32) * (1.0 - m)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class MaskFile:
    """`--mask PATH`: one image for the whole range, or a video / PNG folder with a mask per frame."""

    def __init__(self, path: str | Path, start: int = 0):
        self.path = Path(path)
        self.start = start
        if not self.path.exists():
            raise BadInputError(f"mask not found: {self.path}")
        self._still: np.ndarray | None = None
        self._files: list[Path] = []
        self._video = None
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise BadInputError(f"the mask folder {self.path} holds no images")
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._still = read_mask_image(self.path)
        else:
            from pipeline.video import VideoReader

            try:
                self._video = VideoReader(self.path)
            except Exception as exc:
                raise BadInputError(f"cannot read the mask {self.path}: an image, a video or a folder of PNGs ({exc})") from None

    def count(self) -> int | None:
        """Masks available (None: one for every frame)."""
        if self._still is not None:
            return None
        return len(self._files) if self._files else self._video.info.frame_count

    def at(self, index: int) -> np.ndarray:
        """The mask for source frame `index` (the file's frame index - start, its last one past its end)."""
        if self._still is not None:
            return self._still
        i = min(max(0, index - self.start), self.count() - 1)
        if self._files:
            return read_mask_image(self._files[i])
        rgb = self._video.frame(i)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0

    def close(self) -> None:
        if self._video is not None:
            self._video.close()


class MaskTrack:
    """Masks painted on some frames (anchors), carried along the source's flow to every frame of a range.

    `load_frame(index)` returns source frame `index` (RGB). Frames are read and flows computed once,
    in a pass over [start, end) at most TRACK_SIDE pixels a side; masks are kept PNG-compressed
    (a few KB each), so memory stays small for long ranges.
    """

    def __init__(self, anchors: dict[int, np.ndarray], start: int, end: int,
                 frames: Callable[[int, int], Iterator[tuple[int, np.ndarray]]]):
        if not anchors:
            raise BadInputError("a tracked mask needs at least one painted frame")
        self.start, self.end = start, end
        self._frames = frames
        self._anchors = dict(sorted(anchors.items()))
        self._masks: dict[int, bytes] | None = None
        self._size: tuple[int, int] | None = None

    def at(self, index: int) -> np.ndarray:
        """The tracked mask of frame `index` (in the range), at the tracking size."""
        if self._masks is None:
            self._track()
        return _unpack(self._masks[index])

    def _track(self) -> None:
        grey: dict[int, bytes] = {}  # the source's grey levels at the tracking size, JPEG-compressed
        lo = min(self.start, *self._anchors)
        hi = max(self.end, max(self._anchors) + 1)
        for index, frame in self._frames(lo, hi):
            if self._size is None:
                h, w = frame.shape[:2]
                scale = min(1.0, TRACK_SIDE / max(w, h))
                self._size = (max(8, round(w * scale)), max(8, round(h * scale)))
            grey[index] = _pack_grey(_small(frame, self._size))
        anchors = {f: fit_mask(m, self._size) for f, m in self._anchors.items()}
        forward = _carry(grey, anchors, lo, hi, step=1)
        backward = _carry(grey, anchors, lo, hi, step=-1)
        keys = sorted(anchors)
        self._masks = {}
        for index in range(self.start, self.end):
            before = [k for k in keys if k <= index]
            after = [k for k in keys if k >= index]
            if before and after:
                a, b = before[-1], after[0]
                t = 0.0 if b == a else (index - a) / (b - a)
                self._masks[index] = _pack((1.0 - t) * _unpack(forward[index]) + t * _unpack(backward[index]))
            else:
                self._masks[index] = forward[index] if before else backward[index]


def _carry(grey: dict[int, bytes], anchors: dict[int, np.ndarray], lo: int, hi: int, step: int) -> dict:
    """Each frame's mask carried from the nearest anchor on the side it comes from (step 1: from
    earlier frames, forward in time; -1: from later frames), re-anchored at every anchor."""
    out: dict[int, np.ndarray] = {}
    order = range(lo, hi) if step == 1 else range(hi - 1, lo - 1, -1)
    current: np.ndarray | None = None
    previous = None
    dis = cv2.DISOpticalFlow_create(DIS_PRESET)  # one instance per pass: DIS is not thread-safe
    for index in order:
        here = _unpack_grey(grey[index])
        if index in anchors:
            current = anchors[index]
        elif current is not None and previous is not None:
            ahead = dis.calc(previous, here, None)  # where the previous frame's pixels went
            current = _move_with(current, ahead)
        if current is not None:
            out[index] = _pack(current)  # compressed: a long range's masks would not fit in memory raw
        previous = here
    return out


def _move_with(mask: np.ndarray, ahead: np.ndarray) -> np.ndarray:
    """The mask moved into the next frame by the motion of what it covers: an affine motion fitted
    (robustly) to the flow inside the mask, away from its edge, where flow is reliable. At the edge
    DIS smooths object and background motion together, and a mask warped pixel by pixel lags and
    shrinks there a little every frame; the fitted motion carries the whole region, edge included."""
    inside = cv2.erode((mask > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    if inside.sum() < 12:
        inside = mask > 0.5
    if inside.sum() < 3:
        return mask
    ys, xs = np.nonzero(inside)
    if len(xs) > 4000:  # a spread sample is plenty for six parameters
        pick = np.linspace(0, len(xs) - 1, 4000).astype(int)
        ys, xs = ys[pick], xs[pick]
    src = np.stack([xs, ys], axis=1).astype(np.float32)
    dst = src + ahead[ys, xs]
    motion, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if motion is None:
        return mask
    h, w = mask.shape
    return cv2.warpAffine(mask, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _small(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _pack_grey(grey: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _unpack_grey(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


def _pack(mask: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return data.tobytes()


def _unpack(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def mask_identity(path: str | Path) -> str:
    """A content hash of a mask file (or every image of a mask folder), for the frame cache key."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        try:
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()[:24]
