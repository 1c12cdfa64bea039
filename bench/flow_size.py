"""Reduced-size optical flow against full-size flow: warp error, fidelity and flow cost on real-looking footage.

A consistent render computes its optical flow at a reduced size (pipeline.temporal.flow.FLOW_MAX_SIDE)
and brings it up to the frame's size. This renders the same footage clips (pipeline.footage: photographs
on a hand-held camera path with a parallax layer, shot noise) with the default fast-style settings and
the flow at several sizes, and measures every render the same way, with the full-size flow of
`vdiff metrics` (pipeline.temporal.metrics), against the per-frame render (fidelity reference).

    python bench/flow_size.py                   # 480p, 720p, 1080p, 24 frames each
    python bench/flow_size.py --frames 12 --sizes 480p
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.engines.base import resize_to  # noqa: E402
from pipeline.events import Failed, FrameReady  # noqa: E402
from pipeline.footage import make_footage_clip  # noqa: E402
from pipeline.profile import profiling  # noqa: E402
from pipeline.render import render_frames  # noqa: E402
from pipeline.request import RenderRequest, StyleParams  # noqa: E402
from pipeline.temporal import flow as flow_module  # noqa: E402
from pipeline.temporal.metrics import FlickerMeter, style_fidelity  # noqa: E402
from pipeline.video import VideoReader  # noqa: E402

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FLOW_SIDES = (0, 480, 320, 240)  # 0: the frame's own size (what renders did before)


def render(source: Path, params: StyleParams, frames: int, flow_side: int) -> tuple[list, list, dict]:
    """The frames, their Motion (if any) and the render's per-stage profile, with the flow at flow_side."""
    previous, flow_module.FLOW_MAX_SIDE = flow_module.FLOW_MAX_SIDE, flow_side
    images, motions = [], []
    try:
        with profiling() as profile:
            for event in render_frames(RenderRequest(source, params, 0, frames, use_cache=False)):
                if isinstance(event, Failed):
                    raise SystemExit(f"render failed: {event.message}")
                if isinstance(event, FrameReady):
                    images.append(event.image)
                    motions.append(event.motion)
        return images, motions, profile.to_json(frames)
    finally:
        flow_module.FLOW_MAX_SIDE = previous


def measure(sources: list, outputs: list, references: list, motions: list | None = None) -> dict:
    """Warp error with the full-size flow (or, given motions, the render's own flow), and fidelity."""
    meter = FlickerMeter()
    fidelity = []
    for index, (src, out, ref) in enumerate(zip(sources, outputs, references)):
        meter.add(index, src, out, motions[index] if motions else None)
        fidelity.append(style_fidelity(out, ref, resize_to(src, (out.shape[1], out.shape[0]))))
    return {"warp_error": meter.score, "input_warp_error": meter.floor, "fidelity": sum(fidelity) / len(fidelity)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames per clip (default: 24)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--sides", nargs="+", type=int, default=list(FLOW_SIDES),
                        help="flow sizes (longer side; 0: full size) to compare (default: 0 480 320 240)")
    parser.add_argument("--style", default="5")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "flow_size.json"))
    args = parser.parse_args()
    results = []
    base = StyleParams(style=args.style)  # the defaults: flow propagation on, flow_blend 0.35
    with tempfile.TemporaryDirectory() as folder:
        for name in args.sizes:
            width, height = SIZES[name]
            clip = make_footage_clip(Path(folder) / f"{name}.mp4", frames=args.frames, width=width, height=height,
                                     noise="shot", sigma=3.0, audio=False)
            with VideoReader(clip) as reader:
                sources = [frame for _, frame in reader.iter_frames(0, args.frames)]
            reference, _, _ = render(clip, base.replace(temporal_flow=False), args.frames, 0)
            naive = measure(sources, reference, reference)
            results.append({"clip": name, "flow": "per-frame (no flow)", **naive})
            print(f"{name:6s} per-frame            {naive['warp_error']:.5f} {naive['fidelity']:.3f}", file=sys.stderr)
            for side in sorted(set(args.sides) | {0}):
                outputs, motions, profile = render(clip, base, args.frames, side)
                numbers = measure(sources, outputs, reference)
                meter = measure(sources, outputs, reference, motions) if side else None
                row = {"clip": name, "flow": "full size" if side == 0 else f"longer side {side}",
                       "flow_side": side, **numbers,
                       "flow_cpu_ms_per_frame": profile["stages"].get("flow", {}).get("cpu_ms_per_frame"),
                       "consistency_cpu_ms_per_frame": profile["stages"].get("consistency", {}).get("cpu_ms_per_frame"),
                       "engine_cpu_ms_per_frame": profile["stages"].get("engine", {}).get("cpu_ms_per_frame"),
                       "meter_with_render_flow": meter and meter["warp_error"]}
                results.append(row)
                print(f"{name:6s} {row['flow']:20s} {numbers['warp_error']:.5f} {numbers['fidelity']:.3f} "
                      f"flow {row['flow_cpu_ms_per_frame']} ms", file=sys.stderr)
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def table(results: list) -> str:
    lines = ["| clip | flow computed at | warp error | vs full-size flow | vs per-frame | fidelity | flow CPU ms/frame | "
             "consistency CPU ms/frame | meter on the render's flow |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    naive, full = {}, {}
    for r in results:
        if r["flow"].startswith("per-frame"):
            naive[r["clip"]] = r["warp_error"]
            continue
        if r["flow_side"] == 0:
            full[r["clip"]] = r["warp_error"]
        meter = f"{r['meter_with_render_flow']:.5f}" if r.get("meter_with_render_flow") else ""
        lines.append(f"| {r['clip']} | {r['flow']} | {r['warp_error']:.5f} | {r['warp_error'] / full[r['clip']]:.3f}x | "
                     f"{r['warp_error'] / naive[r['clip']]:.2f}x | {r['fidelity']:.3f} | {r['flow_cpu_ms_per_frame']} | "
                     f"{r['consistency_cpu_ms_per_frame']} | {meter} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
