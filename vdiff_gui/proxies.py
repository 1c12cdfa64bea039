"""Prepares each opened clip for scrubbing in the background: measures its shots for keyframe plans
(pipeline.keyframes.plan.scan_clip: a preview's plan then costs nothing) and makes its scrubbing proxy
(pipeline.video.proxy).

The scan runs on a thread at the app's priority: a thread here at a lower one holds Python's lock
while the system leaves it waiting on a busy machine, and the GUI thread waits for the lock meanwhile
(docs/benchmarks.md). The proxy is then made by a child process at a lower priority
(make_proxy_in_child), so that previews and renders keep the cores: a whole clip's decoding and
encoding never hold this process's Python lock. Its thread here only reads the child's progress. Opening another clip (or closing the window)
cancels both. Until the proxy is ready the preview reads the original, so a failure only costs
speed: it is logged, not shown.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

from PySide6.QtCore import QObject, Signal

from pipeline.errors import CancelledError
from pipeline.events import CancelToken
from pipeline.keyframes.plan import scan_clip
from pipeline.video import VideoInfo
from pipeline.video.proxy import PROXY_BOX, find_proxy, make_proxy_in_child, proxy_size

log = logging.getLogger(__name__)

NICENESS = 10  # the proxy's process yields the cores to previews and renders


class ProxyMaker(QObject):
    proxy_ready = Signal(object, str, int)  # the VideoInfo it is for, the proxy's path, its width
    progress_changed = Signal(int, int)  # frames done, total
    shots_scanned = Signal(object)  # the VideoInfo whose shots are measured: keyframe plans read nothing now

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._token: CancelToken | None = None
        self._threads: list[threading.Thread] = []
        self._scanned = threading.Event()  # set once the current clip's shots are measured
        self.box = PROXY_BOX  # the proxy's frames fit in this (width, height)
        self.enabled = os.environ.get("VDIFF_NO_PROXY") != "1"  # VDIFF_NO_PROXY=1: always read the original

    def start(self, info: VideoInfo | None) -> None:
        """Scan `info` and find or make its proxy (cancelling the previous clip's); proxy_ready says when it is there."""
        self.cancel()
        self._scanned = scanned = threading.Event()
        if info is None:
            return
        size = proxy_size(info, self.box) if self.enabled else None  # None: small enough to scrub at full size
        found = find_proxy(info, self.box) if size is not None else None
        if found is not None:
            self.proxy_ready.emit(info, str(found), size[0])
            size = None
        self._token = token = CancelToken()
        scan_over = threading.Event()  # the proxy waits for the scan: previews plan on it, so it goes first
        self._threads = [threading.Thread(target=self._scan, args=(info, token, scanned, scan_over),
                                          name="vdiff-scan", daemon=True)]
        if size is not None:
            self._threads.append(threading.Thread(target=self._make, args=(info, size, token, scan_over),
                                                  name="vdiff-proxy", daemon=True))
        for thread in self._threads:
            thread.start()

    def cancel(self, wait_s: float = 0.0) -> None:
        if self._token is not None:
            self._token.cancel()
        for thread in self._threads if wait_s else ():
            thread.join(wait_s)
        self._token, self._threads = None, []

    def scanned(self) -> bool:
        """Whether the current clip's shots are measured (keyframe plans from then on read nothing)."""
        return self._scanned.is_set()

    def _scan(self, info: VideoInfo, token: CancelToken, scanned: threading.Event, over: threading.Event) -> None:
        try:  # a few seconds even at 1080p
            scan_clip(info.path, token)
            scanned.set()
            self.shots_scanned.emit(info)
        except CancelledError:
            pass
        except Exception:  # a preview scans what it needs itself
            log.warning("no shot scan of %s:\n%s", info.path.name, traceback.format_exc())
        finally:
            over.set()

    def _make(self, info: VideoInfo, size: tuple[int, int], token: CancelToken, scan_over: threading.Event) -> None:
        """At the app's priority: this thread only waits, and it must never hold the Python lock while descheduled."""
        scan_over.wait()
        if token.cancelled:
            return
        try:
            path = make_proxy_in_child(info, self.box, cancel=token, on_progress=self.progress_changed.emit,
                                       niceness=NICENESS)
        except CancelledError:
            return
        except Exception:  # scrubbing keeps reading the original
            log.warning("no scrubbing proxy for %s:\n%s", info.path.name, traceback.format_exc())
            return
        if path is not None and not token.cancelled:
            self.proxy_ready.emit(info, str(path), size[0])

