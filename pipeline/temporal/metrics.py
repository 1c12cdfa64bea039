"""How much a video flickers, and how far a consistent render strays from the per-frame one.

Warp error (Lai et al. 2018): for each pair of consecutive frames t, t+1, optical flow on the *input*
frames (at the output's size) brings output frame t+1 into frame t's place; the error is the mean
squared RGB difference (RGB in [0, 1], summed over the three channels) over the pixels that are
visible in both frames:

    E(t) = sum_p M(p) * ||O_t(p) - warp(O_t+1, F_t->t+1)(p)||^2 / sum_p M(p)

and the video's score is the mean of E(t) over its pairs. The same measure on the input frames is the
floor (what the flow itself gets wrong). Fidelity compares each output frame with the same frame
stylized alone (the reference): 1 - RMS(O_t - R_t) / RMS(R_t - I_t), so 1 is the per-frame result and a
render that washes the style out towards the source scores lower. See docs/quality.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.engines.base import resize_to
from pipeline.temporal.flow import flow_pair, occlusion_mask, warp


def warp_error(frame: np.ndarray, following: np.ndarray, flow: np.ndarray, visible: np.ndarray) -> float:
    """E(t) for uint8 RGB frames t and t+1, the input flow t -> t+1 and the HxW bool visibility mask."""
    a = frame.astype(np.float32) * (1.0 / 255.0)
    b = warp(following, flow).astype(np.float32) * (1.0 / 255.0)
    weight = visible.astype(np.float64)
    count = weight.sum()
    squared = ((a - b) ** 2).sum(axis=2, dtype=np.float64)
    if count == 0:  # nothing visible: the plain mean over all pixels and channels, as Lai et al. do
        return float(squared.sum() / squared.size / 3)
    return float((squared * weight).sum() / count)


def pair_warp_error(sources: tuple[np.ndarray, np.ndarray], outputs: tuple[np.ndarray, np.ndarray]) -> float:
    """E(t) of the output pair, with the flow and visibility of the source pair (t, t+1) between them."""
    flow, back = flow_pair(*sources)
    return warp_error(*outputs, flow, ~occlusion_mask(flow, back))


def style_fidelity(output: np.ndarray, reference: np.ndarray, source: np.ndarray) -> float:
    """1 - RMS(output - reference) / RMS(reference - source), all uint8 RGB of one size.

    1.0: the output is the per-frame stylization; 0.0: it is as far from it as the source is."""
    out, ref, src = (x.astype(np.float64) for x in (output, reference, source))
    stylization = np.sqrt(((ref - src) ** 2).mean())
    if stylization == 0:
        return 1.0 if np.array_equal(output, reference) else 0.0
    return float(1.0 - np.sqrt(((out - ref) ** 2).mean()) / stylization)


class FlickerMeter:
    """The warp error of a render as its frames arrive, the same number `vdiff metrics` prints.

    add(index, source, output) takes the source frame (any size; resized to the output's) and the
    output frame, both uint8 RGB, in frame order; a pair is measured when `index` follows the
    previously added index (a gap, or going back, starts a new run). Not thread-safe.

    add(..., motion=event.motion) reuses the flow a consistent render computed for that frame
    (FrameReady.motion) instead of computing it again: the pair is then measured at the flow's
    reduced size, which costs a few milliseconds instead of two full-size flows (the score is close
    to, not equal to, the full-size one; docs/benchmarks.md gives the difference).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.output_errors: list[float] = []  # E(t) of the output, one per measured pair
        self.input_errors: list[float] = []  # E(t) of the input: the floor
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None

    def add(self, index: int, source: np.ndarray, output: np.ndarray, motion=None) -> float | None:
        """Add a frame; return the running mean warp error of the output (None before the first pair).

        `motion`: the render's pipeline.temporal.stabilizer.Motion from the previous frame to this one."""
        source = resize_to(source, (output.shape[1], output.shape[0]))
        last = self._last
        self._last = (index, source, output)
        if last is not None and last[0] == index - 1:
            _, previous_source, previous_output = last
            if motion is None:
                flow, back = flow_pair(previous_source, source)
                frames = previous_source, source, previous_output, output
            else:  # the render's flow, at its size
                flow, back = motion.from_previous, motion.to_previous
                frames = [resize_to(f, motion.size) for f in (previous_source, source, previous_output, output)]
            visible = ~occlusion_mask(flow, back)
            self.output_errors.append(warp_error(frames[2], frames[3], flow, visible))
            self.input_errors.append(warp_error(frames[0], frames[1], flow, visible))
        return self.score

    @property
    def pairs(self) -> int:
        return len(self.output_errors)

    @property
    def score(self) -> float | None:
        """Mean warp error of the output over the pairs so far."""
        return _mean(self.output_errors)

    @property
    def floor(self) -> float | None:
        """Mean warp error of the input over the same pairs."""
        return _mean(self.input_errors)

    def to_json(self) -> dict:
        return {
            "pairs": self.pairs,
            "output": self.score,
            "input": self.floor,
            "output_per_pair": list(self.output_errors),
            "input_per_pair": list(self.input_errors),
        }


def _mean(values: list[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def read_frames(path: str | Path, start: int = 0) -> Iterator[np.ndarray]:
    """The RGB frames of a video from `start`, or of a folder of frame_*.png (a `--codec png` render)."""
    import cv2

    from pipeline.video import VideoReader

    path = Path(path)
    if path.is_dir():
        for name in sorted(path.glob("frame_*.png"))[start:]:
            image = cv2.imread(str(name), cv2.IMREAD_COLOR)
            if image is None:
                from pipeline.errors import BadInputError

                raise BadInputError(f"cannot read {name}")
            yield np.ascontiguousarray(image[:, :, ::-1])
        return
    with VideoReader(path) as reader:
        for _, frame in reader.iter_frames(start):
            yield frame


def measure_videos(source: str | Path, output: str | Path, reference: str | Path | None = None, start: int = 0) -> dict:
    """Warp error of `output` and of `source` from frame `start` on (output frame 0 = source frame
    `start`), over as many frames as the shorter has; with `reference` (the per-frame render of the
    same range), the style fidelity of each output frame too."""
    meter = FlickerMeter()
    fidelity = []
    references = read_frames(reference) if reference is not None else None
    size = None
    frames = 0
    for index, (src, out) in enumerate(zip(read_frames(source, start), read_frames(output))):
        size = (out.shape[1], out.shape[0])
        meter.add(index, src, out)
        if references is not None:
            ref = next(references, None)
            if ref is None:
                references = None
            else:
                fidelity.append(style_fidelity(out, resize_to(ref, size), resize_to(src, size)))
        frames += 1
    result = {"frames": frames, "size": list(size) if size else None, "warp_error": meter.to_json()}
    if reference is not None:
        result["fidelity"] = {"mean": _mean(fidelity), "per_frame": fidelity}
    return result
