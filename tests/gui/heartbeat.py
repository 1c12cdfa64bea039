"""An event-loop heartbeat for the GUI tests: the gaps between beats of a QTimer on the GUI thread.

Each gap also carries the time the GUI thread spent waiting for a core (Linux's per-thread schedstat):
on a loaded machine the scheduler alone holds a runnable thread for tens of ms, which is not ours.
"""

import time

from PySide6.QtCore import Qt, QTimer

BLOCK_LIMIT_MS = 50


def runqueue_ms() -> float | None:
    """Time this thread has spent runnable but waiting for a core (Linux), in ms; None where unknown."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


class Heartbeat:
    def __init__(self, interval_ms: int = 5):
        self.gaps: list[tuple[float, float]] = []  # (wall ms, of which waiting for a core ms) between beats
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._beat)
        self._last = None

    def _beat(self) -> None:
        now = (time.monotonic(), runqueue_ms())
        if self._last is not None:
            waited = now[1] - self._last[1] if now[1] is not None and self._last[1] is not None else 0.0
            self.gaps.append(((now[0] - self._last[0]) * 1000, waited))
        self._last = now

    def start(self) -> None:
        self._last = None
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()


def assert_never_blocked(heart_gaps: list[tuple[float, float]]) -> None:
    """No gap between beats, less the GUI thread's wait for a core, over BLOCK_LIMIT_MS."""
    gaps = heart_gaps[1:]  # the first beat after start() may carry the start itself
    assert len(gaps) > 50
    charged = [wall - waited for wall, waited in gaps]
    worst = max(range(len(gaps)), key=lambda i: charged[i])
    assert charged[worst] <= BLOCK_LIMIT_MS, (
        f"the event loop stalled {gaps[worst][0]:.0f} ms, of which {gaps[worst][1]:.0f} ms waiting for a core; "
        f"longest gaps: {sorted(round(wall) for wall, _ in gaps)[-5:]}")
