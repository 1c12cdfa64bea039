"""Scrub latency: from a move of the timeline to the stylized frame in the after view, in the real window.

    python bench/scrub.py              # 50 random scrubs; prints p50/p95, writes bench/results/scrub.json
    python bench/scrub.py --json       # the same, as one JSON line on stdout (bench/peers.py reads it)

The app runs offscreen (QT_QPA_PLATFORM=offscreen) on a generated 854x480 (480p) clip of 10 s at 24 fps
with a keyframe every 2 s (a camera's or an editor's export GOP; a 10-s GOP would measure seeking, not
vdiff), with fast-style style 7 at the source size. Each scrub presses the mouse on the timeline (found
as `findChild(QWidget, "timeline")`) over a random frame not shown before, and the clock stops when the
after view (`afterView`) holds that frame, stylized: the same test the GUI tests make. The first
preview (loading the engine) is a warm-up and not counted.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def make_clip(path: Path, width: int = 854, height: int = 480, fps: int = 24, seconds: int = 10,
              gop_seconds: int = 2) -> Path:
    import av

    from pipeline.sample import _background, render_sample_frame

    frames = fps * seconds
    background = _background(width * 2, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "g": str(fps * gop_seconds)}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(render_sample_frame(background, i, frames, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def measure(scrubs: int, seed: int) -> dict:
    import random

    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QWidget

    from pipeline.request import StyleParams
    from vdiff_gui.app import make_application
    from vdiff_gui.settings import AppSettings

    work = Path(tempfile.mkdtemp(prefix="vdiff-scrub-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ["VDIFF_CONFIG_DIR"] = str(work / "config")
    clip = make_clip(work / "480p.mp4")
    app, loop = make_application()
    from vdiff_gui.main_window import MainWindow

    window = MainWindow(settings=AppSettings(work / "settings.ini"))
    window.auto_answer = True
    window.resize(1280, 800)
    window.show()
    timeline = window.findChild(QWidget, "timeline")
    after = window.findChild(QWidget, "afterView")
    if timeline is None or after is None:
        raise SystemExit("the window has no 'timeline' or 'afterView' widget")

    async def spin_until(done, timeout: float) -> bool:
        """Run the app's event loop (Qt events and its asyncio tasks) until done() or the timeout."""
        end = time.perf_counter() + timeout
        while not done():
            if time.perf_counter() > end:
                return False
            await asyncio.sleep(0.001)
        return True

    def stylized(index: int) -> bool:
        return (getattr(after, "frame_index", None) == index and not getattr(after, "showing_original", False)
                and after.marker() is None and after.image() is not None)

    async def scrub_to(index: int) -> tuple[int, float]:
        x = round(timeline.x_of(index))
        y = timeline.height() // 2
        began = time.perf_counter()
        QTest.mousePress(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, y))
        target = window.state.frame
        QTest.mouseRelease(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, y))
        if not await spin_until(lambda: stylized(target), 30.0):
            raise SystemExit(f"frame {target} was not shown stylized within 30 s")
        return target, time.perf_counter() - began

    async def scrubs_in_the_app() -> list[float]:
        window.state.edit_params(StyleParams(engine="fast-style", style="7"))
        task = window.documents.open_clip(clip)
        if not await spin_until(lambda: task.done() and window.state.info is not None, 60.0):
            raise SystemExit("the clip did not open")
        frame_count = window.state.info.frame_count
        await scrub_to(frame_count // 2)  # warm-up: loads the engine
        await spin_until(lambda: False, 2.0)  # let the thumbnails and the first paint settle
        order = list(range(frame_count))
        random.Random(seed).shuffle(order)
        latencies, shown = [], {frame_count // 2}
        for index in order:
            if len(latencies) == scrubs:
                break
            if index in shown:
                continue
            target, seconds = await scrub_to(index)
            if target in shown:  # the pixel fell on a frame already shown (its preview may be cached)
                continue
            shown.add(target)
            latencies.append(seconds * 1000)
            await spin_until(lambda: False, 0.05)  # a user's pause between moves
        return latencies

    try:
        latencies = loop.run_until_complete(scrubs_in_the_app())
    finally:
        window.shutdown()
        loop.close()  # shuts down the app's blocking-task threads (qasync's default executor)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return {
        "comparison": "3 scrub latency",
        "source": "854x480 H.264, 24 fps, 240 frames, keyframe every 48",
        "engine": "fast-style style 7 at source size, temporal flow as by default (previews are per-frame)",
        "scrubs": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(latencies[-1], 1),
        "target": "p50 <= 150 ms",
        "latencies_ms": [round(v, 1) for v in latencies],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrubs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    result = measure(args.scrubs, args.seed)
    out = ROOT / "bench" / "results" / "scrub.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"scrub latency over {result['scrubs']} scrubs: p50 {result['p50_ms']:.0f} ms, "
              f"p95 {result['p95_ms']:.0f} ms (target p50 <= 150 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
