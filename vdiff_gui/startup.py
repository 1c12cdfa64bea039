"""What the window opens at launch, the first-launch sample clip, and `vdiff --self-test`."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from pipeline import __version__
from pipeline.config import cache_dir
from pipeline.request import StyleParams
from pipeline.sample import make_sample_clip
from vdiff_gui.tasks import run_blocking

log = logging.getLogger(__name__)

SAMPLE = {"frames": 72, "width": 480, "height": 270, "fps": 24, "audio": True}


def sample_clip_path() -> Path:
    return cache_dir().parent / "sample" / "vdiff-sample.mp4"


def ensure_sample_clip() -> Path:
    """The demo clip in the user cache folder, generated the first time only (atomically)."""
    path = sample_clip_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        make_sample_clip(temp, **SAMPLE)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    log.info("made the sample clip %s", path)
    return path


async def startup(window, video: str | None) -> None:
    """Open `video`; else the most recent file; else (and on first launch) the sample clip with fast-style."""
    settings = window.settings
    first_launch = not settings.first_launch_done()
    target = Path(video) if video else None
    if target is None and not first_launch:
        target = next((Path(p) for p in settings.recent_files() if Path(p).exists()), None)
    if target is None:
        window.compare.clear("Preparing the sample clip…")
        target = await run_blocking(ensure_sample_clip)
        if first_launch:  # no model needed and no network: the fast-style engine, on the sample clip
            window.state.reset_params(StyleParams(device=settings.device()))
    settings.set_first_launch_done()
    task = window.documents.open_path(target)
    if task is not None:
        await task


async def self_test(window, timeout: float = 60.0) -> int:
    """Wait for the first stylized preview; print one line; 0 when it came, 1 otherwise."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future = loop.create_future()

    def ready(index, image, from_cache, params):
        if not result.done():
            result.set_result((index, image.shape))

    def failed(message, kind):
        if not result.done():
            result.set_exception(RuntimeError(message))

    window.worker.preview_ready.connect(ready)
    window.worker.preview_failed.connect(failed)
    try:
        index, shape = await asyncio.wait_for(result, timeout)
    except (asyncio.TimeoutError, RuntimeError) as exc:
        print(f"vdiff {__version__} self-test FAILED: {exc or 'no preview within %d s' % timeout}")
        return 1
    print(f"vdiff {__version__} self-test ok: stylized frame {index} ({shape[1]}x{shape[0]}) on {window.device or 'cpu'}")
    return 0
