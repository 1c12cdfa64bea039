"""Core benchmark: render-loop overhead and memory flatness, measured side by side in one run.

    python bench/core.py            # prints a table, writes bench/results/core.json

1. Render-loop fps vs engine-only fps on the same frames (goal: ratio >= 0.95). The engine-only side
   gets its frames pre-decoded in memory and writes nothing, and runs the engine as fast as it goes:
   its frame workers in parallel (one single-thread ONNX session per core; the sequential figure, one
   session on all cores, is reported too). The render loop decodes, renders, writes the frame cache
   and encodes H.264 with audio; it is timed with temporal consistency off (the same engine work) and
   on (the default: optical flow per frame, extra work, reported beside). Runs alternate; medians of
   `--repeats`.
2. Peak memory (max RSS of a `vdiff render` subprocess) for a 300- and a 3,000-frame clip
   (goal: growth <= 50 MB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.engines import FrameContext, create_engine  # noqa: E402
from pipeline.events import Finished  # noqa: E402
from pipeline.render import render_frames  # noqa: E402
from pipeline.request import OutputSpec, RenderRequest, StyleParams  # noqa: E402
from pipeline.sample import make_sample_clip  # noqa: E402
from pipeline.video import VideoReader  # noqa: E402


def engine_only_fps(clip: Path, params: StyleParams, parallel: bool) -> float:
    """The engine alone on pre-decoded frames: sequentially, or in its frame workers (the render's way)."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    with VideoReader(clip) as reader:
        frames = [image for _, image in reader.iter_frames()]
    engine = create_engine(params)
    engine.prepare()
    workers = getattr(engine, "frame_workers", 1) if parallel else 1
    with engine.parallel(workers) if workers > 1 else nullcontext(), ThreadPoolExecutor(workers) as pool:
        began = time.perf_counter()
        list(pool.map(lambda item: engine.process(item[1], FrameContext(item[0])), enumerate(frames)))
        seconds = time.perf_counter() - began
    return len(frames) / seconds


def render_loop_fps(clip: Path, params: StyleParams, workdir: Path) -> float:
    from pipeline.cache import FrameCache

    cache = FrameCache(workdir / f"cache-{time.monotonic_ns()}")  # a fresh cache: every frame is rendered
    request = RenderRequest(clip, params, output=OutputSpec(workdir / "out.mp4"))
    began = None
    for event in render_frames(request, cache=cache):
        if began is None:
            began = time.perf_counter()  # after prepare(), like the engine-only side
        if isinstance(event, Finished):
            assert event.verification["ok"] and event.rendered == event.total
            return event.total / (time.perf_counter() - began)
    raise RuntimeError(f"render did not finish: {event}")


PEAK_RSS = (
    "import resource, sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
)


def peak_memory_mb(clip: Path, workdir: Path) -> float:
    args = [sys.executable, "-c", PEAK_RSS, "render", str(clip), "-o", str(workdir / "mem.mp4"),
            "--max-side", "64", "--no-cache", "--quiet"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("PEAK_KB"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=96, help="frames in the overhead clip (default 96)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long", type=int, default=3000, help="frames in the long memory clip (default 3000)")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_sample_clip(work / "clip.mp4", frames=args.frames, width=640, height=360, fps=24)
        params = StyleParams(engine="fast-style", style="7", temporal_flow=False)
        runs: dict = {"engine_seq": [], "engine": [], "loop": [], "loop_default": []}
        for _ in range(args.repeats):  # alternate the sides so drift hits them alike
            runs["engine_seq"].append(engine_only_fps(clip, params, parallel=False))
            runs["engine"].append(engine_only_fps(clip, params, parallel=True))
            runs["loop"].append(render_loop_fps(clip, params, work))
            runs["loop_default"].append(render_loop_fps(clip, params.replace(temporal_flow=True), work))
        best = {side: statistics.median(values) for side, values in runs.items()}
        results["overhead"] = {
            "clip": f"{args.frames} frames 640x360, fast-style style 7, H.264 + AAC out, fresh cache",
            "engine_only_sequential_fps": round(best["engine_seq"], 2),
            "engine_only_fps": round(best["engine"], 2),
            "render_loop_fps": round(best["loop"], 2),
            "ratio": round(best["loop"] / best["engine"], 3),
            "render_loop_temporal_fps": round(best["loop_default"], 2),
            "goal": ">= 0.95",
            "runs_fps": {side: [round(v, 2) for v in values] for side, values in runs.items()},
        }
        short = make_sample_clip(work / "short.mp4", frames=300, width=128, height=72, fps=30)
        long = make_sample_clip(work / "long.mp4", frames=args.long, width=128, height=72, fps=30)
        short_mb, long_mb = peak_memory_mb(short, work), peak_memory_mb(long, work)
        results["memory"] = {
            "clip": "128x72 sample clips, fast-style at 64 px, H.264 + AAC out",
            "peak_mb_300_frames": round(short_mb, 1),
            f"peak_mb_{args.long}_frames": round(long_mb, 1),
            "growth_mb": round(long_mb - short_mb, 1),
            "goal": "<= 50 MB",
        }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "core.json").write_text(json.dumps(results, indent=2))
    o, m = results["overhead"], results["memory"]
    print(f"{'measure':40s} {'value':>12s}  goal")
    print(f"{'engine-only fps, one session, all cores':40s} {o['engine_only_sequential_fps']:12.2f}")
    print(f"{'engine-only fps, frame workers':40s} {o['engine_only_fps']:12.2f}")
    print(f"{'render-loop fps (decode+cache+encode)':40s} {o['render_loop_fps']:12.2f}")
    print(f"{'render loop / engine only':40s} {o['ratio']:12.3f}  >= 0.95")
    print(f"{'render-loop fps, temporal flow on':40s} {o['render_loop_temporal_fps']:12.2f}")
    print(f"{'peak RSS, 300 frames (MB)':40s} {m['peak_mb_300_frames']:12.1f}")
    print(f"{f'peak RSS, {args.long} frames (MB)':40s} {m[f'peak_mb_{args.long}_frames']:12.1f}")
    print(f"{'growth (MB)':40s} {m['growth_mb']:12.1f}  <= 50")
    print(f"wrote {out / 'core.json'}")


if __name__ == "__main__":
    main()
