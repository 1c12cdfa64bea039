"""Rendering on a Ray cluster (pipeline.cluster): a real head started with `ray start --head` on
loopback, real actors, the real CLI; frames compared with a single-machine render of the same clip."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves this machine
os.environ["RAY_AUTH_MODE"] = "disabled"  # no token file written into the home folder
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's switch that keeps its node on 127.0.0.1

from pipeline.cache import FrameCache  # noqa: E402
from pipeline.cluster import render_on_cluster  # noqa: E402
from pipeline.cluster.address import parse_address  # noqa: E402
from pipeline.cluster.chunks import Chunk, chunk_boundaries, plan_chunks, warm_start  # noqa: E402
from pipeline.cluster.progress import ClusterProgress, WorkerLost  # noqa: E402
from pipeline.cluster.transfer import CODECS, pack, unpack  # noqa: E402
from pipeline.errors import BadInputError  # noqa: E402
from pipeline.events import Failed, Finished, FrameReady  # noqa: E402
from pipeline.footage import make_footage_clip  # noqa: E402
from pipeline.render import open_cache_entry, render_frames  # noqa: E402
from pipeline.engines import create_engine  # noqa: E402
from pipeline.request import OutputSpec, RenderRequest, StyleParams  # noqa: E402
from pipeline.temporal.metrics import pair_warp_error  # noqa: E402
from pipeline.video import VideoReader, probe  # noqa: E402

pytestmark = pytest.mark.cluster
RAY = Path(sys.executable).with_name("ray")
VDIFF = [sys.executable, "-m", "pipeline"]


# -- pure parts: no cluster needed ------------------------------------------------------------------

def test_chunks_cover_the_range_once_long_first_short_last():
    cuts = chunk_boundaries(10, 2010, workers=4, max_frames=240, min_frames=24)
    assert cuts[0][0] == 10 and cuts[-1][1] == 2010
    assert all(a < b for a, b in cuts) and all(cuts[i][1] == cuts[i + 1][0] for i in range(len(cuts) - 1))
    sizes = [b - a for a, b in cuts]
    assert sizes[0] == 240 and sizes == sorted(sizes, reverse=True) and sizes[-2] == 24


def test_chunk_cuts_move_to_keyframes_and_resume_plans_only_missing_frames():
    cuts = chunk_boundaries(0, 100, workers=1, max_frames=30, min_frames=30, keyframes=[0, 25, 50, 75])
    assert cuts == [(0, 25), (25, 50), (50, 75), (75, 100)]
    chunks = plan_chunks({*range(0, 5), *range(20, 40)}, workers=1, max_frames=8, min_frames=8)
    assert [(c.start, c.end) for c in chunks] == [(0, 5), (20, 28), (28, 36), (36, 40)]


def test_warm_start_continues_from_a_known_frame_else_renders_an_overlap():
    chunk = Chunk(50, 60)
    assert warm_start(chunk, 0, propagates=False, known=lambda i: False).first == 50
    assert warm_start(chunk, 0, propagates=True, known=lambda i: i == 49).seed == 49
    assert warm_start(chunk, 0, propagates=True, known=lambda i: False, overlap=6).first == 44
    assert warm_start(chunk, 47, propagates=True, known=lambda i: False, overlap=6).first == 47


def test_packed_frames_come_back_identical():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for codec in CODECS:
        assert np.array_equal(unpack(pack(image, codec)), image), codec


def test_cluster_addresses_are_checked_and_an_unreachable_head_fails_in_one_line(tmp_path):
    for good in ("auto", "local", "10.0.0.5:6379", "ray://head:10001"):
        assert parse_address(good) == good
    for bad in ("", "head", "head:port", "ray://head", "10.0.0.5:99999"):
        with pytest.raises(BadInputError):
            parse_address(bad)
    clip = make_footage_clip(tmp_path / "c.mp4", frames=4, width=64, height=48, audio=False)
    port = _free_port()
    run = subprocess.run([*VDIFF, "render", str(clip), "-o", str(tmp_path / "o.mp4"), "--cluster", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "cannot reach the Ray cluster" in run.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_a_worker_that_does_not_see_the_source_renders_from_the_copy_it_is_sent(tmp_path):
    """The worker's own code, in-process: a node without shared storage gets the encoded file once."""
    from pipeline.cache import source_identity
    from pipeline.cluster.worker import ChunkWorker

    clip = make_footage_clip(tmp_path / "clip.mp4", frames=8, width=64, height=48, audio=False)
    params = StyleParams(temporal_flow=False, keyframe_interval=1)  # a cluster renders every frame
    worker = ChunkWorker(params.to_dict(), 1, "lz4")
    elsewhere = {**source_identity(clip), "size": clip.stat().st_size + 1}  # the driver's file is another one
    assert worker.load(str(clip), elsewhere)["sees_source"] is False
    worker.receive_source(clip.read_bytes(), ".mp4")
    frames = dict((i, unpack(d)) for i, d in worker.render_chunk(
        {"start": 3, "end": 6, "first": 3, "range_start": 0, "seed": None, "anchor": None}))
    copy = worker.source
    worker.close()
    assert not copy.exists()  # the copy goes with the worker
    local = _local_frames(RenderRequest(clip, params, 0, 8), tmp_path / "local")
    assert sorted(frames) == [3, 4, 5] and all(np.array_equal(frames[i], local[i]) for i in frames)


