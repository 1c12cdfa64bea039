"""Per-stage times of a render: where the time of decode, keyframe planning, engine, flow, consistency,
in-between synthesis, cache and encode goes.

Off unless asked for: `vdiff render --profile` (or VDIFF_PROFILE=1), or a `profiling()` block around any
render driven from Python (bench/peers.py, bench/flow_size.py).
The stages' functions carry `@stage("name")` (or `@stage_iter` for a generator); while a `profiling()`
block is open, each call adds its wall time and its thread's CPU time to that stage. Times are
exclusive: a stage called inside another (the engine inside the consistency step) is counted once,
in the inner stage. The render's threads run the stages at once, so the stages' wall times add up to
more than the elapsed time; their CPU times add up to (about) the process's.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

PROFILE_ENV = "VDIFF_PROFILE"
STAGES = ("decode", "plan", "engine", "flow", "consistency", "in-between", "cache", "encode")


class Profile:
    """Accumulated wall and CPU seconds and call counts per stage, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._local = threading.local()
        self._began = time.perf_counter()
        self._cpu_began = time.process_time()

    @contextmanager
    def timing(self, name: str):
        """Time the block as stage `name`, less the stages timed inside it on this thread."""
        inner = getattr(self._local, "inner", None)
        self._local.inner = [0.0, 0.0]
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            nested = self._local.inner
            self._local.inner = inner
            if inner is not None:  # the enclosing stage does not count this block again
                inner[0] += wall
                inner[1] += cpu
            with self._lock:
                self.wall[name] = self.wall.get(name, 0.0) + wall - nested[0]
                self.cpu[name] = self.cpu.get(name, 0.0) + cpu - nested[1]
                self.calls[name] = self.calls.get(name, 0) + 1

    def to_json(self, frames: int | None = None) -> dict:
        """The figures: per stage wall/CPU seconds (and ms per frame), elapsed, process CPU, peak memory."""
        elapsed = time.perf_counter() - self._began
        with self._lock:
            names = [n for n in STAGES if n in self.wall] + sorted(set(self.wall) - set(STAGES))
            stages = {name: {"wall_s": round(self.wall[name], 3), "cpu_s": round(self.cpu[name], 3),
                             "calls": self.calls[name]} for name in names}
        if frames:
            for figures in stages.values():
                figures["cpu_ms_per_frame"] = round(1000 * figures["cpu_s"] / frames, 1)
        return {"frames": frames, "elapsed_s": round(elapsed, 3),
                "process_cpu_s": round(time.process_time() - self._cpu_began, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1), "stages": stages}

    def table(self, frames: int | None = None) -> str:
        """The figures as lines of text (what `vdiff render --profile` prints on stderr)."""
        data = self.to_json(frames)
        lines = [f"{'stage':12s} {'wall s':>8s} {'cpu s':>8s} {'cpu ms/frame':>13s}"]
        for name, f in data["stages"].items():
            per_frame = f"{f['cpu_ms_per_frame']:13.1f}" if "cpu_ms_per_frame" in f else f"{'':13s}"
            lines.append(f"{name:12s} {f['wall_s']:8.2f} {f['cpu_s']:8.2f} {per_frame}")
        lines.append(f"elapsed {data['elapsed_s']:.2f} s, process CPU {data['process_cpu_s']:.2f} s, "
                     f"peak memory {data['peak_rss_mb']:.0f} MB")
        return "\n".join(lines)


_active: Profile | None = None


def enabled_by_environment() -> bool:
    return os.environ.get(PROFILE_ENV, "") not in ("", "0")


@contextmanager
def profiling() -> Iterator[Profile]:
    """Record the stages' times while the block runs (one profile at a time per process)."""
    global _active
    previous, _active = _active, Profile()
    try:
        yield _active
    finally:
        _active = previous


def stage(name: str):
    """Decorator: calls of the function count as stage `name` while profiling (a flag test otherwise)."""

    def decorate(function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            profile = _active
            if profile is None:
                return function(*args, **kwargs)
            with profile.timing(name):
                return function(*args, **kwargs)

        return timed

    return decorate


def stage_iter(name: str):
    """Decorator for a generator function: the time to produce each item counts as stage `name`."""

    def decorate(function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            items = function(*args, **kwargs)
            try:
                while True:
                    profile = _active
                    if profile is None:
                        item = next(items, _END)
                    else:
                        with profile.timing(name):
                            item = next(items, _END)
                    if item is _END:
                        return
                    yield item
            finally:
                items.close()  # a consumer that stops early closes the generator's files now

        return timed

    return decorate


_END = object()


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1024
