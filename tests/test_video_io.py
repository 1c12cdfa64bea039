"""Probe, read and write real clips made by PyAV."""

from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.errors import BadInputError, OutputError
from pipeline.request import OutputSpec
from pipeline.sample import make_sample_clip
from pipeline.video import VideoReader, VideoWriter, probe, verify_output


def test_probe_reports_exact_rational_rate_count_and_audio(ntsc_clip):
    info = probe(ntsc_clip)
    assert info.fps == Fraction(30000, 1001)
    assert info.frame_count == 30
    assert (info.width, info.height) == (160, 96)
    assert info.duration == pytest.approx(30 * 1001 / 30000, abs=1e-6)
    assert info.has_audio and info.audio[0].codec == "aac"
    assert info.to_json()["fps"] == "30000/1001"
    assert not info.vfr


def test_sequential_and_random_access_give_the_same_frames(sample_clip):
    reader = VideoReader(sample_clip)
    frames = dict(reader.iter_frames())
    assert sorted(frames) == list(range(48))
    assert len({frames[i].tobytes() for i in frames}) == 48  # every frame differs
    for index in [47, 0, 23, 24, 5, 46, 12, 13, 14]:
        assert np.array_equal(reader.frame(index), frames[index]), index
    part = dict(reader.iter_frames(30, 35))
    assert sorted(part) == [30, 31, 32, 33, 34]
    assert all(np.array_equal(part[i], frames[i]) for i in part)
    reader.close()


def test_rotation_is_applied(clip_dir):
    path = make_sample_clip(clip_dir / "rotated.mp4", frames=4, width=64, height=32, rotation=90)
    info = probe(path)
    assert info.rotation == 90
    assert (info.width, info.height) == (32, 64)
    with VideoReader(path) as reader:
        assert reader.frame(0).shape == (64, 32, 3)


def test_variable_frame_rate_keeps_source_timestamps(clip_dir, tmp_path):
    path = make_sample_clip(clip_dir / "vfr.mp4", frames=12, width=64, height=48, vfr=True)
    info = probe(path)
    assert info.vfr
    out = tmp_path / "vfr_out.mp4"
    with VideoReader(path) as reader:
        writer = VideoWriter(OutputSpec(out), (64, 48), info.fps, info.time_base, info)
        for index, image in reader.iter_frames():
            writer.write(image, info.pts[index] - info.pts[0])
        writer.finish()
    written = probe(out)
    source_times = [info.frame_time(i) for i in range(info.frame_count)]
    assert [written.frame_time(i) for i in range(written.frame_count)] == pytest.approx(source_times, abs=1e-4)


def test_ten_bit_input_is_read_at_full_depth(clip_dir):
    path = make_sample_clip(clip_dir / "hevc10.mkv", frames=4, width=64, height=48, codec="libx265",
                            pix_fmt="yuv420p10le", audio=False)
    info = probe(path)
    assert info.bit_depth == 10
    with VideoReader(path) as reader:
        image = reader.frame(2)
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    assert image.std() > 10  # real picture content, not a blank conversion


@pytest.mark.parametrize("codec,suffix", [("h264", ".mp4"), ("h265", ".mp4"), ("prores", ".mov")])
def test_writer_codecs_keep_count_rate_and_audio(sample_clip, tmp_path, codec, suffix):
    info = probe(sample_clip)
    out = tmp_path / f"out{suffix}"
    with VideoReader(sample_clip) as reader:
        writer = VideoWriter(OutputSpec(out, codec=codec), (info.width, info.height), info.fps, info.time_base,
                             info, (info.frame_time(10), info.frame_time(10) + info.range_duration(10, 20)))
        for index, image in reader.iter_frames(10, 20):
            writer.write(image, info.pts[index] - info.pts[10])
        writer.finish()
    result = verify_output(out, frames=10, fps=info.fps, duration=info.range_duration(10, 20), audio=True,
                           size=(info.width, info.height))
    assert result.ok, result.checks
    written = probe(out)
    assert written.codec == {"h264": "h264", "h265": "hevc", "prores": "prores"}[codec]
    with av.open(str(out)) as container:  # audio trimmed to the range
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(10 / 24, abs=0.06)
    assert not list(tmp_path.glob(".*partial*"))