def test_a_region_edit_is_refused_on_a_cluster_in_one_message(tmp_path):
    import cv2

    clip = make_footage_clip(tmp_path / "clip.mp4", frames=4, width=64, height=48, audio=False)
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.full((48, 64), 255, np.uint8))
    events = list(render_on_cluster(RenderRequest(clip, StyleParams(mask=str(mask))), "127.0.0.1:1"))
    assert len(events) == 1 and isinstance(events[0], Failed) and events[0].exit_code == 2
    assert "do not run on a cluster" in events[0].message


# -- a real head on loopback ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(folder: Path) -> list[int]:
    """Pids of processes whose command line names `folder` (the head's temp dir): ours and no other."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _start_head(temp: Path, port: int) -> subprocess.Popen:
    """`ray start --head --block` in its own process group; returns once its GCS and raylet are up."""
    command = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
               "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}", "--object-store-memory=200000000",
               "--disable-usage-stats", "--include-log-monitor=false", "--block"]
    log = temp / "head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            _stop_head(head, temp)
            raise RuntimeError(f"ray start failed: {log.read_text(errors='replace')[-600:]}")
        time.sleep(0.3)
    return head


def _stop_head(head: subprocess.Popen, temp: Path) -> None:
    """Kill exactly what _start_head started: its process group and the processes under its temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            pass
        for pid in _processes_under(temp):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.5 if sig == signal.SIGTERM else 0)
    head.wait(timeout=30)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs and a 200 MB object store, in its own process group and temp
    dir; the finalizer kills exactly that (no `ray stop`, which would stop every Ray on this machine).
    On a machine so loaded that the raylet misses Ray's 30 s start-up wait, it tries again."""
    for attempt in range(3):
        temp = tmp_path_factory.mktemp("ray")
        port = _free_port()
        try:
            head = _start_head(temp, port)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_head(head, temp)


def _frames(entry, start, end) -> list[np.ndarray]:
    return [entry.load(i) for i in range(start, end)]


