"""Keeps the frame cache inside its bound while a render fills it, and the disk from filling up.

The bound used to be enforced only when a render started, so one long 1080p render grew far past it.
Now a render that alone needs more than the bound, or more than the disk has free, is stopped before
its first frame with a message saying what to change; while it runs, older renders are evicted (least
recently used first, never this one) as it grows, and it stops before the disk is full.
"""

from __future__ import annotations

import shutil

from pipeline.cache import HEADER, CacheEntry, FrameCache
from pipeline.errors import OutputError

DISK_RESERVE = 256 * 1024 * 1024  # bytes left free on the cache's disk: stop before the disk is full
EVICT_AHEAD = 64  # frames of room made per eviction, so the cache is not scanned for every frame


class CacheFullError(OutputError):
    """The frame cache's bound or its disk has no room for this render."""


def frame_bytes(size: tuple[int, int]) -> int:
    """Bytes one cached frame of `size` (width, height) takes."""
    width, height = size
    return HEADER.size + width * height * 3


def disk_free(folder) -> int:
    return shutil.disk_usage(folder).free


def _gb(value: float) -> str:
    return f"{value / 1e9:.1f} GB" if value >= 1e8 else f"{value / 1e6:.1f} MB"


class CacheBudget:
    """The running render's share of the cache: checked up front, then before every stored frame."""

    def __init__(self, cache: FrameCache, entry: CacheEntry, frame_size: int, frames: int):
        self.cache, self.entry = cache, entry
        self.frame_size = frame_size
        self.remaining = frames  # frames this render still has to store
        self._total = None  # the whole cache's size as last measured, plus what was stored since

    def check_start(self) -> None:
        """Refuse a render the bound or the disk cannot hold, before any work is done."""
        needed = self.remaining * self.frame_size
        own = self.entry.size_bytes()
        if own + needed > self.cache.max_bytes:
            raise CacheFullError(
                f"this render needs about {_gb(own + needed)} of frame cache but the cache is limited to "
                f"{_gb(self.cache.max_bytes)}; raise the limit (vdiff cache --limit GB), render a shorter range, "
                f"or render without the cache (--no-cache)"
            )
        self._check_disk(needed)

    def before_store(self, nbytes: int | None = None) -> None:
        """Make room for one more frame: evict older renders past the bound, stop before the disk fills."""
        size = HEADER.size + nbytes if nbytes is not None else self.frame_size
        if self._total is None:
            self._total = self.cache.total_bytes()
        if self._total + size > self.cache.max_bytes:
            room = size * max(1, min(self.remaining, EVICT_AHEAD))
            self.cache.evict(keep={self.entry.key}, room=room)
            self._total = self.cache.total_bytes()
            if self.entry.size_bytes() + size > self.cache.max_bytes:
                raise CacheFullError(
                    f"the frame cache reached its limit of {_gb(self.cache.max_bytes)} with this render alone; "
                    f"raise the limit (vdiff cache --limit GB) or render a shorter range (it resumes)"
                )
        self._check_disk(size)
        self._total += size
        self.remaining = max(0, self.remaining - 1)

    def _check_disk(self, needed: int) -> None:
        self.cache.root.mkdir(parents=True, exist_ok=True)
        free = disk_free(self.cache.root)
        if needed + DISK_RESERVE > free:
            raise CacheFullError(
                f"the disk holding the frame cache ({self.cache.root}) has {_gb(free)} free and this render "
                f"needs about {_gb(needed)} more; free some space or move the cache (XDG_CACHE_HOME), then run again"
            )
