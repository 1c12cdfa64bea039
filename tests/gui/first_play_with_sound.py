"""A process's first Play with sound, run as its own process by test_sound_preload.py (a first Play
happens once per process): python first_play_with_sound.py SILENT_CLIP SOUND_CLIP prints one JSON line.

It opens the clip without sound, then the clip with sound, in a PlaybackController, waits for the
QtMultimedia preload, notes what is loaded before any player exists, then plays 1.5 s with sound
while a heartbeat measures the GUI thread. A Python handler of Qt's messages is installed, as
pytest-qt's and the self-test's are: the preload must not call it while the libraries map.
"""

import json
import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from heartbeat import Heartbeat  # noqa: E402  (this folder is sys.path[0])
from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer, qInstallMessageHandler, qWarning  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from pipeline.video.probe import probe  # noqa: E402
from vdiff_gui import multimedia_preload  # noqa: E402
from vdiff_gui.project_state import ProjectState  # noqa: E402
from vdiff_gui.widgets.player import PlaybackController  # noqa: E402


def spin(seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def mapped(files: list[str]) -> list[str]:
    """Those of `files` this process has mapped (Linux)."""
    with open("/proc/self/maps") as maps:
        text = maps.read()
    return [os.path.basename(f) for f in files if os.path.realpath(f) in text]


def main(silent_clip: str, sound_clip: str) -> dict:
    app = QApplication([])
    messages = []  # (thread, text) of each Qt message the Python handler got
    qInstallMessageHandler(lambda mode, context, text: messages.append((threading.current_thread().name, text)))
    state = ProjectState()
    playback = PlaybackController(state)
    result = {"loaded_at_start": "PySide6.QtMultimedia" in sys.modules}
    state.set_clip(probe(silent_clip))
    spin(1.5)  # past the preload's delay
    result["preload_after_silent_clip"] = multimedia_preload._thread is not None
    state.set_clip(probe(sound_clip))
    result["preload_at_opening"] = multimedia_preload._thread is not None  # not yet: the opening has work to do
    deadline = time.monotonic() + 10
    while multimedia_preload._thread is None and time.monotonic() < deadline:
        spin(0.05)
    preload = multimedia_preload._thread
    result["preload_thread"] = preload.name if preload is not None else None
    result["preload_outcome"] = multimedia_preload.preload_outcome(60)
    libraries = multimedia_preload.library_files(QCoreApplication.libraryPaths())
    result["libraries"] = [os.path.basename(f) for f in libraries]
    result["mapped_before_play"] = mapped(libraries)
    result["module_before_play"] = "PySide6.QtMultimedia" in sys.modules
    result["threads_before_play"] = [t.name for t in threading.enumerate()]
    qWarning("after the preload")
    result["messages_on_preload_thread"] = [text for thread, text in messages if thread == preload.name]
    result["handler_back"] = ("MainThread", "after the preload") in messages
    heart = Heartbeat()
    heart.start()
    spin(0.3)
    result["beats_before_press"] = len(heart.gaps)
    began, cpu_began, switches_began = time.perf_counter(), time.thread_time(), _switches()
    playback.play(1.0)
    result["press_ms"] = (time.perf_counter() - began) * 1000
    # how a long press spent its time: on a core (our work) or blocked (a lock, the GIL, a file), and how often
    result["press_cpu_ms"] = (time.thread_time() - cpu_began) * 1000
    result["press_blocked"] = _switches() - switches_began
    spin(1.5)
    playback.stop()
    heart.stop()
    result["player_made"] = playback._player is not None
    result["gaps"] = heart.gaps
    del app
    return result


def _switches() -> int:
    """The GUI thread's voluntary context switches so far: each a wait for something other than a core."""
    try:
        with open("/proc/thread-self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))
    except (OSError, StopIteration, ValueError):
        return -1


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
    sys.stdout.flush()
    os._exit(0)  # the media backend's threads need no orderly teardown here
