"""What a cluster render costs per frame, and the speed-up it models for 1 to 64 GPUs: prints, writes JSON.

    python bench/cluster.py            # about 2-4 minutes on 2 cores (starts a local Ray on loopback)
    python bench/cluster.py --quick    # fewer repeats

1. Per 1080p frame (a real fast-style frame at 1920x1080), alternating the peers `--repeats` times and
   taking medians: packing for the object store (PNG level 1, zlib level 1, raw) and unpacking; the
   frame cache's store and load; writing H.264; decoding a source frame (what a worker on shared
   storage does) against the bytes a frame costs to ship encoded or decoded.
2. Through Ray itself (a local Ray on 127.0.0.1): an actor streams pre-packed 1080p frames to the
   driver, as a worker does; time per frame received, PNG against raw.
3. Seams: a clip rendered by the real worker code (pipeline.cluster.worker.ChunkWorker, in-process)
   in chunks with 0, 2, 4, 6 and 8 frames of overlap against a single-machine render: PSNR of the
   frames after each seam and the seam warp error relative to the single-machine one.
4. The model: chunk_boundaries' real schedule for a 9,000-frame render on G GPUs, each frame costing
   the engine E plus the worker's overhead, the driver's per-frame cost as a serial bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from pipeline.cluster.transfer import CODECS, pack, unpack  # noqa: E402

GPUS = (1, 2, 4, 8, 16, 32, 64)
CLIP_FRAMES = 9000  # 5 minutes at 30 fps
LINKS = {"10 GbE": 1.25e9, "1 GbE": 0.125e9}  # bytes per second


def timed(fn, *args) -> float:
    """CPU seconds of this thread for fn(*args): what the work needs of a core, which the other work
    on a loaded machine changes far less than the wall time."""
    began = time.thread_time()
    fn(*args)
    return time.thread_time() - began


def alternate(peers: dict, repeats: int) -> dict:
    """Median CPU seconds of each peer, run in turn `repeats` times so that load hits them alike."""
    times = {name: [] for name in peers}
    for _ in range(repeats):
        for name, fn in peers.items():
            times[name].append(timed(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def stylized_1080p() -> tuple[np.ndarray, float]:
    """One real fast-style frame at 1920x1080, and what the engine took for it here (CPU)."""
    from pipeline.engines import FrameContext, create_engine
    from pipeline.footage import footage_frames
    from pipeline.request import StyleParams

    frame = next(iter(footage_frames(1, 1920, 1080)))
    engine = create_engine(StyleParams(style="7"))
    engine.prepare()
    engine.process(frame, FrameContext(0))  # warm
    seconds = timed(engine.process, frame, FrameContext(0))
    image = engine.process(frame, FrameContext(0))
    engine.close()
    return image, seconds


def frame_costs(image: np.ndarray, repeats: int, folder: Path) -> dict:
    from fractions import Fraction

    from pipeline.cache import FrameCache
    from pipeline.footage import make_footage_clip
    from pipeline.video import VideoReader, VideoWriter
    from pipeline.request import OutputSpec

    packed = {codec: pack(image, codec) for codec in CODECS}
    peers = {f"pack {codec}": (lambda c=codec: pack(image, c)) for codec in CODECS}
    peers.update({f"unpack {codec}": (lambda c=codec: unpack(packed[c])) for codec in CODECS})
    entry = FrameCache(folder / "cache").entry("bench")
    peers["cache store"] = lambda: entry.store(0, image)
    peers["cache load"] = lambda: entry.load(0)
    result = {name: seconds for name, seconds in alternate(peers, repeats).items()}
    result["bytes"] = {codec: len(data) for codec, data in packed.items()}
    # H.264 at 1080p, as the driver's writer does it (CRF 18, the default)
    frames = 12
    writer = VideoWriter(OutputSpec(folder / "w.mp4"), (1920, 1080), Fraction(30), Fraction(1, 30))
    began = time.process_time()  # x264 runs threads of its own: all of their CPU time
    for i in range(frames):
        writer.write(image, i + 1)
    writer.finish()
    result["write h264"] = (time.process_time() - began) / frames
    # the source: a worker decodes it (shared storage) or receives it encoded (once) or decoded (per frame)
    clip = make_footage_clip(folder / "src.mp4", frames=24, width=1920, height=1080, fps=30, audio=False)
    with VideoReader(clip) as reader:
        began = time.process_time()
        for _ in reader.iter_frames(0, 24):
            pass
        result["decode source"] = (time.process_time() - began) / 24
    result["source bytes per frame encoded"] = clip.stat().st_size / 24
    result["source bytes per frame decoded"] = 1920 * 1080 * 3
    return result


def ray_transfer(image: np.ndarray, frames: int) -> dict:
    """Wall seconds per frame received (and unpacked) from an actor's streaming generator, pre-packed."""
    import ray

    from pipeline.cluster.address import connect, disconnect

    connect("local")
    try:
        @ray.remote(num_cpus=1)
        class Source:
            def __init__(self, blobs):
                self.blobs = blobs

            def stream(self, codec, count):
                for _ in range(count):
                    yield self.blobs[codec]

        codecs = ("lz4", "raw")
        blobs = {codec: pack(image, codec) for codec in codecs}
        actor = Source.remote(blobs)
        ray.get(actor.stream.options(num_returns="streaming").remote("raw", 1).__next__())  # warm
        out = {}
        for codec in codecs * 3:
            began = time.perf_counter()
            for ref in actor.stream.options(num_returns="streaming", _generator_backpressure_num_objects=8).remote(codec, frames):
                unpack(ray.get(ref))
            out.setdefault(codec, []).append((time.perf_counter() - began) / frames)
        return {f"ray stream + unpack {codec}": min(values) for codec, values in out.items()}
    finally:
        disconnect()


