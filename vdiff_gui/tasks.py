"""asyncio tasks inside the Qt event loop (qasync): probing clips, thumbnails, swatches, model checks.

Blocking work runs in the loop's executor; the awaiting coroutine resumes on the GUI thread, where it
may touch widgets. A task's exception is logged, never lost; tasks are kept referenced until done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)
_running: set[asyncio.Task] = set()


def start_task(coro: Awaitable, name: str = "") -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


async def run_blocking(fn: Callable[..., Any], *args) -> Any:
    """Run fn(*args) off the GUI thread and return its result (or raise its exception) here."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def cancel_all() -> None:
    for task in list(_running):
        task.cancel()
