"""The consistency state of one streaming render: what frame t takes from the frames before it.

Frames pass through in order from the range's first frame (the anchor). For each frame the stabilizer
keeps the previous source and stylized frames and the anchor's colour statistics; all of it can be
rebuilt from the frame cache, so a resumed render continues exactly where the interrupted one was.

- flow propagation: the previous stylized frame, warped into this one along the input's flow, is
  blended in where the occlusion mask says the pixel is visible (weight `flow_blend`, less where the
  warped source disagrees with the source). fast-style and classical blend the outputs; diffusion
  starts from the blend as its init image at a lower strength.
- colour anchoring: each output's LAB mean and deviation are matched to the anchor's.
- diffusion also gets the stylized anchor and previous frames for cross-frame attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from pipeline.engines.base import Engine, FrameContext, resize_to
from pipeline.profile import stage
from pipeline.request import StyleParams
from pipeline.temporal.flow import flow_pair, flow_size, occlusion_mask, upsample_flow, warp

SOURCE_TOLERANCE = 0.1  # RMS RGB difference (0-1) of warped vs current source at which the blend weight falls to 1/e


def is_stateful(params: StyleParams) -> bool:
    """Whether a frame's pixels depend on the frames before it in the range."""
    if params.engine == "diffusion" and params.cross_frame_attention:
        return True
    return propagates_flow(params) or anchors_color(params)


def propagates_flow(params: StyleParams) -> bool:
    """Whether the previous output is blended in along the flow: when asked, except for the classical
    denoiser, whose own temporal stage averages the flow-aligned neighbours on both sides already
    (propagation on top measured +0.15 dB for 15-60% more time, docs/quality.md)."""
    return params.temporal_flow and not (params.engine == "classical" and params.look == "denoise")


def anchors_color(params: StyleParams) -> bool:
    """Colour anchoring as asked, or by default for diffusion only."""
    return params.color_anchor if params.color_anchor is not None else params.engine == "diffusion"


class Stabilizer:
    """Runs an engine on a range's frames in order, carrying the consistency state between them.

    `load_source(index)` returns a source frame the stabilizer did not see (the frame before the first
    one rendered after cached frames); it is called at most once per such gap.
    """

    def __init__(self, params: StyleParams, start: int, load_source: Callable[[int], np.ndarray],
                 warp_output: Callable[[np.ndarray, np.ndarray], np.ndarray] = warp):
        self.params = params
        self._warp_output = warp_output  # how the previous output is carried (keyframes: a sharper warp)
        self.start = start
        self._load_source = load_source
        self._index = -1  # the frame the state below belongs to
        self._source: np.ndarray | None = None  # at the flow's size; None until needed after a cached frame
        self._output: np.ndarray | None = None
        self._anchor: np.ndarray | None = None
        self._anchor_stats: tuple[np.ndarray, np.ndarray] | None = None

    @stage("consistency")
    def process(self, engine: Engine, frame: np.ndarray, ctx: FrameContext, flow: Motion | None = None,
                previous: int | None = None) -> np.ndarray:
        """The stylized frame ctx.index, consistent with the frames before it; updates the state.

        `flow` is motion(previous source, this source) when the caller computed it ahead (it depends
        on the sources only, so a render computes it in parallel); otherwise it is computed here.
        `previous` is the frame the chain continues from (default: ctx.index - 1; keyframe rendering
        chains keyframe to keyframe).
        """
        p = self.params
        h, w = frame.shape[:2]
        size = engine.output_size(w, h)
        small = flow_source(frame, size) if propagates_flow(p) else None
        previous = ctx.index - 1 if previous is None else previous
        follows = self._index == previous and self._output is not None
        warped = weight = None
        if propagates_flow(p) and follows:
            if flow is None:
                if self._source is None:
                    self._source = flow_source(self._load_source(self._index), size)
                flow = motion(self._source, small, p.flow_blend)
            warped, weight = self._warp_output(self._output, flow.flow_at(size)), flow.weight_at(size)
        if engine.name == "diffusion":
            source = resize_to(frame, size)
            if warped is not None:
                ctx.init = blend(warped, source, weight)
                ctx.strength = propagated_strength(p)
            if p.cross_frame_attention and follows:
                ctx.references = [self._anchor, self._output] if previous != self.start else [self._anchor]
            output = engine.process(frame, ctx)
        else:
            output = engine.process(frame, ctx)
            if warped is not None:
                output = blend(warped, output, weight)
        if anchors_color(p) and self._anchor_stats is not None and ctx.index != self.start:
            output = match_color(output, self._anchor_stats)
        self.remember(ctx.index, output, small)
        return output

    def replace_output(self, output: np.ndarray) -> None:
        """The frame just processed as it was finally written (composited inside a mask): what the
        next frame propagates from, the same as a resume from the cache would see."""
        self._output = output
        if self._index == self.start:
            self._anchor = output

    def remember(self, index: int, output: np.ndarray, source: np.ndarray | None = None) -> None:
        """Take frame `index` (e.g. from the cache) as the latest one; `source` is its flow_source(), or
        None to load it when the next frame needs it."""
        self._index, self._output, self._source = index, output, source
        if index == self.start:
            self._anchor = output
            self._anchor_stats = color_stats(output)


