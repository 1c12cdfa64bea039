"""asyncio tasks inside the Qt event loop (qasync): probing clips, thumbnails, swatches, model checks.

Blocking work runs in the loop's executor; the awaiting coroutine resumes on the GUI thread, where it
may touch widgets. A task's exception is logged and handed to the window's error handler (a message
in the window), never lost; tasks are kept referenced until done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)
_running: set[asyncio.Task] = set()
_error_handler: Callable[[str], None] | None = None


def set_error_handler(handler: Callable[[str], None] | None) -> None:
    """Where a failed background task is reported (the window's message banner); None: the log only."""
    global _error_handler
    _error_handler = handler


def start_task(coro: Awaitable, name: str = "") -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("background task failed", exc_info=exc)
        if _error_handler is not None:
            try:
                _error_handler(f"A background task failed: {type(exc).__name__}: {exc}")
            except RuntimeError:  # the window is already gone
                pass


async def run_blocking(fn: Callable[..., Any], *args) -> Any:
    """Run fn(*args) off the GUI thread and return its result (or raise its exception) here."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def cancel_all() -> None:
    for task in list(_running):
        task.cancel()
