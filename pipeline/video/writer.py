"""Write stylized frames to a video (H.264, H.265, ProRes) or a PNG sequence, with the source's audio.

The output goes to a hidden partial beside the target and is moved into place only after it was
written completely and verified (pipeline.video.output_target), so a failed or cancelled export never
leaves a broken file and never touches an existing one; an existing folder is never emptied. Frames keep their source timestamps (variable frame rate survives).
Odd frame sizes are padded to even by repeating the last row/column (4:2:0 and 4:2:2 need even sizes).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.errors import BadInputError, OutputError, VerificationError
from pipeline.profile import stage
from pipeline.request import OutputSpec
from pipeline.video import output_target
from pipeline.video.audio import COPYABLE_AUDIO, SYNC_TOLERANCE, AudioTrack, ExpectedAudio, audio_plan
from pipeline.video.probe import VideoInfo, probe

VIDEO_CODECS = {
    # codec -> (encoder, pix_fmt, default container extension)
    "h264": ("libx264", "yuv420p", ".mp4"),
    "h265": ("libx265", "yuv420p", ".mp4"),
    "prores": ("prores_ks", "yuv422p10le", ".mov"),
}
AUDIO_LEAD = 0.5  # seconds of audio muxed ahead of the video, for interleaving


def even_size(width: int, height: int) -> tuple[int, int]:
    return width + width % 2, height + height % 2


def pad_to_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def check_output_path(spec: OutputSpec, source: Path | None = None) -> None:
    """Fail early, before any rendering, when the output cannot be written (or would lose data)."""
    target = Path(spec.path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise OutputError(f"the output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"the output folder {folder} is not writable")
    output_target.check_not_the_source(target, source)
    if spec.codec == "png":
        output_target.check_png_folder(target, getattr(spec, "overwrite", False))
        return
    if target.is_dir():
        raise OutputError(f"{target} is a folder; give a file name such as {target / 'out.mp4'}")
    if target.suffix.lower() not in COPYABLE_AUDIO:
        raise BadInputError(f"unknown output extension '{target.suffix}'; use .mp4, .mov or .mkv")
    if spec.codec == "prores" and target.suffix.lower() not in (".mov", ".mkv"):
        raise BadInputError("ProRes goes in a .mov file; change the output name to end in .mov")


class VideoWriter:
    """Encodes frames into a hidden partial; `finish(check)` verifies it, then moves it over the target."""

    def __init__(
        self,
        spec: OutputSpec,
        size: tuple[int, int],
        fps: Fraction,
        time_base: Fraction,
        source: VideoInfo | None = None,
        audio_range: tuple[float, float] | None = None,
    ):
        check_output_path(spec, source.path if source is not None else None)
        self.spec = spec
        self.target = Path(spec.path)
        self.size = size if spec.codec == "png" else even_size(*size)
        self.fps = Fraction(fps)
        self.time_base = Fraction(time_base)
        self.frames = 0
        self.last_pts = -1
        self.audio_copied = False
        self._closed = False
        self.temp = output_target.partial_path(self.target)
        self.verification: Verification | None = None
        # what each output audio stream must measure, from the source and the range
        self.expected_audio: list[ExpectedAudio] = []
        self._audio: list[AudioTrack] = []
        try:
            if spec.codec == "png":
                output_target.remove_partial(self.temp)  # a partial of ours left by a killed export
                self.temp.mkdir()
                self._container = None
            else:
                self._open_video()
                if spec.audio and source is not None and source.has_audio:
                    self._open_audio(source, audio_range)
        except OSError as exc:
            self.abort()
            raise _output_error(exc, self.target) from None
        except BaseException:  # e.g. the source's audio cannot be read: no partial is left behind
            self.abort()
            raise

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

    def _open_audio(self, source: VideoInfo, audio_range: tuple[float, float] | None) -> None:
        """Every source stream with sound inside the range, each with its language."""
        for stream_info, expected in audio_plan(source, audio_range):
            self._audio.append(AudioTrack(source, stream_info, self._container, self.target.suffix.lower(), audio_range))
            self.expected_audio.append(expected)
        self.audio_copied = bool(self._audio) and all(track.copied for track in self._audio)

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
                for track in self._audio:
                    track.mux_until(float(pts * self.time_base) + AUDIO_LEAD)
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
    def close(self) -> None:
        """Flush and close the partial output; nothing is moved yet."""
        try:
            if self._container is not None:
                for packet in self._video.encode():
                    self._container.mux(packet)
                for track in self._audio:
                    track.mux_until(float("inf"))
                    track.close()
                self._container.close()
                self._container = None
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise _output_error(exc, self.target) from None
            raise OutputError(f"could not finish {self.target.name}: {exc}") from None

    def finish(self, check=None) -> Path:
        """Close the partial, verify it with `check(path) -> Verification` when given, then move it over
        the target. A failed check leaves the target untouched and keeps the file under a visible name,
        which the raised VerificationError names. Returns the target path."""
        self.close()
        if check is not None:
            self.verification = check(self.temp)
            if not self.verification.ok:
                self._closed = True
                kept = output_target.set_aside(self.temp, self.target)
                existing = "the existing output was left as it was" if self.target.exists() else "nothing was written there"
                raise VerificationError(
                    f"the written file does not match the source ({self.verification.mismatches()}); "
                    f"{existing} and the failed file was kept as {kept}"
                )
        try:
            output_target.commit(self.temp, self.target)
        except OSError as exc:
            self.abort()
            raise _output_error(exc, self.target) from None
        self._closed = True
        return self.target

    def abort(self) -> None:
        """Drop the partial output; the target (if it existed) is left as it was."""
        if self._closed:
            return
        self._closed = True
        for closeable in (*self._audio, self._container):
            try:
                if closeable is not None:
                    closeable.close()
            except Exception:  # closing a broken container can fail again; the temp goes regardless
                pass
        self._container = None
        output_target.remove_partial(self.temp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()


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

    def mismatches(self) -> str:
        return "; ".join(f"{c['name']}: expected {c['expected']}, got {c['actual']}" for c in self.checks if not c["ok"])

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
    audio_streams: list[ExpectedAudio] | None = None,
) -> Verification:
    """Probe the written output and compare frame count, size, frame rate, duration and audio.

    For a variable-frame-rate source pass `timestamps` (seconds from the first output frame): each
    output frame's time is compared instead of the average rate, which containers compute differently.
    With `audio_streams` (VideoWriter.expected_audio), each audio stream's start and duration relative
    to the video, its channel count and language are compared too (start and duration within 50 ms).
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
    if audio and audio_streams is not None:
        _check_audio_sync(info, audio_streams, check)
    return Verification(all(c["ok"] for c in checks), checks)


def _check_audio_sync(info: VideoInfo, wanted: list[ExpectedAudio], check) -> None:
    """Each audio stream against the video's clock: where it starts, how long it lasts, its channels."""
    got = list(info.audio)
    check("audio streams", len(wanted), len(got), len(got) == len(wanted))
    for number, (expected, stream) in enumerate(zip(wanted, got), 1):
        start = stream.start - info.start_seconds
        actual = _describe_audio(start, stream.duration, stream.channels, stream.language)
        ok = (
            abs(start - expected.start) <= SYNC_TOLERANCE
            and abs(stream.duration - expected.duration) <= SYNC_TOLERANCE
            and stream.channels == expected.channels
            and stream.language == expected.language
        )
        check(f"audio {number}", _describe_audio(expected.start, expected.duration, expected.channels, expected.language),
              actual, ok)


def _describe_audio(start: float, duration: float, channels: int, language: str) -> str:
    return f"from {start:+.3f} s for {duration:.3f} s, {channels} ch" + (f", {language}" if language else "")


def _fmt_rate(rate: Fraction) -> str:
    rate = Fraction(rate)
    return f"{rate.numerator}/{rate.denominator}"
