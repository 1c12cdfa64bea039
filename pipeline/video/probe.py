"""Probe a video file: exact size, rational frame rate, frame count, timestamps, rotation, depth, audio."""

from __future__ import annotations

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

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    def frame_time(self, index: int) -> float:
        """Seconds from the clip's first frame to frame `index` (its source timestamp)."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)

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
            "audio": [
                {"codec": a.codec, "sample_rate": a.sample_rate, "channels": a.channels} for a in self.audio
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
            pts = _packet_timestamps(container, stream)
        except av.error.FFmpegError as exc:
            raise BadInputError(f"{path.name} is damaged and cannot be read ({_reason(exc)})") from None
        if not pts:
            raise BadInputError(f"{path.name} contains no video frames (it may be truncated)")
        rotation = _first_frame_rotation(path, stream.index)
        audio = tuple(
            AudioInfo(a.index, a.codec_context.name, a.codec_context.sample_rate or 0, a.codec_context.channels or 0)
            for a in container.streams.audio
        )
        pix_fmt = ctx.format.name if ctx.format else "unknown"
        codec = ctx.name

    fps = _frame_rate(stream, pts, time_base)
    deltas = {b - a for a, b in zip(pts, pts[1:])}
    frame_ticks = pts[1] - pts[0] if len(pts) > 1 else (1 / fps) / time_base
    last = pts[-1] - pts[0] + (min(deltas) if deltas else frame_ticks)
    width, height = ctx.width, ctx.height
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
    )


def _packet_timestamps(container, stream) -> list[int]:
    pts = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's flush packet
        value = packet.pts if packet.pts is not None else packet.dts
        if value is not None:
            pts.append(value)
    return sorted(set(pts))


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
    for depth in (16, 14, 12, 10, 9):
        if str(depth) in pix_fmt:
            return depth
    return 8
