"""Write stylized frames to a video (H.264, H.265, ProRes) or a PNG sequence, with the source's audio.

The output goes to a hidden temporary file beside the target and is renamed over it only after it
was written completely and verified, so a failed or cancelled export never leaves a broken file and
never touches an existing one. Frames keep their source timestamps (variable frame rate survives).
Odd frame sizes are padded to even by repeating the last row/column (4:2:0 and 4:2:2 need even sizes).
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.errors import BadInputError, OutputError
from pipeline.profile import stage
from pipeline.request import OutputSpec
from pipeline.video.probe import VideoInfo, probe

VIDEO_CODECS = {
    # codec -> (encoder, pix_fmt, default container extension)
    "h264": ("libx264", "yuv420p", ".mp4"),
    "h265": ("libx265", "yuv420p", ".mp4"),
    "prores": ("prores_ks", "yuv422p10le", ".mov"),
}
# audio codecs each container takes as they are; anything else is re-encoded to AAC
COPYABLE_AUDIO = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "flac", "opus"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "ac3"},
    ".mkv": {"aac", "mp3", "alac", "ac3", "eac3", "flac", "opus", "vorbis", "pcm_s16le", "pcm_s24le"},
}
AUDIO_LEAD = 0.5  # seconds of audio muxed ahead of the video, for interleaving


def even_size(width: int, height: int) -> tuple[int, int]:
    return width + width % 2, height + height % 2


def pad_to_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def check_output_path(spec: OutputSpec) -> None:
    """Fail early, before any rendering, when the output cannot be written."""
    target = Path(spec.path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise OutputError(f"the output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"the output folder {folder} is not writable")
    if spec.codec == "png":
        if target.exists() and not target.is_dir():
            raise OutputError(f"{target} exists and is not a folder; a PNG sequence is written into a folder")
        return
    if target.is_dir():
        raise OutputError(f"{target} is a folder; give a file name such as {target / 'out.mp4'}")
    if target.suffix.lower() not in COPYABLE_AUDIO:
        raise BadInputError(f"unknown output extension '{target.suffix}'; use .mp4, .mov or .mkv")
    if spec.codec == "prores" and target.suffix.lower() not in (".mov", ".mkv"):
        raise BadInputError("ProRes goes in a .mov file; change the output name to end in .mov")


class VideoWriter:
    """Encodes frames into a temporary file; `finish()` verifies it and renames it to the target."""

    def __init__(
        self,
        spec: OutputSpec,
        size: tuple[int, int],
        fps: Fraction,
        time_base: Fraction,
        source: VideoInfo | None = None,
        audio_range: tuple[float, float] | None = None,
    ):
        check_output_path(spec)
        self.spec = spec
        self.target = Path(spec.path)
        self.size = size if spec.codec == "png" else even_size(*size)
        self.fps = Fraction(fps)
        self.time_base = Fraction(time_base)
        self.frames = 0
        self.last_pts = -1
        self.audio_copied = False
        self._closed = False
        self.temp = self.target.with_name(f".{self.target.stem}.vdiff-partial{self.target.suffix}")
        self._audio = None
        try:
            if spec.codec == "png":
                shutil.rmtree(self.temp, ignore_errors=True)
                self.temp.mkdir()
                self._container = None
            else:
                self._open_video()
                if spec.audio and source is not None and source.has_audio:
                    self._audio = _AudioTrack(source, self._container, self.target.suffix.lower(), audio_range)
                    self.audio_copied = self._audio.copied
        except OSError as exc:
            self.abort()
            raise _output_error(exc, self.target) from None

    def _open_video(self) -> None:
        encoder, pix_fmt, _ = VIDEO_CODECS[self.spec.codec]
        self.temp.unlink(missing_ok=True)
        self._container = av.open(str(self.temp), "w")
        stream = self._container.add_stream(encoder, rate=self.fps)
        stream.width, stream.height = self.size
        stream.pix_fmt = pix_fmt
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if self.spec.codec == "h264":
            stream.options = {"crf": str(self.spec.crf), "preset": "fast"}
        elif self.spec.codec == "h265":
            stream.options = {"crf": str(self.spec.crf), "preset": "fast", "x265-params": "log-level=error"}
            stream.codec_tag = "hvc1"  # lets Apple players open H.265 in MP4/MOV
        else:
            stream.options = {"profile": "3"}  # ProRes 422 HQ
        stream.thread_type = "AUTO"
        self._video = stream

    @stage("encode")
    def write(self, image: np.ndarray, pts: int) -> None:
        """Add a frame shown at `pts` (in time_base units, 0 = the first output frame)."""
        if pts <= self.last_pts:
            raise ValueError(f"timestamps must increase: {pts} after {self.last_pts}")
        try:
            if self.spec.codec == "png":
                import cv2

                name = self.temp / f"frame_{self.frames:06d}.png"
                ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
                if not ok:
                    raise OutputError(f"could not encode frame {self.frames} as PNG")
                name.write_bytes(data.tobytes())
            else:
                frame = av.VideoFrame.from_ndarray(pad_to_even(image), format="rgb24")
                frame.pts = pts
                frame.time_base = self.time_base
                if self._audio is not None:
                    self._audio.mux_until(float(pts * self.time_base) + AUDIO_LEAD)
                for packet in self._video.encode(frame):
                    self._container.mux(packet)
        except OSError as exc:
            self.abort()
            raise _output_error(exc, self.target) from None
        except av.error.FFmpegError as exc:
            self.abort()
            raise OutputError(f"could not write {self.target.name}: {exc}") from None
        self.frames += 1
        self.last_pts = pts

    @stage("encode")
    def finish(self) -> Path:
        """Flush, close, and move the finished file over the target. Returns the target path."""
        try:
            if self._container is not None:
                for packet in self._video.encode():
                    self._container.mux(packet)
                if self._audio is not None:
                    self._audio.mux_until(float("inf"))
                    self._audio.close()
                self._container.close()
                self._container = None
            _replace(self.temp, self.target)
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise _output_error(exc, self.target) from None
            raise OutputError(f"could not finish {self.target.name}: {exc}") from None
        self._closed = True
        return self.target

    def abort(self) -> None:
        """Drop the partial output; the target (if it existed) is left as it was."""
        if self._closed:
            return
        self._closed = True
        for closeable in (self._audio, self._container):
            try:
                if closeable is not None:
                    closeable.close()
            except Exception:  # closing a broken container can fail again; the temp goes regardless
                pass
        self._container = None
        if self.temp.is_dir():
            shutil.rmtree(self.temp, ignore_errors=True)
        else:
            self.temp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()


class _AudioTrack:
    """The source's first audio stream, copied (or re-encoded to AAC), trimmed to the range."""

    def __init__(self, source: VideoInfo, output, suffix: str, audio_range: tuple[float, float] | None):
        self._input = av.open(str(source.path))
        self._in_stream = self._input.streams.audio[0]
        self._output = output
        self.start, self.end = audio_range or (0.0, float("inf"))
        self.copied = self._in_stream.codec_context.name in COPYABLE_AUDIO.get(suffix, set())
        if self.copied:
            self._out_stream = output.add_stream_from_template(self._in_stream)
        else:
            source = self._in_stream.codec_context
            self._out_stream = output.add_stream("aac", rate=source.sample_rate or 48000)
            self._out_stream.layout = "mono" if source.channels == 1 else "stereo"  # AAC wants a named layout
            self._out_stream.format = "fltp"  # the AAC encoder's only sample format; PyAV resamples to it
        self._tb = self._in_stream.time_base
        self._offset = int(self.start / self._tb) if self.start > 0 else 0
        self._packets = self._source_packets()
        self._pending = None
        self._flushed = False

    def _source_packets(self):
        for packet in self._input.demux(self._in_stream):
            if packet.size == 0 or packet.pts is None:
                continue
            begin = float(packet.pts * self._tb)
            length = float((packet.duration or 0) * self._tb)
            if begin + length <= self.start and self.start > 0:
                continue
            if begin >= self.end:
                break
            yield packet

    def mux_until(self, seconds: float) -> None:
        """Mux source audio up to `seconds` of output time."""
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
                packet.pts -= self._offset
                if packet.dts is not None:
                    packet.dts -= self._offset
                packet.stream = self._out_stream
                self._output.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None  # the encoder numbers samples from 0
                    self._encode(frame)

    def _encode(self, frame) -> None:
        for packet in self._out_stream.encode(frame):
            self._output.mux(packet)

    def close(self) -> None:
        self._input.close()


