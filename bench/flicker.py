"""Flicker benchmark: warp error and style fidelity of per-frame vs temporally consistent renders.

Renders generated clips (a camera pan with moving shapes, pipeline.sample) through the real streaming
render with each consistency mechanism alone and all together, measures them with
pipeline.temporal.metrics and prints a Markdown table (the one in docs/quality.md); the numbers also
go to bench/results/flicker.json.

    python bench/flicker.py                 # fast-style and classical cartoon (under a minute on 2 cores)
    python bench/flicker.py --frames 12     # a quick look
    python bench/flicker.py --model ./sd15  # adds diffusion rows with a real model (slow without a GPU)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.engines.base import resize_to  # noqa: E402
from pipeline.events import Failed, FrameReady  # noqa: E402
from pipeline.render import render_frames  # noqa: E402
from pipeline.request import RenderRequest, StyleParams  # noqa: E402
from pipeline.sample import make_sample_clip  # noqa: E402
from pipeline.temporal.metrics import FlickerMeter, style_fidelity  # noqa: E402
from pipeline.video import VideoReader  # noqa: E402

OFF = {"temporal_flow": False, "color_anchor": False, "shared_noise": False, "cross_frame_attention": False}
# (row, engine, changes from OFF); the first row of each engine is the per-frame reference
FAST_ROWS = [
    ("per-frame (naive)", {}),
    ("flow propagation", {"temporal_flow": True}),
    ("colour anchoring", {"color_anchor": True}),
    ("all together", {"temporal_flow": True, "color_anchor": True}),
]
ROWS = {
    "fast-style": FAST_ROWS,
    "classical": FAST_ROWS,
    "diffusion": [
        ("per-frame (naive)", {}),
        ("flow propagation", {"temporal_flow": True}),
        ("shared noise", {"shared_noise": True}),
        ("cross-frame attention", {"cross_frame_attention": True}),
        ("colour anchoring", {"color_anchor": True}),
        ("all (defaults)", {"temporal_flow": True, "color_anchor": True, "shared_noise": True,
                            "cross_frame_attention": True}),
    ],
}
# (name, make_sample_clip arguments, engine parameters)
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
CLIPS = [
    ("pan-320x180", {"width": 320, "height": 180}, {"style": "5", "max_side": 256}),
    ("pan-256x256", {"width": 256, "height": 256}, {"style": "12", "max_side": 192}),
    ("pan-320x180, style image", {"width": 320, "height": 180},
     {"style_image": str(RESOURCES / "vdiff.png"), "max_side": 256}),
]


def render(source: Path, params: StyleParams, frames: int) -> list:
    images = []
    for event in render_frames(RenderRequest(source, params, 0, frames, use_cache=False)):
        if isinstance(event, Failed):
            raise SystemExit(f"render failed: {event.message}")
        if isinstance(event, FrameReady):
            images.append(event.image)
    return images


def measure(sources: list, outputs: list, references: list) -> dict:
    meter = FlickerMeter()
    fidelity = []
    for index, (src, out, ref) in enumerate(zip(sources, outputs, references)):
        meter.add(index, src, out)
        fidelity.append(style_fidelity(out, ref, resize_to(src, (out.shape[1], out.shape[0]))))
    return {"warp_error": meter.score, "input_warp_error": meter.floor, "fidelity": sum(fidelity) / len(fidelity)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=36, help="frames per clip (default: 36)")
    parser.add_argument("--model", help="a diffusion model (folder, .safetensors or hub id) to add diffusion rows")
    parser.add_argument("--prompt", default="an oil painting", help="diffusion prompt")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "flicker.json"))
    args = parser.parse_args()
    # (engine, its parameters or None for the clip's fast-style ones, on the first clip only)
    engines = [("fast-style", None, False), ("classical", {"look": "cartoon", "max_side": 256}, True)]
    if args.model:
        engines.append(("diffusion", {"model": args.model, "prompt": args.prompt, "strength": 0.5, "max_side": 256},
                        False))
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for number, (clip, clip_args, clip_params) in enumerate(CLIPS):
            source = make_sample_clip(Path(folder) / f"{clip}.mp4", frames=args.frames, audio=False, **clip_args)
            with VideoReader(source) as reader:
                sources = [frame for _, frame in reader.iter_frames(0, args.frames)]
            for engine, engine_params, first_only in engines:
                if first_only and number > 0:
                    continue
                base = StyleParams(engine=engine, **OFF, **(engine_params or clip_params))
                reference = None
                for row, changes in ROWS[engine]:
                    began = time.perf_counter()
                    outputs = render(source, base.replace(**changes), args.frames)
                    seconds = time.perf_counter() - began
                    reference = reference or outputs
                    numbers = measure(sources, outputs, reference)
                    results.append({"clip": clip, "engine": engine, "row": row, "changes": changes,
                                    "frames": args.frames, "seconds": round(seconds, 2), **numbers})
                    print(f"{clip:26s} {engine:10s} {row:22s} {numbers['warp_error']:.5f} "
                          f"{numbers['fidelity']:.3f} {seconds:5.1f} s", file=sys.stderr)
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def table(results: list) -> str:
    lines = ["| clip | engine | mechanisms | warp error | vs per-frame | input floor | fidelity |",
             "|---|---|---|---:|---:|---:|---:|"]
    naive = {}
    for r in results:
        key = (r["clip"], r["engine"])
        naive.setdefault(key, r["warp_error"])
        lines.append(f"| {r['clip']} | {r['engine']} | {r['row']} | {r['warp_error']:.5f} | "
                     f"{r['warp_error'] / naive[key]:.2f}x | {r['input_warp_error']:.5f} | {r['fidelity']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
