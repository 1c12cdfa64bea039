"""Freeing reference cycles at once (a closed engine's model, before another loads), from the engine's thread.

An application whose objects must be freed on one thread installs its own way: Qt objects are freed on
the app's GUI thread (vdiff_gui.garbage), so there the engine's thread asks it to collect.
"""

from __future__ import annotations

import gc
from typing import Callable

_collect: Callable[[], object] = gc.collect


def collect_garbage() -> None:
    """A full collection: here, or on the thread this process collects on (soon after, then)."""
    _collect()


def set_garbage_collector(collect: Callable[[], object] | None) -> Callable[[], object]:
    """Use `collect` for collect_garbage() from now on (None: Python's gc.collect, on the caller's thread);
    returns the one used until now."""
    global _collect
    previous, _collect = _collect, collect or gc.collect
    return previous
