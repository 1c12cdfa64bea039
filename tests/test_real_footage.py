"""Video IO on clips built like real footage (tests/real_clips.py): B-frames, several GOPs, streams
that do not start at 0, MPEG-TS, Matroska with two audio streams and 5.1, an edit-listed MP4, PCM in
big packets, variable frame rate, duplicate timestamps, rotation, 10-bit. Issue #10 items 3-6 and 13."""

import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.events import Failed, Finished, FrameReady
from pipeline.render import render_frames
from pipeline.request import OutputSpec, RenderRequest, StyleParams, parse_position
from pipeline.video import VideoReader, probe, verify_output
from pipeline.video.probe import _bit_depth
from real_clips import Audio, audio_streams, beep_time, decoded_audio, make_clip

COPY = StyleParams(engine="classical", look="denoise", denoise_window=1, temporal_flow=False)  # ~the source
SYNC = 0.05  # s: the bound on audio start and duration against the video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    return {
        # an MPEG-TS whose streams start at 1.4 s; the beep is 1.0 s after the first video frame
        "ts": make_clip(folder / "broadcast.ts", frames=50, fps=25, video_start=1.4, audio=(Audio(1.4, 3.4, beep=2.4),)),
        # a cut Matroska: video from 0.5 s, an English stereo AAC from 0.45 s, a French 5.1 PCM from 0.6 s
        "mkv": make_clip(folder / "cut.mkv", frames=36, video_start=0.5, audio=(
            Audio(0.45, 2.0, beep=1.0, language="eng"),
            Audio(0.6, 2.0, beep=1.2, codec="pcm_s16le", layout="5.1(side)", language="fra"),
        )),
        # an MP4 whose video starts 0.5 s after its audio (an edit list delays the video track)
        "mp4": make_clip(folder / "delayed.mp4", frames=36, video_start=0.5, audio=(Audio(0.0, 2.0, beep=1.0),)),
        # PCM muxed in one-second packets
        "pcm": make_clip(folder / "pcm.mkv", frames=72, audio=(Audio(0.0, 3.0, beep=1.5, codec="pcm_s16le", packet=48000),)),
    }


def export(source, out, start, end, params=COPY):
    events = list(render_frames(RenderRequest(source, params, start, end, OutputSpec(out), use_cache=False)))
    assert isinstance(events[-1], Finished), events[-1]
    assert events[-1].verification["ok"], events[-1].verification
    return events[-1]


def test_fixtures_look_like_real_footage(clips):
    ts = probe(clips["ts"])
    assert ts.start_seconds == pytest.approx(1.4) and ts.audio[0].start == pytest.approx(1.4, abs=0.03)
    with av.open(str(clips["ts"])) as container:  # B-frames: decode order differs from display order
        pts = [p.pts for p in container.demux(video=0) if p.pts is not None]
        assert pts != sorted(pts)
    with av.open(str(clips["ts"])) as container:
        keyframes = [f.key_frame for f in container.decode(video=0)]
    assert sum(keyframes) >= 4  # several GOPs
    mkv = probe(clips["mkv"])
    assert [(a.language, a.channels) for a in mkv.audio] == [("eng", 2), ("fra", 6)]
    assert probe(clips["mp4"]).start_seconds == pytest.approx(0.5, abs=0.01)


def test_seeking_into_a_ts_with_b_frames_gives_the_frames_decoded_from_the_start(clips):
    with VideoReader(clips["ts"]) as reader:
        everything = dict(reader.iter_frames())
        part = dict(reader.iter_frames(12, 30))
        assert reader.repaired == 0
        for index in (12, 29, 13, 37, 25):
            assert np.array_equal(reader.frame(index), everything[index]), index
    assert all(np.array_equal(part[i], everything[i]) for i in part)


@pytest.mark.parametrize("name,start,end", [("ts", 12, 36), ("mp4", 0, 36), ("mkv", 6, 30)])
def test_audio_stays_in_sync_when_streams_do_not_start_at_zero(clips, tmp_path, name, start, end):
    """Item 3: the beep is as far from the range's first frame in the output as in the source."""
    source = probe(clips[name])
    out = tmp_path / "out.mp4"
    finished = export(clips[name], out, start, end)
    for stream in range(len(source.audio)):
        want = beep_time(clips[name], stream) - source.frame_time(start)
        assert beep_time(out, stream) == pytest.approx(want, abs=SYNC), stream
    assert sum(c["name"].startswith("audio ") for c in finished.verification["checks"]) == len(source.audio) + 1


