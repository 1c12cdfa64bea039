"""The one small interface every engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pipeline.errors import CancelledError
from pipeline.events import CancelToken
from pipeline.profile import stage
from pipeline.request import StyleParams


@dataclass
class FrameContext:
    """What an engine gets with each frame besides the pixels."""

    index: int  # frame index in the source
    cancel: CancelToken = field(default_factory=CancelToken)
    on_step: Callable[[int, int], None] | None = None  # (step, steps), per denoising step
    # frames around `index` (index - radius .. index + radius, clamped to the clip) for temporal engines
    neighbors: list[np.ndarray] = field(default_factory=list)
    center: int = 0  # position of this frame in `neighbors`
    # set by the render's temporal stabilizer (pipeline.temporal) for engines that start from an image
    init: np.ndarray | None = None  # flow-propagated image to start from instead of the frame
    strength: float | None = None  # the strength to use with `init` instead of params.strength
    references: list[np.ndarray] = field(default_factory=list)  # stylized anchor (and previous) frame
    # set by the render for region edits (pipeline.editing): HxW float32 at the output size, 1 = edited
    mask: np.ndarray | None = None
    masked_source: np.ndarray | None = None  # the source frame at the output size, with a mask (the init may differ)

    def check_cancelled(self) -> None:
        if self.cancel.cancelled:
            raise CancelledError()

    def report_step(self, step: int, steps: int) -> None:
        self.check_cancelled()
        if self.on_step is not None:
            self.on_step(step, steps)


class Engine(ABC):
    """Turns source frames (HxWx3 uint8 RGB) into stylized frames.

    Lifecycle: construct (cheap, validates), prepare() once (loads weights, computes style vectors or
    prompt embeddings), process() per frame, close(). Not thread-safe: one thread owns an engine.
    """

    name: str = ""
    temporal_radius: int = 0  # neighbours needed on each side of a frame
    # process() on a crop gives the whole frame's output there (a pixel-local look): keyframe in-betweens may
    # then run it on what neither keyframe sees (pipeline.keyframes.synth); a network's crop would flicker
    fills_holes: bool = False
    # a frame at a quarter of a view's pixels costs tens of milliseconds: the app shows one while scrubbing,
    # before the exact preview (which may need two keyframes)
    draft_previews: bool = False
    # a view-size keyframe costs a fraction of a second: the app renders preview frames around the playhead
    # while idle (pipeline.keyframes.preview.prepare_near); a diffusion model would keep the GPU busy for nothing
    prepares_previews: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for method in ("process", "process_batch"):  # every engine's frames count as the "engine" stage
            if method in cls.__dict__:
                setattr(cls, method, stage("engine")(cls.__dict__[method]))

    def __init__(self, params: StyleParams):
        self.params = params
        self.device = "cpu"

    def prepare(self, cancel: CancelToken | None = None) -> None:
        """Load what the engine needs; may be slow. Called once before the first process()."""

    def measure_source(self, info) -> None:
        """Told the source (a VideoInfo) before its first frame is processed; engines whose settings
        depend on the whole clip (the denoiser's noise level) measure it here. Cheap when repeated."""

    @abstractmethod
    def process(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        """Return the stylized frame. Its size is output_size() of the input's size."""

    def update(self, params: StyleParams) -> bool:
        """Take new parameters without preparing again, when the engine can (the diffusion engine keeps its
        model for per-call changes). False: build and prepare a new engine."""
        return params == self.params

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) this engine produces for a source of the given size."""
        return fit_size(width, height, self.params.max_side, multiple=1)

    def close(self) -> None:
        """Free models and device memory."""


def fit_size(width: int, height: int, max_side: int, multiple: int = 1) -> tuple[int, int]:
    """Scale (width, height) so the longer side is at most max_side (0: no limit), keeping the aspect,
    then round each side down to a multiple of `multiple` (at least one multiple)."""
    scale = 1.0
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
    w = max(multiple, int(round(width * scale)) // multiple * multiple)
    h = max(multiple, int(round(height * scale)) // multiple * multiple)
    return w, h


def resize_to(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB frame to (width, height) with area filtering down and cubic up."""
    import cv2

    h, w = frame.shape[:2]
    if (w, h) == tuple(size):
        return frame
    interp = cv2.INTER_AREA if size[0] < w else cv2.INTER_CUBIC
    return cv2.resize(frame, size, interpolation=interp)