def seams(folder: Path, overlaps=(0, 2, 4, 6, 8), frames: int = 41, chunk: int = 8) -> dict:
    """The worker's own code, chunk by chunk, against one render of the whole range (fast-style defaults)."""
    from pipeline.cache import FrameCache, source_identity
    from pipeline.cluster.chunks import Chunk, chunk_boundaries, warm_start
    from pipeline.cluster.worker import ChunkWorker
    from pipeline.footage import make_footage_clip
    from pipeline.render import render_frames
    from pipeline.request import RenderRequest, StyleParams
    from pipeline.temporal.metrics import pair_warp_error
    from pipeline.video import VideoReader
    from pipeline.events import FrameReady

    clip = make_footage_clip(folder / "seams.mp4", frames=frames, width=192, height=108, audio=False)
    params = StyleParams()
    local = {e.index: e.image for e in render_frames(RenderRequest(clip, params), cache=FrameCache(folder / "l"))
             if isinstance(e, FrameReady)}
    with VideoReader(clip) as reader:
        sources = [reader.frame(i) for i in range(frames)]
    worker = ChunkWorker(params.to_dict(), 1, "lz4")
    worker.load(str(clip), source_identity(clip))
    cuts = chunk_boundaries(0, frames, 2, chunk, chunk)
    starts = [a for a, _ in cuts[1:]]

    def seam_error(outputs):
        errors = []
        for s in starts:
            errors.append(pair_warp_error((sources[s - 1], sources[s]), (outputs[s - 1], outputs[s])))
        return float(np.mean(errors))

    base = seam_error(local)
    rows = {}
    for overlap in overlaps:
        out = {}
        for a, b in cuts:
            warm = warm_start(Chunk(a, b), 0, True, lambda i: False, overlap)
            task = {"start": a, "end": b, "first": warm.first, "range_start": 0, "seed": None, "anchor": None}
            for index, data in worker.render_chunk(task):
                out[index] = unpack(data)
        psnr = []
        for s in starts:
            mse = np.mean((out[s].astype(np.float64) - local[s].astype(np.float64)) ** 2)
            psnr.append(float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))
        rows[overlap] = {"min psnr at seam": min(psnr), "seam warp error / local": seam_error(out) / base,
                         "max level difference": int(max(np.abs(out[s].astype(int) - local[s]).max() for s in starts))}
    worker.close()
    return {"chunk frames": chunk, "seams": len(starts), "by overlap": rows}


def driver_bound(costs: dict, mb: dict, cores: int, link_rate: float, codec: str = "lz4") -> dict:
    """Seconds per frame the driver needs at least: its Python-bound part (receiving a frame through Ray,
    measured with raw frames) one frame at a time; unpacking, the cache write and x264 (threads that run
    outside the GIL) spread over its `cores`; and the frame's bytes through its one network link."""
    serial = costs["ray stream + unpack raw"]
    parallel = (costs[f"ray stream + unpack {codec}"] - serial) + costs["cache store"] + costs["write h264"]
    parts = {"python": serial, "cpu": (serial + parallel) / cores, "link": mb[codec] * 1e6 / link_rate}
    return {"seconds": max(parts.values()), "parts": parts}


