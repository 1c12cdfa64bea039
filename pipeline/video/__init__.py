"""Video input and output with PyAV: probe, frame-accurate reading, verified writing."""

from pipeline.video.probe import AudioInfo, VideoInfo, probe
from pipeline.video.reader import VideoReader


__all__ = ["AudioInfo", "VideoInfo", "VideoReader", "VideoWriter", "probe", "verify_output"]
from pipeline.video.writer import VideoWriter, verify_output  # noqa: E402