@dataclass(frozen=True)
class Motion:
    """How a frame moved from the one before it, at the flow's (reduced) size: what propagation needs and
    what a flicker meter can reuse instead of computing the flow again (pipeline.temporal.metrics)."""

    to_previous: np.ndarray  # HxWx2 float32 flow from this frame to the previous one
    from_previous: np.ndarray  # HxWx2 float32 flow from the previous frame to this one
    weight: np.ndarray  # HxW float32 blend weight of the warped previous output (flow_blend included)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the fields."""
        return self.weight.shape[1], self.weight.shape[0]

    def flow_at(self, size: tuple[int, int]) -> np.ndarray:
        """to_previous brought up to (width, height)."""
        return upsample_flow(self.to_previous, size)

    def weight_at(self, size: tuple[int, int]) -> np.ndarray:
        """The weight brought up to (width, height), HxW float32."""
        if size == self.size:
            return self.weight
        return cv2.resize(self.weight, size, interpolation=cv2.INTER_LINEAR)


def flow_source(frame: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """`frame` at the size the flow of an output of `output_size` is computed at (pipeline.temporal.flow)."""
    return resize_to(frame, flow_size(*output_size))


def propagate(previous_source, source, previous_output, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The previous output warped into this frame, and the HxWx1 float32 weight to blend it with
    (sources and output of one size; the flow is computed at that size)."""
    moved = motion(previous_source, source, strength)
    return warp(previous_output, moved.to_previous), moved.weight[:, :, None]


@stage("flow")
def motion(previous_source, source, strength: float) -> Motion:
    """The part of propagate() that depends on the sources only (two RGB frames of one size): the flows
    between them and the weight to blend the warped previous output with, at that size."""
    flow, back = flow_pair(source, previous_source)
    visible = ~occlusion_mask(flow, back)
    weight = cv2.GaussianBlur(visible.astype(np.float32) * source_agreement(previous_source, source, flow),
                              (5, 5), 0) * np.float32(strength)
    return Motion(flow, back, weight)


def source_agreement(previous_source, source, flow) -> np.ndarray:
    """HxW float32 in (0, 1]: how well `previous_source` brought along `flow` matches `source`; where the
    flow brings the wrong source pixels (lighting, blur, flow errors, occlusions), trust it less."""
    warped_source = warp(previous_source, flow).astype(np.float32)
    error = ((warped_source - source.astype(np.float32)) * (1.0 / 255.0)) ** 2
    mean_error = (error[:, :, 0] + error[:, :, 1] + error[:, :, 2]) / np.float32(3)  # = error.mean(axis=2), faster
    return np.exp(-mean_error / SOURCE_TOLERANCE**2)


def propagated_strength(params: StyleParams) -> float:
    """Diffusion re-noises a propagated init less: the more of it comes from the previous frame, the less."""
    lower = params.strength * (1.0 - 0.5 * params.flow_blend)
    return lower if int(params.steps * lower) >= 1 else params.strength  # keep at least one denoising step


def blend(warped: np.ndarray, image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """warped * weight + image * (1 - weight), rounded; `weight` HxW (or HxWx1) float32 in [0, 1]."""
    weight = weight.reshape(weight.shape[:2])
    return cv2.blendLinear(warped, image, weight, 1.0 - weight)


def color_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation in LAB."""
    lab = cv2.cvtColor(image.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.mean(axis=0), lab.std(axis=0)


def match_color(image: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`image` with its LAB mean and deviation moved to `stats`."""
    mean, std = stats
    lab = cv2.cvtColor(image.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2LAB)
    own_mean, own_std = lab.reshape(-1, 3).mean(axis=0), lab.reshape(-1, 3).std(axis=0)
    lab = (lab - own_mean) * (std / np.maximum(own_std, 1e-3)) + mean
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