def test_odd_sizes_are_padded_to_even(tmp_path):
    info_like = Fraction(24), Fraction(1, 24)
    out = tmp_path / "odd.mp4"
    writer = VideoWriter(OutputSpec(out, audio=False), (33, 17), *info_like)
    image = np.full((17, 33, 3), 200, np.uint8)
    for i in range(3):
        writer.write(image, i)
    writer.finish()
    info = probe(out)
    assert (info.width, info.height) == (34, 18)
    with VideoReader(out) as reader:
        assert np.abs(reader.frame(0).astype(int) - 200).max() < 6  # the padding repeats the edge


def test_png_sequence(tmp_path):
    out = tmp_path / "frames"
    writer = VideoWriter(OutputSpec(out, codec="png"), (31, 15), Fraction(24), Fraction(1, 24))
    for i in range(4):
        writer.write(np.full((15, 31, 3), i * 40, np.uint8), i)
    writer.finish()
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(4)]
    assert verify_output(out, frames=4, fps=Fraction(24), duration=4 / 24, audio=False, size=(31, 15)).ok


def test_aborted_write_leaves_existing_target_untouched(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous export")
    writer = VideoWriter(OutputSpec(out, audio=False), (32, 32), Fraction(24), Fraction(1, 24))
    writer.write(np.zeros((32, 32, 3), np.uint8), 0)
    writer.abort()
    assert out.read_bytes() == b"previous export"
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (bytes(range(256)) * 40, "not a video"),
])
def test_bad_files_get_clear_messages(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        probe(path)


def test_missing_audio_only_and_truncated_files(tmp_path, sample_clip):
    with pytest.raises(BadInputError, match="not found"):
        probe(tmp_path / "missing.mp4")
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(BadInputError, match="audio-only"):
        probe(audio_only)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(sample_clip.read_bytes()[: 3000])
    with pytest.raises(BadInputError):
        probe(truncated)


def test_unwritable_output_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(OutputSpec(tmp_path / "nope" / "out.mp4"), (32, 32), Fraction(24), Fraction(1, 24))


def test_audio_the_container_cannot_take_is_re_encoded_to_aac(tmp_path):
    source = tmp_path / "pcm.mkv"
    with av.open(str(source), "w") as container:
        video = container.add_stream("ffv1", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=48000)
        sound.layout = "stereo"
        for i in range(24):
            image = np.full((48, 64, 3), i * 10, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = (np.sin(np.arange(48000) / 10) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*sound.encode(frame), *sound.encode()]:
            container.mux(packet)
    info = probe(source)
    assert info.audio[0].codec == "pcm_s16le"
    out = tmp_path / "out.mp4"
    writer = VideoWriter(OutputSpec(out), (64, 48), info.fps, info.time_base, info, (0.0, info.duration))
    assert not writer.audio_copied  # MP4 does not take PCM: re-encoded
    with VideoReader(source) as reader:
        for index, image in reader.iter_frames():
            writer.write(image, info.pts[index] - info.pts[0])
    writer.finish()
    written = probe(out)
    assert written.audio[0].codec == "aac" and written.audio[0].channels == 2
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(1.0, abs=0.05)


def test_window_reader_gives_each_frame_its_neighbours_in_one_pass(sample_clip):
    from pipeline.video.window import frames_with_neighbors

    info = probe(sample_clip)
    with VideoReader(sample_clip, info) as reader:
        every = [reader.frame(i) for i in range(info.frame_count)]
    last = info.frame_count - 1
    seen = list(frames_with_neighbors(info, 0, info.frame_count, radius=2))
    assert [index for index, *_ in seen] == list(range(info.frame_count))
    for index, frame, neighbours, centre in seen:
        first = index - centre  # the window is a run of consecutive frames holding every frame within the radius
        assert first <= max(0, index - 2) and first + len(neighbours) - 1 >= min(last, index + 2)
        assert len(neighbours) <= 5 and np.array_equal(frame, every[index])
        assert all(np.array_equal(n, every[first + i]) for i, n in enumerate(neighbours))

    # frames not wanted (cached) come empty, and nothing wanted decodes nothing
    partial = list(frames_with_neighbors(info, 2, 6, radius=1, wanted={3, 5}))
    assert [(i, f is None) for i, f, _, _ in partial] == [(2, True), (3, False), (4, True), (5, False)]
    assert all(f is None for _, f, _, _ in frames_with_neighbors(info, 0, 4, radius=1, wanted=set()))
