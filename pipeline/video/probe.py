"""Probe a video file: exact size, rational frame rate, frame count, timestamps, rotation, depth, audio."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from pipeline.errors import BadInputError

MAX_PIXELS = 8192 * 8192  # larger frames would need gigabytes per frame; refuse them up front
MIN_SIDE = 16  # the style networks downsample by 4 twice; smaller frames have nothing to stylize


@dataclass(frozen=True)
class AudioInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    # where the stream lies on the file's clock (seconds, the same clock as VideoInfo.start_seconds)
    start: float = 0.0
    end: float = 0.0
    language: str = ""  # ISO 639-2 tag from the container ("" when none)
    layout: str = ""  # channel layout name, e.g. "stereo", "5.1(side)"
    max_packet: float = 0.0  # the longest packet (s): copying trims to packets, so long ones are re-encoded

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class VideoInfo:
    """What a user sees of a clip. width/height are the displayed size, after rotation."""

    path: Path
    width: int
    height: int
    fps: Fraction  # average frame rate, exact (e.g. 30000/1001)
    frame_count: int
    duration: float  # seconds, from the first frame's start to the last frame's end
    rotation: int  # degrees counter-clockwise applied to show the frame upright (0, 90, 180, 270)
    pix_fmt: str
    bit_depth: int
    codec: str
    time_base: Fraction
    vfr: bool  # frames are not evenly spaced
    audio: tuple[AudioInfo, ...] = ()
    # presentation timestamps of every frame in time_base units, sorted; frame i has pts[i]
    pts: tuple[int, ...] = field(default=(), repr=False)
    start_seconds: float = 0.0  # the first frame's time on the file's clock (MPEG-TS, cut files: not 0)
    keyframes: int = 0  # video packets flagged as keyframes: the points a seek can start decoding from

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def keyframe_spacing(self) -> float:
        """Mean frames from one seek point to the next (0: unknown)."""
        return self.frame_count / self.keyframes if self.keyframes else 0.0

    def frame_time(self, index: int) -> float:
        """Seconds from the clip's first frame to frame `index` (its source timestamp)."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)

    def frame_at(self, seconds: float) -> int:
        """The frame whose timestamp is nearest to `seconds` from the first frame (the timestamp index,
        not the average rate, so variable-frame-rate clips resolve right); frame_count at the clip's end."""
        times = [self.frame_time(i) for i in range(self.frame_count)] + [self.duration]
        index = bisect.bisect_left(times, seconds - 1e-9)
        if index >= len(times):  # after the clip's end: a frame number past it, which ranges refuse
            return max(self.frame_count + 1, round(seconds * float(self.fps)))
        if index > 0 and seconds - times[index - 1] < times[index] - seconds:
            index -= 1
        return index

    def range_duration(self, start: int, end: int) -> float:
        """Seconds that frames start..end-1 are shown for."""
        if end < self.frame_count:
            return float((self.pts[end] - self.pts[start]) * self.time_base)
        return self.duration - self.frame_time(start)

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "frames": self.frame_count,
            "duration": round(self.duration, 6),
            "rotation": self.rotation,
            "pix_fmt": self.pix_fmt,
            "bit_depth": self.bit_depth,
            "codec": self.codec,
            "vfr": self.vfr,
            "start_time": round(self.start_seconds, 6),
            "audio": [
                {"codec": a.codec, "sample_rate": a.sample_rate, "channels": a.channels, "layout": a.layout,
                 "language": a.language, "start": round(a.start - self.start_seconds, 6),
                 "duration": round(a.duration, 6)}
                for a in self.audio
            ],
        }


def check_renderable(info: "VideoInfo") -> None:
    """Refuse clips too small for any engine (probe itself accepts them)."""
    if min(info.width, info.height) < MIN_SIDE:
        raise BadInputError(
            f"{info.path.name} is too small ({info.width}x{info.height}); vdiff needs at least {MIN_SIDE}x{MIN_SIDE} pixels"
        )


