"""What the window opens at launch, and the first-launch sample clip: a photograph shipped in
scikit-image moved along a hand-held camera path with a parallax layer (pipeline.footage), so the
first stylized preview shows what the app is for."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.config import cache_dir
from pipeline.request import StyleParams
from pipeline.footage import make_footage_clip
from vdiff_gui.tasks import run_blocking

log = logging.getLogger(__name__)

SAMPLE = {"frames": 72, "width": 480, "height": 270, "fps": 24, "audio": True, "scene": "astronaut"}


def sample_clip_path() -> Path:
    return cache_dir().parent / "sample" / "footage-v1" / "vdiff-sample.mp4"  # a new folder per new kind of sample


def ensure_sample_clip() -> Path:
    """The demo clip in the user cache folder, generated the first time only (atomically)."""
    path = sample_clip_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        make_footage_clip(temp, **SAMPLE)
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