def _local_frames(request: RenderRequest, root: Path) -> list[np.ndarray]:
    cache = FrameCache(root)
    events = list(render_frames(RenderRequest(request.source, request.params, request.start, request.end), cache=cache))
    assert isinstance(events[-1], Finished), events[-1]
    entry = open_cache_entry(cache, probe(request.source), create_engine(request.params), request.start)
    return _frames(entry, request.start, request.end)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_cluster_render_equals_the_local_one_keeps_audio_and_survives_a_killed_worker(ray_head, tmp_path):
    clip = make_footage_clip(tmp_path / "clip.mp4", frames=36, width=128, height=72)
    params = StyleParams(temporal_flow=False, keyframe_interval=1)  # a cluster renders every frame  # every frame stands alone: the frames must be identical
    output = tmp_path / "out.mp4"
    request = RenderRequest(clip, params, 0, 36, OutputSpec(output))
    cache = FrameCache(tmp_path / "cluster-cache")
    killed, lost = None, []
    events = []
    for event in render_on_cluster(request, ray_head, cache=cache, chunk_frames=4):
        events.append(event)
        if isinstance(event, ClusterProgress) and killed is None and event.workers:
            victim = event.workers[-1]
        if isinstance(event, FrameReady) and killed is None:  # mid-render: kill a worker process outright
            killed = victim
            os.kill(victim.pid, signal.SIGKILL)
        if isinstance(event, WorkerLost):
            lost.append(event)
    assert isinstance(events[-1], Finished), events[-1]
    assert events[-1].verification["ok"] and probe(output).has_audio and probe(output).frame_count == 36
    assert [e.index for e in events if isinstance(e, FrameReady)] == list(range(36))
    assert [w.worker.pid for w in lost] == [killed.pid] and lost[0].worker.node == "127.0.0.1"
    assert not _pid_alive(killed.pid)
    entry = open_cache_entry(cache, probe(clip), create_engine(params), 0)
    assert entry.indices() >= set(range(36))  # no frame lost
    local = _local_frames(request, tmp_path / "local-cache")
    for index, (a, b) in enumerate(zip(_frames(entry, 0, 36), local)):
        assert np.array_equal(a, b), f"frame {index} differs from the local render"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_cli_cluster_render_with_defaults_matches_local_at_the_seams(ray_head, tmp_path):
    frames, start, chunk = 34, 2, 8
    clip = make_footage_clip(tmp_path / "clip.mp4", frames=frames, width=128, height=72)
    out = tmp_path / "out.mp4"
    run = subprocess.run([*VDIFF, "render", str(clip), "-o", str(out), "--start", str(start), "--cluster", ray_head,
                          "--chunk-frames", str(chunk)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert re.search(r"cluster: worker 2 on node 127\.0\.0\.1 \(pid \d+\)", run.stderr)
    assert probe(out).has_audio and probe(out).frame_count == frames - start
    params = StyleParams(keyframe_interval=1)  # the CLI's defaults (flow propagation on), every frame as a cluster renders
    entry = open_cache_entry(FrameCache(), probe(clip), create_engine(params), start)
    cluster = _frames(entry, start, frames)
    local = _local_frames(RenderRequest(clip, params, start, frames), tmp_path / "local-cache")
    assert min(_psnr(a, b) for a, b in zip(cluster, local)) >= 40.0
    with VideoReader(clip) as reader:
        sources = [reader.frame(i) for i in range(start, frames)]
    seams = [a - start for a, _ in chunk_boundaries(start, frames, 2, chunk, chunk)][1:]
    assert seams == [8, 16, 24]

    def seam_error(outputs):
        errors = []
        for s in seams:
            errors.append(pair_warp_error((sources[s - 1], sources[s]), (outputs[s - 1], outputs[s])))
        return float(np.mean(errors))

    assert seam_error(cluster) <= 1.1 * seam_error(local)


def test_ctrl_c_stops_the_workers_exits_130_and_resume_after_it_or_a_kill_sends_only_missing_frames(ray_head, tmp_path):
    frames = 60
    clip = make_footage_clip(tmp_path / "clip.mp4", frames=frames, width=128, height=72)
    out = tmp_path / "out.mp4"
    command = [*VDIFF, "render", str(clip), "-o", str(out), "--cluster", ray_head, "--chunk-frames", "4",
               "--no-temporal-flow"]
    folder = Path(os.environ["XDG_CACHE_HOME"]) / "vdiff" / "frames"
    driver = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list(folder.glob("*/*.vdf"))) < 6:
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.02)
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130, stderr
    assert "run again with --resume" in stderr and not out.exists()
    pids = [int(p) for p in re.findall(r"cluster: worker \d+ on node 127\.0\.0\.1 \(pid (\d+)\)", stderr)]
    assert len(pids) == 2
    time.sleep(1.0)
    assert not any(_pid_alive(pid) for pid in pids), "the remote work goes on after Ctrl+C"
    have = len(list(folder.glob("*/*.vdf")))
    assert 6 <= have < frames
    # a driver killed outright loses nothing either: every frame that arrived is in the cache
    killed = subprocess.Popen([*command, "--resume"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    while len(list(folder.glob("*/*.vdf"))) < have + 6:
        assert killed.poll() is None and time.monotonic() < deadline + 120
        time.sleep(0.02)
    killed.kill()
    killed.wait(timeout=30)
    have = len(list(folder.glob("*/*.vdf")))
    assert have < frames
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {have} of {frames} frames recovered" in resumed.stderr
    assert f"({frames} frames, {frames - have} rendered" in resumed.stdout  # only the missing ones were sent
    assert probe(out).frame_count == frames


CRASH_AFTER_A_CLUSTER = """
import ctypes, faulthandler, sys
from pipeline.cluster.address import FATAL_SIGNALS, SIGACTION_BYTES, connect, disconnect

def handlers():
    actions = [ctypes.create_string_buffer(SIGACTION_BYTES) for _ in FATAL_SIGNALS]
    for number, action in zip(FATAL_SIGNALS, actions):
        ctypes.CDLL(None).sigaction(number, None, action)
    return [action.raw[:ctypes.sizeof(ctypes.c_void_p)] for action in actions]  # sa_handler, its first field

faulthandler.enable()
before = handlers()
connect(sys.argv[1])
print("connected, handlers kept:", handlers() == before, flush=True)
disconnect()
print("disconnected, handlers kept:", handlers() == before, flush=True)
ctypes.string_at(0)  # a native crash
"""


def test_a_native_crash_after_a_cluster_render_still_prints_pythons_traceback(ray_head):
    # Ray's driver puts its own fatal-signal handlers in place, writing to its log: a crash said nothing
    run = subprocess.run([sys.executable, "-c", CRASH_AFTER_A_CLUSTER, ray_head], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).parent.parent)
    assert run.returncode == -signal.SIGSEGV, run.stderr[-2000:]
    assert "connected, handlers kept: True" in run.stdout and "disconnected, handlers kept: True" in run.stdout
    assert "Fatal Python error: Segmentation fault" in run.stderr and "string_at" in run.stderr, run.stderr[-2000:]


def test_an_engine_error_on_a_worker_names_the_worker_and_its_node(ray_head, tmp_path):
    clip = make_footage_clip(tmp_path / "clip.mp4", frames=4, width=64, height=48, audio=False)
    style = tmp_path / "style.png"  # exists here, so the driver accepts it; damaged, so the workers fail
    style.write_bytes(b"not a picture")
    events = list(render_on_cluster(RenderRequest(clip, StyleParams(style_image=str(style))), ray_head))
    assert isinstance(events[-1], Failed)
    assert re.match(r"worker \d on node 127\.0\.0\.1 could not load the engine: ", events[-1].message), events[-1].message
    assert events[-1].exit_code == 2
