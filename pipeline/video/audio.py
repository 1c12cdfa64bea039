"""The source's audio streams in an export: every stream, aligned with the video, trimmed to the range.

One clock for both: the range is given in seconds from the source's first video frame and turned into
the file's own clock (MPEG-TS and cut files do not start at 0), audio packets are placed relative to
the range's first video frame, so a stream that starts before the video is trimmed and one that starts
after it keeps its delay. A stream is copied packet by packet when the container takes its codec and
its packets are short (so trimming to packets is within a few milliseconds); otherwise it is decoded,
trimmed to the sample and re-encoded: PCM to the same PCM when the container takes it, else AAC with
the source's channel layout. Every stream keeps its language tag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from pipeline.errors import BadInputError
from pipeline.video.probe import AudioInfo, VideoInfo

log = logging.getLogger(__name__)

# audio codecs each container takes as they are; anything else is re-encoded
COPYABLE_AUDIO = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "flac", "opus"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "ac3"},
    ".mkv": {"aac", "mp3", "alac", "ac3", "eac3", "flac", "opus", "vorbis", "pcm_s16le", "pcm_s24le"},
}
MAX_COPY_PACKET = 0.05  # s: longer packets (PCM is often muxed in big blocks) cannot be trimmed by copying
SYNC_TOLERANCE = 0.05  # s: verification's bound on each stream's start and duration against the video's
AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


@dataclass(frozen=True)
class ExpectedAudio:
    """What one output audio stream must measure, from the source and the range (not from the output)."""

    start: float  # seconds after the output's first video frame
    duration: float
    channels: int
    language: str


def source_window(source: VideoInfo, audio_range: tuple[float, float] | None) -> tuple[float, float]:
    """The range on the file's clock: seconds from the first video frame plus where that frame lies."""
    start, end = audio_range or (0.0, float("inf"))
    return source.start_seconds + start, source.start_seconds + end


def audio_plan(source: VideoInfo, audio_range: tuple[float, float] | None) -> list[tuple[AudioInfo, ExpectedAudio]]:
    """Each source stream that has sound inside the range, with where it must lie in the output."""
    t0, t1 = source_window(source, audio_range)
    plan = []
    for stream in source.audio:
        begin, end = max(stream.start, t0), min(stream.end, t1)
        if end - begin > 0.001:
            plan.append((stream, ExpectedAudio(begin - t0, end - begin, stream.channels, stream.language)))
    return plan


class AudioTrack:
    """One source audio stream written into the output container, muxed in step with the video."""

    def __init__(self, source: VideoInfo, stream_info: AudioInfo, output, suffix: str,
                 audio_range: tuple[float, float] | None):
        try:
            self._input = av.open(str(source.path))
        except (OSError, av.error.FFmpegError) as exc:  # the source, not the output: say so
            reason = getattr(exc, "strerror", None) or str(exc)
            raise BadInputError(f"cannot read the audio of {source.path}: {reason}") from None
        try:
            self._in_stream = next(s for s in self._input.streams.audio if s.index == stream_info.index)
            self._output = output
            self.start, self.end = source_window(source, audio_range)
            codec = self._in_stream.codec_context.name
            takes = COPYABLE_AUDIO.get(suffix, set())
            self.copied = codec in takes and stream_info.max_packet <= MAX_COPY_PACKET
            if self.copied:
                self._out_stream = output.add_stream_from_template(self._in_stream)
            else:
                lossless = codec.startswith("pcm_") and codec in takes  # PCM stays PCM; anything else becomes AAC
                self._out_stream = _encoder_stream(output, self._in_stream, codec if lossless else "aac")
            if stream_info.language:
                self._out_stream.metadata["language"] = stream_info.language
        except Exception:
            self._input.close()
            raise
        self._tb = self._in_stream.time_base
        self._rate = self._in_stream.codec_context.sample_rate or 48000
        self._packets = self._source_packets()
        self._pending = None
        self._flushed = False

    def _source_packets(self):
        for packet in self._input.demux(self._in_stream):
            if packet.size == 0 or packet.pts is None:
                continue
            begin = float(packet.pts * self._tb)
            length = float((packet.duration or 0) * self._tb)
            if begin + length <= self.start:
                continue
            if begin >= self.end:
                break
            yield packet

    def mux_until(self, seconds: float) -> None:
        """Mux source audio up to `seconds` of output time (0 = the range's first video frame)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                if not self.copied and not self._flushed:
                    self._flushed = True
                    self._encode(None)  # drain the encoder once, when the source audio ends
                return
            if float(packet.pts * self._tb) - self.start > seconds:
                self._pending = packet
                return
            if self.copied:
                self._copy(packet)
            else:
                for frame in packet.decode():
                    trimmed = self._trim(frame)
                    if trimmed is not None:
                        self._encode(trimmed)

    def _copy(self, packet) -> None:
        """Whole packets: those starting inside the range whose middle is before its end."""
        begin = float(packet.pts * self._tb)
        length = float((packet.duration or 0) * self._tb)
        if begin < self.start - 1e-6 or begin + length / 2 > self.end:
            return
        shift = int(round(self.start / self._tb))
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self._out_stream
        self._output.mux(packet)

    def _trim(self, frame):
        """The decoded frame cut to the range, to the sample, timed from the range's start."""
        begin = float(frame.pts * frame.time_base) if frame.pts is not None else self.start
        rate = frame.sample_rate or self._rate
        first = max(0, int(round((self.start - begin) * rate)))
        last = min(frame.samples, int(round((self.end - begin) * rate)))
        if last <= first:
            return None
        if first > 0 or last < frame.samples:
            frame = _slice(frame, first, last)
        frame.pts = int(round((begin - self.start) * rate)) + first
        frame.time_base = Fraction(1, rate)
        return frame

    def _encode(self, frame) -> None:
        for packet in self._out_stream.encode(frame):
            self._output.mux(packet)

    def close(self) -> None:
        self._input.close()


def _encoder_stream(output, in_stream, codec: str):
    """An encoder for `codec` with the source's rate and channel layout (5.1 stays 5.1)."""
    ctx = in_stream.codec_context
    stream = output.add_stream(codec, rate=ctx.sample_rate or 48000)
    channels = ctx.channels or 2
    layout = ctx.layout.name if getattr(ctx, "layout", None) is not None else ""
    if codec == "aac" and (not layout or layout.startswith("unknown") or f"{channels} channels" in layout):
        layout = AAC_LAYOUTS.get(channels, "stereo")  # AAC wants a named layout
        if channels not in AAC_LAYOUTS:
            log.warning("audio stream %d: %d channels have no AAC layout; mixed down to stereo", in_stream.index, channels)
    stream.layout = layout or AAC_LAYOUTS.get(channels, "stereo")
    if codec == "aac":
        stream.format = "fltp"  # the AAC encoder's only sample format; PyAV resamples to it
    else:
        stream.format = ctx.format.name if ctx.format is not None else "s16"
    return stream


def _slice(frame, first: int, last: int):
    """Samples first..last-1 of an audio frame, same format and layout."""
    data = frame.to_ndarray()
    fmt = frame.format
    if fmt.is_planar:
        part = data[:, first:last]
    else:
        channels = len(frame.layout.channels)
        part = data.reshape(-1, channels)[first:last].reshape(1, -1)
    sliced = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format=fmt.name, layout=frame.layout.name)
    sliced.sample_rate = frame.sample_rate
    return sliced
