"""Scrub latency: from a move of the timeline to the stylized frame in the after view, in the real window.

    python bench/scrub.py                          # 480p clip, 50 random scrubs; writes bench/results/scrub.json
    python bench/scrub.py --json                   # the same, as one JSON line on stdout (bench/peers.py reads it)
    python bench/scrub.py --clip 1080p             # 1920x1080, 10 s, 24 fps, a keyframe every 10 s (phones, cameras)
    python bench/scrub.py --clip 1080p --prepared  # scrubs once the app has prepared previews while idle
    python bench/scrub.py --clip 1080p --idle 15   # scrubs 15 s after the proxy (the preparation part-way)
    python bench/scrub.py --clip 1080p --early     # scrubs while the proxy is made (the original is read)
    python bench/scrub.py --clip 1080p --before /tmp/vdiff-before --rounds 4
        # side by side: another checkout (a `git worktree add` of an older commit) and this one, in alternated
        # processes (A B B A ...), on the same clip; writes bench/results/scrub-1080p.json
    python bench/scrub.py --clip 480p --before /tmp/base --busy 2   # beside 2 busy processes: -busy2.json

The app runs offscreen (QT_QPA_PLATFORM=offscreen) in a 1280x800 window with fast-style style 7. The
480p clip is generated (854x480, 10 s, 24 fps, a keyframe every 2 s); the 1080p one is real-looking
footage from pipeline/footage.py (`make_footage_clip(..., gop=240)`). Each scrub presses the mouse on
the timeline (`findChild(QWidget, "timeline")`) over a random frame not shown before; the clock stops
when the after view (`afterView`) holds that frame, stylized: the same test the GUI tests make. It
also records when the before view first shows the frame, and the longest gap of a 10-ms QTimer
heartbeat (event-loop latency) during the scrubs, while the clip opens (from the open until its shots
are scanned: the engine loads meanwhile) and while the proxy is made (also less the time the GUI
thread waited for a core: what is left is ours). The first preview (loading the engine) is a
warm-up and not counted. A checkout that makes scrubbing proxies is measured once its proxy is
ready (the time it took is reported); one that does not is measured at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CLIPS = {
    "480p": "854x480 H.264, 24 fps, 240 frames, keyframe every 48 (generated pattern)",
    "1080p": "1920x1080 H.264, 24 fps, 240 frames, keyframe every 240 (pipeline.footage)",
}


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


def make_named_clip(name: str, folder: Path) -> Path:
    path = folder / f"{name}.mp4"
    if path.exists():
        return path
    if name == "480p":
        return make_clip(path)
    from pipeline.footage import make_footage_clip

    return make_footage_clip(path, frames=240, width=1920, height=1080, fps=24, gop=240)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def open_window(prefix: str):
    """(QApplication, event loop, shown 1280x800 MainWindow) of the vdiff found first on sys.path, with a
    cache and settings of its own (a first launch). Keep the application: it ends when it is collected."""
    from vdiff_gui.app import make_application
    from vdiff_gui.settings import AppSettings

    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ["VDIFF_CONFIG_DIR"] = str(work / "config")
    app, loop = make_application()
    from vdiff_gui.main_window import MainWindow

    window = MainWindow(settings=AppSettings(work / "settings.ini"))
    window.auto_answer = True
    window.resize(1280, 800)
    window.show()
    return app, loop, window


def measure(clip: Path, scrubs: int, seed: int, skip: set[int] = frozenset(), prepared: bool = False,
            idle: float = 0.0, early: bool = False) -> dict:
    """Scrub `scrubs` random frames of `clip` in a window of the vdiff found first on sys.path; with
    `prepared`, once the app's idle work (previews prepared around the playhead) is over; with `idle`,
    that many seconds after the proxy (a user who looked at one frame meanwhile)."""
    import random

    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QWidget

    from pipeline.request import StyleParams

    app, loop, window = open_window("vdiff-scrub-")
    timeline = window.findChild(QWidget, "timeline")
    before, after = window.findChild(QWidget, "beforeView"), window.findChild(QWidget, "afterView")
    if timeline is None or after is None:
        raise SystemExit("the window has no 'timeline' or 'afterView' widget")
    # each a list of (wall ms, of which waiting for a core, began at perf_counter s) between heartbeats
    gaps: list[tuple[float, float, float]] = []  # during the scrubs
    proxy_gaps: list[tuple[float, float, float]] = []  # while the proxy is made
    opening_gaps: list[tuple[float, float, float]] = []  # from the open to the shots scanned (the engine loads)
    heart = Heartbeat()

    async def spin_until(done, timeout: float) -> bool:
        """Run the app's event loop (Qt events and its asyncio tasks) until done() or the timeout."""
        end = time.perf_counter() + timeout
        while not done():
            if time.perf_counter() > end:
                return False
            await asyncio.sleep(0.001)
        return True

    def stylized(index: int, draft_too: bool = False) -> bool:
        """The after view holds frame `index` stylized: exact (no marker), or with draft_too also a draft."""
        marker = after.marker()
        return (getattr(after, "frame_index", None) == index and not getattr(after, "showing_original", False)
                and (marker is None or (draft_too and marker.startswith("draft"))) and after.image() is not None)

    async def scrub_to(index: int, timeout: float = 180.0) -> tuple[int, float, float]:
        x = round(timeline.x_of(index + 0.5))
        y = timeline.height() // 2
        began = time.perf_counter()
        QTest.mousePress(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, y))
        target = window.state.frame
        QTest.mouseRelease(timeline, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, y))
        original = first = None
        end = began + timeout
        while not stylized(target):
            if original is None and getattr(before, "frame_index", None) == target:
                original = time.perf_counter() - began
            if first is None and stylized(target, draft_too=True):
                first = time.perf_counter() - began
            if time.perf_counter() > end:
                raise SystemExit(f"frame {target} was not shown stylized within {timeout:.0f} s")
            await asyncio.sleep(0.001)
        done = time.perf_counter() - began
        return target, done, done if original is None else original, done if first is None else first

    async def scrubs_in_the_app() -> dict:
        window.state.edit_params(StyleParams(engine="fast-style", style="7"))
        await spin_until(lambda: False, 1.0)  # the window's first paint is not the clip's opening
        opened = time.perf_counter()
        heart.into = opening_gaps
        task = window.documents.open_clip(clip)
        if not await spin_until(lambda: task.done() and window.state.info is not None, 120.0):
            raise SystemExit("the clip did not open")
        frame_count = window.state.info.frame_count
        await scrub_to(frame_count // 2, 600.0)  # warm-up: loads the engine
        if hasattr(window, "proxies") and hasattr(window.proxies, "scanned"):  # shots scanned for keyframe plans
            await spin_until(window.proxies.scanned, 300.0)
        heart.into = None
        preview = window.preview
        makes_proxies = hasattr(preview, "proxy") and hasattr(window, "proxies")
        proxy_s = None
        if makes_proxies and window.proxies.enabled and _needs_proxy(window.state.info) and not early:
            heart.into = proxy_gaps
            if not await spin_until(lambda: preview.proxy is not None, 900.0):
                raise SystemExit("the scrubbing proxy was not made within 900 s")
            heart.into = None
            proxy_s = time.perf_counter() - opened
        if not early:
            await spin_until(lambda: False, 2.0 + idle)  # let the thumbnails and the first paint settle
        prepare_s = None
        if prepared and hasattr(window.worker, "preparing"):  # a user who looked at the frame for a while
            began = time.perf_counter()
            if not await spin_until(lambda: not window.worker.preparing, 600.0):
                raise SystemExit("the previews were not prepared within 600 s")
            prepare_s = time.perf_counter() - began + 2.0
        order = list(range(frame_count))
        random.Random(seed).shuffle(order)
        latencies, originals, firsts, shown = [], [], [], {frame_count // 2} | set(skip)
        heart.into = gaps
        for index in order:
            if len(latencies) == scrubs:
                break
            if index in shown:
                continue
            target, seconds, original, first = await scrub_to(index)
            if target in shown:  # the pixel fell on a frame already shown (its preview may be cached)
                continue
            shown.add(target)
            latencies.append(seconds * 1000)
            originals.append(original * 1000)
            firsts.append(first * 1000)
            await spin_until(lambda: False, 0.05)  # a user's pause between moves
        heart.into = None
        return {"latencies_ms": latencies, "original_ms": originals, "first_look_ms": firsts, "proxy_s": proxy_s,
                "prepare_s": prepare_s, "max_gap_ms": max((g for g, *_ in gaps), default=None),
                "max_gap_while_proxy_ms": max((g for g, *_ in proxy_gaps), default=None),
                "max_own_gap_while_proxy_ms": max((g - w for g, w, _ in proxy_gaps), default=None),
                "max_gap_while_opening_ms": max((g for g, *_ in opening_gaps), default=None),
                "max_own_gap_while_opening_ms": max((g - w for g, w, _ in opening_gaps), default=None),
                "max_own_gap_while_opening_began_s": _began_s(opening_gaps, opened),
                "frames_shown": sorted(shown), "proxy_at_end": makes_proxies and preview.proxy is not None}

    try:
        result = loop.run_until_complete(scrubs_in_the_app())
    finally:
        heart.stop()
        window.shutdown()
        loop.close()  # shuts down the app's blocking-task threads (qasync's default executor)
    return result


def _runqueue_ms() -> float:
    """Time this thread has waited for a core so far (Linux; 0 elsewhere): a gap less it is our own. The twin
    of tests/gui/heartbeat.py's: the bench also runs older checkouts, so it relies on no helper of theirs."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


class Heartbeat:
    """A 10-ms QTimer on the GUI thread, started at once; each beat appends (gap ms, of which the GUI thread
    waited for a core, when the gap began in perf_counter s) to the list `into` (None: to none)."""

    def __init__(self, interval_ms: int = 10):
        from PySide6.QtCore import QTimer

        self.into: list[tuple[float, float, float]] | None = None
        self._last = (time.perf_counter(), _runqueue_ms())
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._beat)
        self._timer.start()

    def record(self, into: list) -> None:
        """Record into `into` from now on, its first gap counted from now."""
        self._last = (time.perf_counter(), _runqueue_ms())
        self.into = into

    def stop(self) -> None:
        self._timer.stop()

    def _beat(self) -> None:
        now, queued = time.perf_counter(), _runqueue_ms()
        if self.into is not None:
            self.into.append(((now - self._last[0]) * 1000, queued - self._last[1], self._last[0]))
        self._last = (now, queued)


def _busy_processes(count: int) -> list[subprocess.Popen]:
    """`count` processes that keep a core busy each: a machine doing other work."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def _needs_proxy(info) -> bool:
    """A clip larger than the proxy's box gets one; a smaller one is scrubbed from the original."""
    try:
        from pipeline.video.proxy import proxy_size
    except ImportError:  # a checkout from before proxies
        return False
    return proxy_size(info) is not None


def summary(latencies: list[float], originals: list[float], firsts: list[float] | None = None) -> dict:
    """p50/p95 of the exact stylized frame (no marker), of the first stylized look (a draft or the exact
    frame, whichever came first) and of the original."""
    firsts = firsts or latencies  # a checkout without drafts: the first look is the exact frame
    return {"scrubs": len(latencies), "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1), "max_ms": round(max(latencies), 1),
            "first_look_p50_ms": round(statistics.median(firsts), 1),
            "first_look_p95_ms": round(percentile(firsts, 0.95), 1),
            "original_p50_ms": round(statistics.median(originals), 1)}


def one_side(args) -> dict:
    """This checkout (or --root's), one process: the classic single-sided run."""
    folder = Path(args.clip_dir or tempfile.mkdtemp(prefix="vdiff-scrub-clip-"))
    folder.mkdir(parents=True, exist_ok=True)
    clip = Path(args.clip_path) if args.clip_path else make_named_clip(args.clip, folder)
    run = measure(clip, args.scrubs, args.seed, prepared=args.prepared, idle=args.idle, early=args.early)
    return {
        "comparison": "3 scrub latency",
        "source": CLIPS[args.clip],
        "engine": "fast-style style 7, previews at the view's size, keyframes as by default (an in-between is carried from its two keyframes)",
        **summary(run["latencies_ms"], run["original_ms"], run["first_look_ms"]),
        "max_event_loop_gap_ms": round(run["max_gap_ms"] or 0, 1),
        "proxy_ready_s": None if run["proxy_s"] is None else round(run["proxy_s"], 1),
        **_proxy_gaps([run]),
        "busy_processes": args.busy,
        "scrubbed": _when(args),
        "prepared_s": None if run.get("prepare_s") is None else round(run["prepare_s"], 1),
        "proxy_at_end": run.get("proxy_at_end"),
        "target": "p50 <= 100 ms, p95 <= 150 ms (1080p)" if args.clip == "1080p" else "p50 <= 150 ms",
        "latencies_ms": [round(v, 1) for v in sorted(run["latencies_ms"])],
    }


def _began_s(gaps: list[tuple[float, float, float]], since: float) -> float | None:
    """When the gap with the most of our own time began, in s after `since` (None: no gaps)."""
    if not gaps:
        return None
    return round(max(gaps, key=lambda gap: gap[0] - gap[1])[2] - since, 3)


def _when(args) -> str:
    if args.early:
        return "at once after the engine loaded and the shots were scanned, while the proxy is made"
    if args.prepared:
        return "after the idle preparation"
    return f"{args.idle:g} s after the proxy is ready" if args.idle else "as soon as the proxy is ready"


def _proxy_gaps(runs: list[dict]) -> dict:
    """The longest event-loop gaps while the proxy was made (None: no proxy) and while the clip opened, raw
    and less the GUI thread's wait for a core; each run's longest own gap while opening, and when it began."""
    def longest(key):
        values = [run[key] for run in runs if run.get(key) is not None]
        return round(max(values), 1) if values else None

    return {"max_event_loop_gap_while_proxy_ms": longest("max_gap_while_proxy_ms"),
            "max_own_gap_while_proxy_ms": longest("max_own_gap_while_proxy_ms"),
            "each_run_own_gap_while_proxy_ms": [run.get("max_own_gap_while_proxy_ms") and
                                                round(run["max_own_gap_while_proxy_ms"], 1) for run in runs],
            "max_event_loop_gap_while_opening_ms": longest("max_gap_while_opening_ms"),
            "max_own_gap_while_opening_ms": longest("max_own_gap_while_opening_ms"),
            "each_run_own_gap_while_opening_ms": [run.get("max_own_gap_while_opening_ms") and
                                                  round(run["max_own_gap_while_opening_ms"], 1) for run in runs],
            "each_run_own_gap_while_opening_began_s": [run.get("max_own_gap_while_opening_began_s") for run in runs]}


def run_worker(script: Path, root: Path, clip: Path, options: list[str] = ()) -> dict:
    """One side of a side-by-side run: `script --worker` in its own process on the checkout `root`
    (found first on its path), on `clip`; its figures, the JSON line it prints last."""
    command = [sys.executable, str(script.resolve()), "--worker", "--root", str(root), "--clip-path", str(clip),
               *options]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(root)))
    if done.returncode != 0:
        raise SystemExit(f"{root} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def side_by_side(args) -> dict:
    """Alternate processes of the --before checkout and this one on one clip: A B B A A B ..."""
    folder = Path(args.clip_dir or tempfile.mkdtemp(prefix="vdiff-scrub-clip-"))
    folder.mkdir(parents=True, exist_ok=True)
    clip = make_named_clip(args.clip, folder)
    sides = {"before": Path(args.before).resolve(), "after": ROOT}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    load = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
        for side in order:
            options = ["--scrubs", str(args.scrubs), "--seed", str(args.seed + round_), "--idle", str(args.idle)]
            options += ["--prepared"] if args.prepared else []
            options += ["--early"] if args.early else []
            began = time.perf_counter()
            run = run_worker(Path(__file__), sides[side], clip, options)
            run["wall_s"] = round(time.perf_counter() - began, 1)
            runs[side].append(run)
            print(f"round {round_ + 1} {side:6s}: p50 {statistics.median(run['latencies_ms']):7.0f} ms over "
                  f"{len(run['latencies_ms'])} scrubs, max event-loop gap {run['max_gap_ms']:.0f} ms; while the proxy "
                  f"was made {run.get('max_gap_while_proxy_ms')} ms (our own {run.get('max_own_gap_while_proxy_ms')})",
                  flush=True)
    load.append(os.getloadavg()[0])
    result = {"comparison": "scrub latency, side by side", "source": CLIPS[args.clip], "window": "1280x800",
              "engine": "fast-style style 7", "rounds": args.rounds, "busy_processes": args.busy,
              "load_avg_start_end": load,
              "before_checkout": str(sides["before"]),
              "scrubbed": _when(args)}
    for side, side_runs in runs.items():
        latencies = [v for run in side_runs for v in run["latencies_ms"]]
        originals = [v for run in side_runs for v in run["original_ms"]]
        firsts = [v for run in side_runs for v in run.get("first_look_ms", run["latencies_ms"])]
        result[side] = {**summary(latencies, originals, firsts),
                        "max_event_loop_gap_ms": round(max(run["max_gap_ms"] or 0 for run in side_runs), 1),
                        "proxy_ready_s": [run["proxy_s"] and round(run["proxy_s"], 1) for run in side_runs],
                        **_proxy_gaps(side_runs),
                        "prepared_s": [run.get("prepare_s") and round(run["prepare_s"], 1) for run in side_runs],
                        "proxy_at_end": [run.get("proxy_at_end") for run in side_runs],
                        "latencies_ms": [round(v, 1) for v in latencies]}
    result["p50_ratio"] = round(result["before"]["p50_ms"] / result["after"]["p50_ms"], 1)
    result["target"] = "p50 <= 100 ms and p95 <= 150 ms"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrubs", type=int, default=50, help="scrubs per process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clip", choices=sorted(CLIPS), default="480p")
    parser.add_argument("--clip-dir", help="where the generated clip is kept (reused when there)")
    parser.add_argument("--before", metavar="CHECKOUT", help="measure this checkout too, alternating with this one")
    parser.add_argument("--rounds", type=int, default=4, help="alternated processes per side (with --before)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--prepared", action="store_true",
                        help="scrub once the app has prepared previews around the playhead while idle (its time is reported)")
    parser.add_argument("--early", action="store_true",
                        help="scrub at once, while the proxy is made (the original is read; a long-GOP seek is slow)")
    parser.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                        help="scrub this long after the proxy is ready (the idle preparation runs meanwhile)")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="N processes keep a core busy each for the whole run (a machine doing other work)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--clip-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one side of a side-by-side run: the raw figures as one JSON line
        sys.path.insert(0, str(Path(args.root).resolve()))
        result = measure(Path(args.clip_path), args.scrubs, args.seed, prepared=args.prepared, idle=args.idle,
                         early=args.early)
        import vdiff_gui

        result["code"] = str(Path(vdiff_gui.__file__).resolve().parent.parent)  # which checkout was measured
        print(json.dumps(result))
        return 0
    sys.path.insert(0, str(ROOT))
    busy = _busy_processes(args.busy)
    try:
        if args.before:
            args.scrubs = args.scrubs if args.scrubs != 50 else 12
            result = side_by_side(args)
            name = f"scrub-{args.clip}"
        else:
            result = one_side(args)
            name = "scrub" if args.clip == "480p" else f"scrub-{args.clip}"
    finally:
        for process in busy:
            process.kill()
    suffix = ("-prepared" if args.prepared else "") + (f"-idle{args.idle:g}" if args.idle else "")
    suffix += "-early" if args.early else ""
    suffix += f"-busy{args.busy}" if args.busy else ""
    out = ROOT / "bench" / "results" / f"{name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
    elif args.before:
        b, a = result["before"], result["after"]
        print(f"scrub latency, {result['source']}: before p50 {b['p50_ms']:.0f} ms / p95 {b['p95_ms']:.0f} ms, "
              f"after p50 {a['p50_ms']:.0f} ms / p95 {a['p95_ms']:.0f} ms ({result['p50_ratio']}x); "
              f"max event-loop gap {b['max_event_loop_gap_ms']:.0f} -> {a['max_event_loop_gap_ms']:.0f} ms")
    else:
        print(f"scrub latency over {result['scrubs']} scrubs: first stylized look (draft or exact) p50 "
              f"{result['first_look_p50_ms']:.0f} ms, p95 {result['first_look_p95_ms']:.0f} ms; exact frame p50 "
              f"{result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms (target {result['target']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