def open_container(path: str | Path):
    """Open a file with PyAV, turning every failure into one clear BadInputError."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"file not found: {path}")
    if path.is_dir():
        raise BadInputError(f"{path} is a folder, not a video file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path.name} is empty (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise BadInputError(f"{path.name} is not a video file FFmpeg can read ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def probe(path: str | Path) -> VideoInfo:
    """Read a file's video facts. Demuxes every packet (no decoding) for the exact count and timestamps."""
    path = Path(path)
    with open_container(path) as container:
        if not container.streams.video:
            kind = "an audio-only file" if container.streams.audio else "not a video"
            raise BadInputError(f"{path.name} has no video stream ({kind})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            raise BadInputError(f"{path.name}: the video stream has no frame size; the file may be damaged")
        if ctx.width * ctx.height > MAX_PIXELS:
            raise BadInputError(
                f"{path.name}: {ctx.width}x{ctx.height} frames are larger than vdiff supports (8192x8192)"
            )
        time_base = stream.time_base or Fraction(1, 90000)
        try:
            pts, spans, keyframes = _packet_timestamps(container, stream)
        except av.error.FFmpegError as exc:
            raise BadInputError(f"{path.name} is damaged and cannot be read ({_reason(exc)})") from None
        if not pts:
            raise BadInputError(f"{path.name} contains no video frames (it may be truncated)")
        rotation = _first_frame_rotation(path, stream.index)
        audio = tuple(_audio_info(a, spans.get(a.index)) for a in container.streams.audio)
        pix_fmt = ctx.format.name if ctx.format else "unknown"
        codec = ctx.name
        # read while the container is open: closing it frees the structs stream and ctx point into
        fps = _frame_rate(stream, pts, time_base)
        width, height = ctx.width, ctx.height

    deltas = {b - a for a, b in zip(pts, pts[1:])}
    steps = deltas - {0}  # equal timestamps (duplicate packets) are frames too, but not a frame's length
    last = pts[-1] - pts[0] + (min(steps) if steps else (1 / fps) / time_base)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        fps=fps,
        frame_count=len(pts),
        duration=float(last * time_base),
        rotation=rotation,
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        codec=codec,
        time_base=time_base,
        vfr=len(deltas) > 1,
        audio=audio,
        pts=tuple(pts),
        start_seconds=float(pts[0] * time_base),
        keyframes=keyframes,
    )


def _packet_timestamps(container, stream) -> tuple[list[int], dict[int, list[float]], int]:
    """Every video packet's timestamp, sorted, duplicates kept (each packet is a frame); for each
    audio stream, [first start, last end, longest packet] in seconds, from the same pass; and the
    number of video keyframes."""
    pts = []
    keyframes = 0
    spans: dict[int, list[float]] = {}
    for packet in container.demux(stream, *container.streams.audio):
        if packet.size == 0:
            continue  # the demuxer's flush packet
        value = packet.pts if packet.pts is not None else packet.dts
        if value is None:
            continue
        if packet.stream.index == stream.index:
            pts.append(value)
            keyframes += bool(packet.is_keyframe)
            continue
        tb = packet.time_base or packet.stream.time_base
        begin, length = float(value * tb), float((packet.duration or 0) * tb)
        span = spans.setdefault(packet.stream.index, [begin, begin + length, length])
        span[0], span[1], span[2] = min(span[0], begin), max(span[1], begin + length), max(span[2], length)
    return sorted(pts), spans, keyframes


def _audio_info(stream, span: list[float] | None) -> AudioInfo:
    ctx = stream.codec_context
    start, end, longest = span or (0.0, 0.0, 0.0)
    layout = getattr(ctx, "layout", None)
    return AudioInfo(
        stream.index, ctx.name, ctx.sample_rate or 0, ctx.channels or 0,
        start=start, end=end, language=_language(stream), layout=layout.name if layout else "", max_packet=longest,
    )


def _language(stream) -> str:
    language = (stream.metadata or {}).get("language", "")
    return "" if language in ("und", "") else language


def _frame_rate(stream, pts: list[int], time_base: Fraction) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate:
        return Fraction(rate).limit_denominator(1_000_000)
    if len(pts) > 1:
        return Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * time_base)
    return Fraction(25)


def _first_frame_rotation(path: Path, index: int) -> int:
    """Rotation from the display matrix, read off the first decodable frame."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams[index]
            for frame in container.decode(stream):
                return int(round((getattr(frame, "rotation", 0) or 0) / 90) * 90) % 360
    except av.error.FFmpegError:
        return 0
    return 0


def _bit_depth(pix_fmt: str) -> int:
    """Bits per sample from FFmpeg's own format description (a name like nv12 holds no depth)."""
    try:
        components = av.VideoFormat(pix_fmt).components
    except (ValueError, TypeError, av.error.FFmpegError):
        return 8
    return max((c.bits for c in components), default=8) or 8