def model(engine_s: float, worker_overhead_s: float, driver_s: float, overlap: int, overlapped: bool = True) -> dict:
    """Speed-up over one GPU for G GPUs: the real chunk schedule, greedy (each worker takes the next chunk),
    against the driver's bound (it takes every frame). `overlapped`: a worker packs and sends frame t while
    its engine renders t+1 (render_span's stages are threads), so a frame costs max(E, overhead); else E + overhead."""
    per_frame = max(engine_s, worker_overhead_s) if overlapped else engine_s + worker_overhead_s
    import heapq

    from pipeline.cluster.chunks import chunk_boundaries

    single = CLIP_FRAMES * engine_s  # a local render on one GPU: the engine bounds it
    rows = {}
    for gpus in GPUS:
        cuts = chunk_boundaries(0, CLIP_FRAMES, gpus)
        free = [0.0] * gpus
        heapq.heapify(free)
        warm_frames = 0
        for a, b in cuts:
            warm = overlap if a > 0 else 0
            warm_frames += warm
            t = heapq.heappop(free)
            heapq.heappush(free, t + (b - a + warm) * per_frame)
        workers_s, driver_total = max(free), CLIP_FRAMES * driver_s
        rows[gpus] = {"speed-up": single / max(workers_s, driver_total), "chunks": len(cuts),
                      "overlap frames": warm_frames, "workers s": workers_s, "driver s": driver_total,
                      "driver bound": driver_total > workers_s}
    return rows


def report(result: dict, engine_seconds: list[float]) -> dict:
    costs, mb = result["costs_s"], result["packed_mb"]
    models = {}
    for link, rate in LINKS.items():
        worker = costs["pack lz4"] + mb["lz4"] * 1e6 / rate  # packing and sending a frame
        for cores, overlapped in ((8, True), (8, False), (1, True)):
            bound = driver_bound(costs, mb, cores, rate)
            for engine_s in engine_seconds:
                key = f"{link}, driver {cores} cores, {'overlapped' if overlapped else 'serial'} worker, E={engine_s}s"
                rows = models[key] = model(engine_s, worker, bound["seconds"], 6, overlapped)
                print(f"model {key}: worker +{worker * 1000:.0f} ms/frame, driver {bound['seconds'] * 1000:.1f} ms/frame "
                      f"({', '.join(f'{k} {v * 1000:.1f}' for k, v in bound['parts'].items())}): "
                      + ", ".join(f"{g}: {r['speed-up']:.1f}x" for g, r in rows.items()))
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--engine-seconds", type=float, nargs="*", default=[0.5, 1.0, 2.0],
                        help="GPU engine times per 1080p frame to model (not measured here: no GPU)")
    parser.add_argument("--model-only", action="store_true", help="recompute the model from bench/results/cluster.json")
    args = parser.parse_args()
    out = ROOT / "bench" / "results" / "cluster.json"
    if args.model_only:
        result = json.loads(out.read_text())
        result["models"] = report(result, args.engine_seconds)
        out.write_text(json.dumps(result, indent=1, default=str))
        return 0
    repeats = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image, engine_cpu = stylized_1080p()
        costs = frame_costs(image, repeats, folder)
        costs["engine fast-style 1080p (this CPU)"] = engine_cpu
        costs.update(ray_transfer(image, 8 if args.quick else 24))
        seam = seams(folder)
    mb = {k: v / 1e6 for k, v in costs.pop("bytes").items()}
    print("per 1080p frame (medians; CPU ms, the Ray stream wall ms):")
    for name, seconds in costs.items():
        if "bytes" not in name:
            print(f"  {name:40s} {seconds * 1000:9.1f}")
    print("  packed sizes (MB): " + ", ".join(f"{c} {v:.2f}" for c, v in mb.items()))
    print(f"  source per frame: encoded {costs['source bytes per frame encoded'] / 1e3:.0f} kB, "
          f"decoded {costs['source bytes per frame decoded'] / 1e6:.1f} MB")
    print(f"seams ({seam['seams']} seams, chunks of {seam['chunk frames']}):")
    for overlap, row in seam["by overlap"].items():
        print(f"  overlap {overlap}: min PSNR {row['min psnr at seam']:.1f} dB, seam warp error "
              f"{row['seam warp error / local']:.3f}x local, max difference {row['max level difference']} levels")
    result = {"costs_s": costs, "packed_mb": mb, "seams": seam, "load": os.getloadavg()[0]}
    result["models"] = report(result, args.engine_seconds)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