def test_verification_compares_audio_start_and_duration_with_the_video(clips, tmp_path):
    """Item 3: a file whose audio is 0.3 s late is a mismatch, not "audio: yes"."""
    from pipeline.video.audio import ExpectedAudio

    out = tmp_path / "late.mp4"
    make_clip(out, frames=24, audio=(Audio(0.3, 1.0, beep=0.5),))
    common = dict(frames=24, fps=Fraction(24), duration=1.0, audio=True, size=(96, 64))
    assert verify_output(out, **common).ok  # presence alone says ok
    result = verify_output(out, **common, audio_streams=[ExpectedAudio(0.0, 1.0, 2, "")])
    assert not result.ok and "audio 1" in result.mismatches()
    assert verify_output(out, **common, audio_streams=[ExpectedAudio(0.3, 0.7, 2, "")]).ok


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_pcm_in_big_packets_is_trimmed_to_the_sample(clips, tmp_path, suffix):
    """Item 4: 2 s of frames get 2 s of audio, not the 3 s of the packets they touch."""
    out = tmp_path / f"out{suffix}"
    export(clips["pcm"], out, 12, 60)
    start, samples, rate = decoded_audio(out)
    assert len(samples) / rate == pytest.approx(2.0, abs=SYNC)
    assert start == pytest.approx(0.0, abs=SYNC)
    assert beep_time(out) == pytest.approx(1.0, abs=SYNC)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_every_audio_stream_keeps_its_language_and_channel_layout(clips, tmp_path, suffix):
    """Item 5: both streams, their languages, and 5.1 stays six channels (re-encoded to AAC 5.1 in MP4)."""
    out = tmp_path / f"out{suffix}"
    export(clips["mkv"], out, 6, 30)
    streams = audio_streams(out)
    assert [(language, channels) for language, channels, _, _ in streams] == [("eng", 2), ("fra", 6)]
    if suffix == ".mp4":
        assert streams[1][3] == "aac" and streams[1][2].startswith("5.1")


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """30 fps for a second, then 10 fps for two (a phone dropping its rate in low light)."""
    times = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(20)]
    return make_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", frames=50, fps=30, frame_times=times, audio=())


