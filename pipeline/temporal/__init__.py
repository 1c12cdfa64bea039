"""Temporal consistency: optical flow, the flicker measure, and the state that keeps a render stable over time."""

from pipeline.temporal.metrics import FlickerMeter, measure_videos, style_fidelity, warp_error
from pipeline.temporal.stabilizer import Stabilizer, is_stateful

__all__ = ["FlickerMeter", "Stabilizer", "is_stateful", "measure_videos", "style_fidelity", "warp_error"]
