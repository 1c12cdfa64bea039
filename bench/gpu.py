"""Steady-state diffusion throughput on CUDA, in one process: frames per second once the model is loaded.

    python bench/gpu.py                      # SD-Turbo architecture (random weights), 512x512, 1 step
    python bench/gpu.py --compile            # adds torch.compile rows (the first call pays the warm-up)
    python bench/gpu.py --device cpu --tiny  # the same code on the tiny test pipeline: a smoke run anywhere

bench/peers.py times whole processes (imports, loading, decoding and encoding included); this bench
times the frames alone, after two warm-up calls, so that the GPU's own rate is seen. Rows, side by side:

  diffusers as its docs load it   fp16, one PIL frame per pipe() call (the naive loop's work)
  vdiff engine, N per call        bf16 (fp16 without native bf16), channels-last, SDPA, pinned uint8
                                  upload and download; N frames per UNet call (the render's default: 4)
  + tiny autoencoder              the same with AutoencoderTiny (TAESD's architecture, random weights)
                                  encoding and decoding: what the app's previews use (renders never do)
  + torch.compile                 the UNet compiled as VDIFF_TORCH_COMPILE=1 compiles it
  preview                         one frame through engine.preview() (the scrub path), latency

The aim (issue 16): SD-Turbo's architecture, 1 step at 512x512, >= 100 fps on a data-centre GPU.
Writes JSON after every row, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peers import PROMPT, make_sd_turbo_random  # noqa: E402

from pipeline.footage import footage_frames  # noqa: E402


def make_tiny_autoencoder(folder: Path) -> Path:
    """AutoencoderTiny with diffusers' defaults (TAESD's architecture) and random weights, as a folder."""
    if not (folder / "config.json").exists():
        import torch
        from diffusers import AutoencoderTiny

        torch.manual_seed(0)
        AutoencoderTiny().save_pretrained(folder, safe_serialization=True)
    return folder


def measure(run, frames: list[np.ndarray], per_call: int) -> dict:
    """fps and ms per frame over `frames`, `per_call` at a time, after two warm-up calls."""
    import torch

    for _ in range(2):
        run(frames[:per_call])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for start in range(0, len(frames) - per_call + 1, per_call):
        run(frames[start:start + per_call])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    done = (len(frames) // per_call) * per_call
    row = {"frames": done, "per_call": per_call, "fps": round(done / seconds, 1),
           "ms_per_frame": round(1000 * seconds / done, 2)}
    if torch.cuda.is_available():
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def naive_row(model: Path, frames, device: str, steps: int) -> dict:
    import torch
    from diffusers import AutoPipelineForImage2Image
    from PIL import Image

    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = AutoPipelineForImage2Image.from_pretrained(model, torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)

    def run(batch):
        for frame in batch:
            np.asarray(pipe(PROMPT, image=Image.fromarray(frame), num_inference_steps=steps, strength=1.0,
                            guidance_scale=0.0).images[0])

    return measure(run, frames, 1)


def make_engine(model: Path, device: str, steps: int, compile: bool = False):
    from pipeline.engines.diffusion import DiffusionEngine
    from pipeline.request import StyleParams

    params = StyleParams(engine="diffusion", model=str(model), prompt=PROMPT, steps=steps, strength=1.0,
                         guidance=0.0, cross_frame_attention=False, temporal_flow=False, device=device,
                         max_side=frames_side(device))
    engine = DiffusionEngine(params, compile=compile)
    engine.prepare()
    return engine


def frames_side(device: str) -> int:
    return 512 if device == "cuda" else 64


def engine_run(engine):
    from pipeline.engines import FrameContext

    counter = iter(range(10**9))
    return lambda batch: engine.process_batch(batch, [FrameContext(next(counter)) for _ in batch])


def preview_row(engine, frames) -> dict:
    from pipeline.engines import FrameContext

    row = measure(lambda batch: engine.preview(batch[0], FrameContext(0)), frames[:16], 1)
    row["tiny_autoencoder"] = not engine.previews_exact
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="the tiny test pipeline instead of SD-Turbo's architecture")
    parser.add_argument("--frames", type=int, default=64, help="timed frames per row (default 64)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16], help="frames per call to time")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile rows")
    parser.add_argument("--only-compile", action="store_true", help="only the torch.compile rows (appended to --out)")
    parser.add_argument("--models", type=Path, help="keep the generated models here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: torch sees no CUDA device here (use --device cpu --tiny for a smoke run)")
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or Path(tmp)
        models.mkdir(parents=True, exist_ok=True)
        if args.tiny:
            from pipeline.tiny_models import make_tiny_sd_folder

            model = models / "tiny-sd"
            if not (model / "model_index.json").exists():
                make_tiny_sd_folder(model)
        else:
            model = make_sd_turbo_random(models / "sdt-random")
        os.environ["VDIFF_TINY_VAE"] = str(make_tiny_autoencoder(models / "tiny-autoencoder"))
        side = frames_side(args.device)
        frames = list(footage_frames(args.frames, side, side))  # a hand-held shot: parallax and occlusion
        report = {"gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None, "torch": torch.__version__,
                  "model": "tiny test pipeline" if args.tiny else "SD-Turbo architecture, random weights",
                  "size": frames_side(args.device), "steps": args.steps, "rows": {}}
        if args.only_compile and args.out.exists():
            report = json.loads(args.out.read_text())

        def record(name: str, row: dict) -> None:
            report["rows"][name] = row
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1))
            print(f"{name}: {row}", flush=True)

        if not args.only_compile:
            record("diffusers as its docs load it (fp16, 1 per call)", naive_row(model, frames, args.device, args.steps))
            if args.device == "cuda":
                torch.cuda.empty_cache()  # the naive pipeline is gone: its memory goes back before the engine loads
            engine = make_engine(model, args.device, args.steps)
            run = engine_run(engine)
            for per_call in args.batches:
                engine.batch_frames = per_call
                record(f"vdiff engine ({engine.device}), {per_call} per call", measure(run, frames, per_call))
            record("vdiff preview, 1 frame (tiny autoencoder)", preview_row(engine, frames))
            engine.use_tiny_autoencoder()
            engine.batch_frames = per_call = max(args.batches)
            record(f"vdiff engine + tiny autoencoder, {per_call} per call", measure(run, frames, per_call))
            engine.close()
        if args.compile or args.only_compile:
            engine = make_engine(model, args.device, args.steps, compile=True)
            run = engine_run(engine)
            per_call = max(args.batches)
            engine.batch_frames = per_call
            began = time.perf_counter()
            run(frames[:per_call])
            warmup = round(time.perf_counter() - began, 1)
            record(f"vdiff engine + torch.compile, {per_call} per call", {**measure(run, frames, per_call),
                                                                           "first_call_s": warmup})
            engine.use_tiny_autoencoder()
            record(f"vdiff engine + torch.compile + tiny autoencoder, {per_call} per call",
                   measure(run, frames, per_call))
            engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
