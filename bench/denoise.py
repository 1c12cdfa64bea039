"""Denoising quality and speed: vdiff's classical denoiser against FFmpeg's nlmeans and hqdn3d.

Clips from pipeline/footage.py (photographs on a hand-held camera path, with a parallax layer); the
clean frames are the truth. The noisy input is stored losslessly (FFV1), so only the noise is measured.
For each clip and noise level: RGB PSNR and SSIM against the clean frames, wall and CPU time, for
vdiff (render_frames in this process, no cache, no output file: decode + denoise), FFmpeg nlmeans at
s = 6, 8, 10 and hqdn3d at three strengths (decode + filter into a pipe), all side by side in one run,
in alternating order over `--rounds` rounds (the fastest round of each counts). Both get 2 threads.

    .venv/bin/python bench/denoise.py                       # 176x144 and 320x180, 40 frames
    .venv/bin/python bench/denoise.py --sizes 480x270 --frames 30 --rounds 1

Prints a markdown table (docs/quality.md, "Denoising"). Needs the `ffmpeg` binary on PATH.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.footage import footage_frames, make_footage_clip  # noqa: E402

LEVELS = {"gaussian 10": ("gaussian", 10), "gaussian 20": ("gaussian", 20), "gaussian 30": ("gaussian", 30),
          "shot 20": ("shot", 20)}
NLMEANS = (6, 8, 10)
HQDN3D = ("4:3:6:4.5", "8:6:12:9", "12:9:18:13.5")  # FFmpeg's default, x2 and x3


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(x, y, channel_axis=2, data_range=255) for x, y in zip(a, b)]))


def run_vdiff(path: Path, extra: dict) -> tuple[np.ndarray, float, float]:
    from pipeline.events import Failed, FrameReady
    from pipeline.render import render_frames
    from pipeline.request import RenderRequest, StyleParams

    params = StyleParams(engine="classical", look="denoise", **extra)
    frames = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for event in render_frames(RenderRequest(path, params, use_cache=False)):
        if isinstance(event, FrameReady):
            frames[event.index] = event.image
        elif isinstance(event, Failed):
            raise RuntimeError(event.message)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return np.stack([frames[i] for i in sorted(frames)]), wall, cpu


def run_ffmpeg(path: Path, vf: str, size: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    command = ["ffmpeg", "-v", "error", "-threads", "2", "-filter_threads", "2", "-i", str(path),
               "-vf", f"{vf},format=rgb24", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    out = subprocess.run(command, capture_output=True, check=True).stdout
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    w, h = size
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3), wall, cpu


def methods(size: tuple[int, int], vdiff_extra: dict) -> dict:
    """name -> a function of the noisy clip's path giving (frames, wall, cpu)."""
    out = {"vdiff": lambda p: run_vdiff(p, vdiff_extra)}
    for s in NLMEANS:  # yuv444p: nlmeans on RGB planes measured 2-4 dB worse; no chroma subsampling
        out[f"nlmeans s={s}"] = lambda p, s=s: run_ffmpeg(p, f"format=yuv444p,nlmeans=s={s}", size)
    for spec in HQDN3D:
        out[f"hqdn3d {spec}"] = lambda p, spec=spec: run_ffmpeg(p, f"format=yuv444p,hqdn3d={spec}", size)
    return out


def bench_clip(folder: Path, size: tuple[int, int], frames: int, level: str, rounds: int, extra: dict) -> dict:
    kind, sigma = LEVELS[level]
    w, h = size
    path = make_footage_clip(folder / f"{w}x{h}-{kind}{sigma}.mkv", frames, w, h, noise=kind, sigma=sigma,
                             codec="ffv1", audio=False)
    clean = np.stack(list(footage_frames(frames, w, h)))
    from pipeline.video import VideoReader

    with VideoReader(path) as reader:
        noisy = np.stack([image for _, image in reader.iter_frames()])
    results = {"noisy": {"psnr": psnr(noisy, clean), "ssim": ssim(noisy, clean)}}
    runs = methods(size, extra)
    names = list(runs)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):  # alternate the order: load drifts both ways
            images, wall, cpu = runs[name](path)
            entry = results.setdefault(name, {"wall": wall, "cpu": cpu})
            entry["wall"], entry["cpu"] = min(entry["wall"], wall), min(entry["cpu"], cpu)
            if "psnr" not in entry:
                entry["psnr"], entry["ssim"] = psnr(images, clean), ssim(images, clean)
    return results


def best(results: dict, prefix: str) -> str:
    return max((n for n in results if n.startswith(prefix)), key=lambda n: results[n]["psnr"])


def table(rows: list[tuple[str, str, dict]]) -> str:
    lines = ["| clip | noise | input PSNR | vdiff PSNR / SSIM | best nlmeans (s) PSNR / SSIM | best hqdn3d PSNR / SSIM "
             "| vdiff − nlmeans | vdiff wall / CPU s | nlmeans wall / CPU s | time ratio (wall, CPU) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for clip, level, r in rows:
        v, n, q = r["vdiff"], best(r, "nlmeans"), best(r, "hqdn3d")
        nl, hq = r[n], r[q]
        lines.append(
            f"| {clip} | {level} | {r['noisy']['psnr']:.2f} | {v['psnr']:.2f} / {v['ssim']:.3f} "
            f"| {nl['psnr']:.2f} / {nl['ssim']:.3f} ({n.split('=')[1]}) | {hq['psnr']:.2f} / {hq['ssim']:.3f} "
            f"| {v['psnr'] - nl['psnr']:+.2f} dB | {v['wall']:.2f} / {v['cpu']:.2f} | {nl['wall']:.2f} / {nl['cpu']:.2f} "
            f"| {v['wall'] / nl['wall']:.2f}x, {v['cpu'] / nl['cpu']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="176x144,320x180", help="comma-separated WxH (default: 176x144,320x180)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--levels", default=",".join(LEVELS), help=f"comma-separated, of: {', '.join(LEVELS)}")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each method, alternating the order")
    parser.add_argument("--window", type=int, default=5, help="vdiff --denoise-window")
    parser.add_argument("--no-temporal-flow", action="store_true", help="vdiff --no-temporal-flow")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("bench/denoise.py needs the ffmpeg binary on PATH")
    extra = {"denoise_window": args.window, "temporal_flow": not args.no_temporal_flow}
    rows = []
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.sizes.split(","):
            w, h = map(int, spec.lower().split("x"))
            for level in args.levels.split(","):
                level = level.strip()
                r = bench_clip(Path(tmp), (w, h), args.frames, level, args.rounds, extra)
                rows.append((f"{w}x{h}, {args.frames} frames", level, r))
                detail = ", ".join(f"{n} {m['psnr']:.2f} dB {m['wall']:.2f}s" for n, m in r.items() if "wall" in m)
                print(f"{w}x{h} {level}: {detail}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows))


if __name__ == "__main__":
    main()
