"""Motion-aligned video denoising: the noise-level estimate (estimate), the flow-aligned temporal
average (temporal), the DCT-block shrinkage (spatial), and the per-frame pipeline joining them
(denoiser). Qt-free and model-free: numpy and OpenCV only. Measured in bench/denoise.py, docs/quality.md."""

from pipeline.denoise.denoiser import denoise_frame
from pipeline.denoise.estimate import NoiseModel, clip_noise, estimate_noise

__all__ = ["NoiseModel", "clip_noise", "denoise_frame", "estimate_noise"]
