"""Clips built like real footage, for the video-IO tests: B-frames, several GOPs, streams that do not
start at 0 (MPEG-TS, a cut Matroska, an MP4 whose video is delayed by an edit list), two audio streams
with language tags, 5.1 audio, PCM in big packets, variable frame rate, duplicate timestamps.

The picture is pipeline.footage (photographs on a hand-held camera path); the audio is silence with a
tone burst starting at a known time, so a test can find where the audio lies against the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.footage import footage_frames

BEEP_HZ = 880.0


@dataclass(frozen=True)
class Audio:
    """One audio stream: where it starts and ends on the file's clock, and where its beep starts."""

    start: float
    end: float
    beep: float  # seconds on the file's clock where the tone burst begins
    codec: str = "aac"
    layout: str = "stereo"
    language: str = ""
    rate: int = 48000
    packet: int = 1024  # samples per packet (PCM muxed in big blocks: rate or more)


def beep_samples(audio: Audio) -> np.ndarray:
    """The stream's samples, float32 (channels, n): silence, then the tone from `beep` on."""
    n = int(round((audio.end - audio.start) * audio.rate))
    t = audio.start + np.arange(n) / audio.rate
    tone = np.where(t >= audio.beep, 0.4 * np.sin(2 * math.pi * BEEP_HZ * t), 0.0).astype(np.float32)
    channels = len(av.AudioLayout(audio.layout).channels)
    return np.repeat(tone[None, :], channels, axis=0)


def make_clip(
    path: str | Path,
    frames: int = 36,
    width: int = 96,
    height: int = 64,
    fps: int = 24,
    video_start: float = 0.0,
    audio: tuple[Audio, ...] = (),
    gop: int = 12,
    bframes: int = 2,
    frame_times: list[float] | None = None,
    codec: str = "libx264",
) -> Path:
    """Encode footage with B-frames and a keyframe every `gop` frames, the first frame at `video_start`
    seconds on the file's clock (or at `frame_times`, seconds, for variable frame rate)."""
    path = Path(path)
    # a frame's tick, or finer for variable spacing (x264 writes the codec's rate into the stream)
    tick = Fraction(1, fps * 10) if frame_times else Fraction(1, fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = tick
        if codec == "libx264":
            video.options = {"crf": "18", "preset": "veryfast", "g": str(gop), "keyint_min": str(gop),
                             "bf": str(bframes), "sc_threshold": "0"}
        streams = []
        for spec in audio:
            stream = container.add_stream(spec.codec, rate=spec.rate)
            stream.layout = spec.layout
            if spec.language:
                stream.metadata["language"] = spec.language
            streams.append(stream)
        pending = [_audio_frames(spec, stream) for spec, stream in zip(audio, streams)]
        heads = [next(frames_, None) for frames_ in pending]
        times = frame_times or [video_start + i / fps for i in range(frames)]
        for i, image in enumerate(footage_frames(len(times), width, height, scene="street")):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(round(times[i] / tick))
            frame.time_base = tick
            for packet in video.encode(frame):
                container.mux(packet)
            for k, stream in enumerate(streams):  # interleave audio up to this frame's time
                while heads[k] is not None and heads[k][0] <= times[i] + 0.2:
                    _mux(container, stream, heads[k][1])
                    heads[k] = next(pending[k], None)
        for packet in video.encode():
            container.mux(packet)
        for k, stream in enumerate(streams):
            while heads[k] is not None:
                _mux(container, stream, heads[k][1])
                heads[k] = next(pending[k], None)
            for packet in stream.encode():
                container.mux(packet)
    return path


def _mux(container, stream, item) -> None:
    if isinstance(item, av.Packet):
        item.stream = stream
        container.mux(item)
        return
    for packet in stream.encode(item):
        container.mux(packet)


def _audio_frames(spec: Audio, stream):
    """(time, frame to encode) per block; PCM in big blocks as ready-made packets, as some muxers write it."""
    samples = beep_samples(spec)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    for first in range(0, samples.shape[1], spec.packet):
        block = samples[:, first : first + spec.packet]
        if spec.codec == "pcm_s16le" and spec.packet > 1024:
            packet = av.Packet((block.T * 32767).astype("<i2").tobytes())
            packet.pts = packet.dts = int(round(spec.start * spec.rate)) + first
            packet.duration = block.shape[1]
            packet.time_base = Fraction(1, spec.rate)
            yield spec.start + first / spec.rate, packet
            continue
        frame = _frame(block, fmt, spec.layout)
        frame.sample_rate = spec.rate
        frame.pts = int(round(spec.start * spec.rate)) + first
        frame.time_base = Fraction(1, spec.rate)
        yield spec.start + first / spec.rate, frame


def _frame(block: np.ndarray, fmt: str, layout: str):
    if fmt == "s16":  # packed 16-bit (PCM)
        data = (block.T * 32767).astype(np.int16).reshape(1, -1)
        return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=layout)


def decoded_audio(path: Path, index: int = 0) -> tuple[float, np.ndarray, int]:
    """(start relative to the first video frame, samples of channel 0, rate) of audio stream `index`."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        first_video = min(p.pts for p in container.demux(video) if p.pts is not None) * video.time_base
        container.seek(0)
        stream = container.streams.audio[index]
        chunks, start = [], None
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.pts * frame.time_base)
            data = frame.to_ndarray().astype(np.float32)
            if not frame.format.is_planar:
                data = data.reshape(-1, len(frame.layout.channels)).T
            if frame.format.name.startswith("s16"):
                data = data / 32767
            chunks.append(data[0])
        return start - float(first_video), np.concatenate(chunks), stream.codec_context.sample_rate


def beep_time(path: Path, index: int = 0) -> float:
    """Seconds from the output's first video frame to where the beep starts in audio stream `index`."""
    start, samples, rate = decoded_audio(path, index)
    loud = np.flatnonzero(np.abs(samples) > 0.2)
    assert loud.size, "no beep in the audio"
    return start + loud[0] / rate


def audio_streams(path: Path) -> list[tuple[str, int, str, str]]:
    """(language, channels, layout, codec) of each audio stream, read with PyAV directly."""
    with av.open(str(path)) as container:
        return [((s.metadata or {}).get("language", ""), s.codec_context.channels, s.codec_context.layout.name,
                 s.codec_context.name) for s in container.streams.audio]