def test_time_positions_use_the_timestamps_on_variable_frame_rate_clips(vfr_clip, tmp_path):
    """Item 6: 1.5 s is frame 35 (1.0 s + 5 frames at 10 fps), not 1.5 x the average rate."""
    info = probe(vfr_clip)
    assert info.vfr
    assert parse_position("1.5s", float(info.fps), info.frame_count, info) == 35
    assert parse_position("0:02.0", float(info.fps), info.frame_count, info) == 40
    assert parse_position(f"{info.duration}s", float(info.fps), info.frame_count, info) == 50  # the clip's end
    frames = tmp_path / "frames"
    result = subprocess.run([sys.executable, "-m", "pipeline", "render", str(vfr_clip), "-o", str(frames), "--codec", "png",
                             "--start", "1.5s", "--end", "2.5s", "--engine", "classical", "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(list(frames.glob("frame_*.png"))) == 10  # the frames shown from 1.5 s to 2.5 s


def test_nv12_is_eight_bit_and_deep_formats_keep_their_depth(tmp_path):
    """Item 13: the depth comes from the format, not from digits in its name."""
    assert [_bit_depth(f) for f in ("nv12", "nv21", "yuv420p", "p010le", "yuv420p10le", "yuv444p12le", "rgb48le")] == [
        8, 8, 8, 10, 10, 12, 16]
    path = tmp_path / "nv12.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("rawvideo", rate=24)
        video.width, video.height, video.pix_fmt = 32, 32, "nv12"
        for i in range(3):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    info = probe(path)
    assert (info.pix_fmt, info.bit_depth) == ("nv12", 8)


def test_frames_sharing_a_timestamp_are_all_kept(tmp_path):
    """Item 13: two packets with one timestamp are two frames (not merged by a set)."""
    path = tmp_path / "dup.mkv"
    stamps = [0, 1, 2, 2, 3, 4, 5, 5, 6, 7]  # in 1/24 s: two pairs of frames share a timestamp
    with av.open(str(path), "w") as container:
        video = container.add_stream("mjpeg", rate=24)
        video.width, video.height, video.pix_fmt = 32, 32, "yuvj420p"
        video.time_base = Fraction(1, 24)
        for i, stamp in enumerate(stamps):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")):
                packet.pts = packet.dts = stamp
                packet.time_base = Fraction(1, 24)
                container.mux(packet)
    info = probe(path)
    assert info.frame_count == len(stamps)
    with VideoReader(path) as reader:
        levels = [int(image.mean()) for _, image in reader.iter_frames()]
        assert reader.repaired == 0
    assert levels == pytest.approx([20 * i for i in range(len(stamps))], abs=4)  # each frame once, in order
    events = list(render_frames(RenderRequest(path, COPY, output=OutputSpec(tmp_path / "out.mp4", audio=False), use_cache=False)))
    assert isinstance(events[-1], Finished), events[-1]
    assert sum(isinstance(e, FrameReady) for e in events) == len(stamps)
    assert probe(tmp_path / "out.mp4").frame_count == len(stamps)


@pytest.mark.parametrize("rotation,corner", [(90, "bottom-left"), (180, "bottom-right"), (270, "top-right")])
def test_rotation_puts_the_marked_corner_where_players_show_it(tmp_path, rotation, corner):
    """The stored frame's top-left corner is red; after the display matrix it is where FFmpeg's own
    autorotation puts it (checked once against `ffmpeg -i`: +90 is counter-clockwise)."""
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 32, "yuv420p"
        video.set_display_rotation(rotation)
        image = np.full((32, 64, 3), 128, np.uint8)
        image[:8, :8] = (255, 0, 0)
        for _ in range(3):
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    with VideoReader(path) as reader:
        frame = reader.frame(0).astype(int)
    corners = {"top-left": frame[2, 2], "top-right": frame[2, -3], "bottom-left": frame[-3, 2], "bottom-right": frame[-3, -3]}
    red = [name for name, pixel in corners.items() if pixel[0] > 200 and pixel[1] < 60]
    assert red == [corner]


def test_ten_bit_decoding_keeps_levels_an_eight_bit_decode_cannot(tmp_path):
    """A lossless 10-bit ramp of all 1024 levels: decoded at full depth and rounded once, four
    neighbouring 10-bit levels often straddle an 8-bit step; an 8-bit decode makes each four one value."""
    path = tmp_path / "ramp10.mkv"
    ramp = np.arange(1024, dtype=np.uint16).reshape(16, 64)
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=24)
        video.width, video.height, video.pix_fmt = 64, 16, "gbrp10le"
        frame = av.VideoFrame(64, 16, "gbrp10le")
        for plane in frame.planes:
            rows = np.zeros((16, plane.line_size // 2), np.uint16)
            rows[:, :64] = ramp
            plane.update(rows.tobytes())
        for packet in [*video.encode(frame), *video.encode()]:
            container.mux(packet)
    assert probe(path).bit_depth == 10
    with VideoReader(path) as reader:
        red = reader.frame(0)[:, :, 0].astype(int).ravel()
    assert np.all(np.diff(red) >= 0) and red[0] == 0 and red[-1] == 255
    assert np.abs(red - np.round(np.arange(1024) * 255 / 1023)).max() <= 1
    split = sum(len(set(red[k : k + 4])) > 1 for k in range(0, 1024, 4))
    assert split > 64  # an 8-bit decode (levels >> 2) splits none of the 256 groups


def test_the_denoise_window_reads_the_neighbouring_frames(tmp_path):
    """Changing only frame 5 of the source changes the denoised frame 4 (its neighbour), so the
    window really feeds the neighbours in, not just the frame itself."""
    from pipeline.footage import footage_frames

    frames = list(footage_frames(8, 64, 48, scene="cat"))
    outputs = []
    for variant in ("plain", "changed"):
        path = tmp_path / f"{variant}.mkv"
        with av.open(str(path), "w") as container:
            video = container.add_stream("ffv1", rate=24)
            video.width, video.height, video.pix_fmt = 64, 48, "bgr0"
            for i, image in enumerate(frames):
                if variant == "changed" and i == 5:
                    image = 255 - image
                for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
        params = StyleParams(engine="classical", look="denoise", denoise_window=3, temporal_flow=False)
        events = list(render_frames(RenderRequest(path, params, 0, 8, use_cache=False)))
        outputs.append({e.index: e.image.astype(int) for e in events if isinstance(e, FrameReady)})
    plain, changed = outputs
    assert np.abs(plain[4] - changed[4]).mean() > 0.2  # frame 5 is in frame 4's window
    assert np.array_equal(plain[2], changed[2])  # frame 5 is outside frame 2's window


def test_a_removed_source_is_named_as_the_cause(clips, tmp_path):
    """Item 13: an OSError about the source is reported as the source, not as the frame cache or the output."""
    source = tmp_path / "moved.mkv"
    source.write_bytes(clips["mkv"].read_bytes())
    events = []
    for event in render_frames(RenderRequest(source, COPY, 0, 12, OutputSpec(tmp_path / "out.mp4"))):
        events.append(event)
        if len(events) == 1:
            source.unlink()  # the drive is unplugged after the render started
    assert isinstance(events[-1], Failed)
    assert str(source) in events[-1].message or source.name in events[-1].message
    assert "frame cache" not in events[-1].message and "out.mp4" not in events[-1].message
    assert not list(tmp_path.glob(".*partial*"))