def _replace(temp: Path, target: Path) -> None:
    if temp.is_dir():
        old = target.with_name(f".{target.name}.vdiff-old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        temp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, target)


def _output_error(exc: OSError, target: Path) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return OutputError(f"the disk is full while writing {target.name}; free some space and export again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {target}: permission denied")
    return OutputError(f"cannot write {target}: {exc.strerror or exc}")


@dataclass
class Verification:
    """The written file measured against what was asked for."""

    ok: bool
    checks: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{c['name']} {c['actual']}" for c in self.checks]
        return ("verified: " if self.ok else "MISMATCH: ") + ", ".join(parts)

    def to_json(self) -> dict:
        return {"ok": self.ok, "checks": self.checks}


def verify_output(
    path: Path,
    *,
    frames: int,
    fps: Fraction,
    duration: float,
    audio: bool,
    size: tuple[int, int],
    timestamps: list[float] | None = None,
) -> Verification:
    """Probe the written output and compare frame count, size, frame rate, duration and audio.

    For a variable-frame-rate source pass `timestamps` (seconds from the first output frame): each
    output frame's time is compared instead of the average rate, which containers compute differently.
    """
    path = Path(path)
    checks = []

    def check(name, expected, actual, ok):
        checks.append({"name": name, "expected": expected, "actual": actual, "ok": bool(ok)})

    if path.is_dir():
        names = sorted(path.glob("frame_*.png"))
        check("frames", frames, len(names), len(names) == frames)
        if names:
            import cv2

            first = cv2.imread(str(names[0]))
            actual = (first.shape[1], first.shape[0]) if first is not None else None
            check("size", f"{size[0]}x{size[1]}", f"{actual[0]}x{actual[1]}" if actual else "unreadable",
                  actual == tuple(size))
        return Verification(all(c["ok"] for c in checks), checks)
    try:
        info = probe(path)
    except BadInputError as exc:
        check("readable", True, str(exc), False)
        return Verification(False, checks)
    frame_time = 1.0 / float(fps) if fps else 0.05
    check("frames", frames, info.frame_count, info.frame_count == frames)
    check("size", f"{size[0]}x{size[1]}", f"{info.width}x{info.height}", (info.width, info.height) == tuple(size))
    if timestamps is not None:
        got = [info.frame_time(i) for i in range(info.frame_count)]
        worst = max((abs(a - b) for a, b in zip(got, timestamps)), default=0.0)
        check("timestamps", "source", f"max error {worst * 1000:.1f} ms", len(got) == len(timestamps) and worst <= frame_time / 2)
    else:
        check("fps", _fmt_rate(fps), _fmt_rate(info.fps), abs(float(info.fps) - float(fps)) <= float(fps) * 0.002)
    check("duration", round(duration, 3), round(info.duration, 3), abs(info.duration - duration) <= frame_time + 1e-6)
    check("audio", audio, info.has_audio, info.has_audio == audio)
    return Verification(all(c["ok"] for c in checks), checks)


def _fmt_rate(rate: Fraction) -> str:
    rate = Fraction(rate)
    return f"{rate.numerator}/{rate.denominator}"
