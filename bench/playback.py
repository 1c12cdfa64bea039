"""Playing a clip while a render runs, in the real window: what the GUI thread spends and whether it keeps time.

    python bench/playback.py                                       # one process; writes bench/results/playback.json
    python bench/playback.py --before /tmp/vdiff-before --rounds 4  # side by side with another checkout, alternated

The window (1280x800, offscreen) opens a clip of real-looking footage with sound (pipeline.footage:
854x480, 24 fps, 240 frames), starts a render of the whole clip (fast-style style 7, default settings)
and a second later presses Play for 8 s. Reported: how long the Play press itself held the GUI thread
(the session's first Play), the GUI thread's CPU time while playing, the beats of a 10-ms QTimer and
their longest gaps (also less the time the GUI thread waited for a core), and the frames playback
dropped to keep time. Each side is its own process, so each Play is a session's first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scrub import Heartbeat, open_window, percentile, run_worker

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
PLAY_SECONDS = 8.0


def make_clip(folder: Path) -> Path:
    from pipeline.footage import make_footage_clip

    path = folder / "playback-480p.mp4"
    return path if path.exists() else make_footage_clip(path, frames=240, width=854, height=480, fps=24)


def measure(clip: Path) -> dict:
    """Open `clip` in a window of the vdiff found first on sys.path, render it, and play meanwhile."""
    from pipeline.request import StyleParams

    app, loop, window = open_window("vdiff-playback-")
    beats: list[tuple[float, float, float]] = []  # (gap ms, of which the GUI thread waited for a core, began s)
    heart = Heartbeat()

    async def play_while_rendering() -> dict:
        window.state.edit_params(StyleParams(engine="fast-style", style="7"))
        task = window.documents.open_clip(clip)
        end = time.perf_counter() + 120
        while not (task.done() and window.state.info is not None):
            if time.perf_counter() > end:
                raise SystemExit("the clip did not open")
            await asyncio.sleep(0.01)
        await asyncio.sleep(3.0)  # the first preview, the thumbnails and the shot scan settle
        window.jobs.render_range()
        await asyncio.sleep(1.0)
        heart.record(beats)
        cpu, began = time.thread_time(), time.perf_counter()
        window.playback.toggle()
        press_ms = (time.perf_counter() - began) * 1000
        await asyncio.sleep(PLAY_SECONDS)
        window.playback.toggle()
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - began
        heart.stop()
        window.jobs.cancel()
        await asyncio.sleep(0.5)
        gaps = sorted(gap for gap, *_ in beats)
        return {"play_press_ms": round(press_ms, 1), "gui_cpu_per_s_ms": round(cpu / wall * 1000, 1),
                "beats_per_s": round(len(beats) / wall, 1), "gap_p99_ms": round(percentile(gaps, 0.99), 1),
                "max_gap_ms": round(gaps[-1], 1), "max_own_gap_ms": round(max(g - w for g, w, _ in beats), 1),
                "dropped": window.playback.dropped}

    try:
        return loop.run_until_complete(play_while_rendering())
    finally:
        window.shutdown()
        loop.close()


FIGURES = ("play_press_ms", "gui_cpu_per_s_ms", "beats_per_s", "gap_p99_ms", "max_gap_ms", "max_own_gap_ms", "dropped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="CHECKOUT", help="measure this checkout too, alternating with this one")
    parser.add_argument("--rounds", type=int, default=3, help="processes per side")
    parser.add_argument("--clip-dir", help="where the generated clip is kept (reused when there)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--clip-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, str(Path(args.root).resolve()))
        print(json.dumps(measure(Path(args.clip_path))))
        return 0
    sys.path.insert(0, str(ROOT))
    folder = Path(args.clip_dir or tempfile.mkdtemp(prefix="vdiff-playback-clip-"))
    folder.mkdir(parents=True, exist_ok=True)
    clip = make_clip(folder)
    sides = {"after": ROOT} if not args.before else {"before": Path(args.before).resolve(), "after": ROOT}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    load = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for side in (list(sides) if round_ % 2 == 0 else list(sides)[::-1]):
            runs[side].append(run_worker(Path(__file__), sides[side], clip))
            figures = ", ".join(f"{k} {runs[side][-1][k]}" for k in FIGURES)
            print(f"round {round_ + 1} {side:6s}: {figures}", flush=True)
    load.append(os.getloadavg()[0])
    result = {"comparison": "playing while a render runs", "clip": "854x480 footage with sound, 240 frames",
              "window": "1280x800", "play_s": PLAY_SECONDS, "load_avg_start_end": load,
              "checkouts": {side: str(root) for side, root in sides.items()}}
    for side, side_runs in runs.items():
        result[side] = {k: round(statistics.median(run[k] for run in side_runs), 1) for k in FIGURES}
        result[side]["runs"] = side_runs
    out = ROOT / "bench" / "results" / "playback.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for side in sides:
        print(f"{side:6s} (median of {args.rounds}): " + ", ".join(f"{k} {result[side][k]}" for k in FIGURES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
