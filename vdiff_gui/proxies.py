"""Prepares each opened clip for scrubbing in the background: measures its shots for keyframe plans
(pipeline.keyframes.plan.scan_clip: a preview's plan then costs nothing) and makes its scrubbing proxy
(pipeline.video.proxy).

One thread per clip, at a lower CPU priority than the rest of the app so that previews and renders
keep the cores; opening another clip (or closing the window) cancels it. Until the proxy is ready
the preview reads the original, so a failure only costs speed: it is logged, not shown.
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
from pipeline.video.proxy import PROXY_BOX, find_proxy, make_proxy, proxy_size

log = logging.getLogger(__name__)

NICENESS = 10  # the proxy thread yields the cores to previews and renders


class ProxyMaker(QObject):
    proxy_ready = Signal(object, str, int)  # the VideoInfo it is for, the proxy's path, its width
    progress_changed = Signal(int, int)  # frames done, total

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._token: CancelToken | None = None
        self._thread: threading.Thread | None = None
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
        self._thread = threading.Thread(target=self._make, args=(info, size, token, scanned), name="vdiff-proxy",
                                        daemon=True)
        self._thread.start()

    def cancel(self, wait_s: float = 0.0) -> None:
        if self._token is not None:
            self._token.cancel()
        if self._thread is not None and wait_s:
            self._thread.join(wait_s)
        self._token = self._thread = None

    def scanned(self) -> bool:
        """Whether the current clip's shots are measured (keyframe plans from then on read nothing)."""
        return self._scanned.is_set()

    def _make(self, info: VideoInfo, size: tuple[int, int] | None, token: CancelToken, scanned: threading.Event) -> None:
        _lower_priority()
        try:  # first the shots (a few seconds even at 1080p): keyframe previews plan on them
            scan_clip(info.path, token)
            scanned.set()
        except CancelledError:
            return
        except Exception:  # a preview scans what it needs itself
            log.warning("no shot scan of %s:\n%s", info.path.name, traceback.format_exc())
        if size is None:
            return
        try:
            step = max(1, info.frame_count // 50)  # about every 2%: the label needs no more
            path = make_proxy(info, self.box, cancel=token,
                              on_progress=lambda done, total: done % step or self.progress_changed.emit(done, total))
        except CancelledError:
            return
        except Exception:  # scrubbing keeps reading the original
            log.warning("no scrubbing proxy for %s:\n%s", info.path.name, traceback.format_exc())
            return
        if path is not None and not token.cancelled:
            self.proxy_ready.emit(info, str(path), size[0])


def _lower_priority() -> None:
    """Linux: a thread has its own nice value (other systems: the thread keeps the app's priority)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except (AttributeError, OSError):
        pass
