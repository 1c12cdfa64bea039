"""Render on a Ray cluster when one machine is not enough (the `vdiff[cluster]` extra).

    for event in render_on_cluster(request, "127.0.0.1:6379"):
        ...  # the events of pipeline.render.render_frames, plus ClusterProgress and WorkerLost

The driver (this process) keeps everything a local render does: the checks, the frame cache, the
writer, the verification; only the frames' pixels are made elsewhere, by one Ray actor per GPU (or
CPU core), chunk after chunk (pipeline.cluster.driver). See docs/distributed.md.
"""

from __future__ import annotations

import dataclasses
import logging

from pathlib import Path
from typing import Iterator

from pipeline.cache import FrameCache
from pipeline.cluster.address import LOCAL, parse_address, ray_available, why_unavailable
from pipeline.cluster.chunks import MAX_CHUNK_FRAMES, SEAM_OVERLAP, chunk_boundaries
from pipeline.cluster.progress import ClusterProgress, WorkerLost, WorkerStatus
from pipeline.cluster.transfer import CODECS, DEFAULT_CODEC
from pipeline.errors import VdiffError
from pipeline.events import CancelToken, Event, Failed
from pipeline.request import RenderRequest, StyleParams


class ClusterEngine:
    """What render_frames sees as its engine in a cluster render: the engine's facts (output size,
    parameters, hence the same cache key as a local render) from a local instance that is never
    prepared; prepare() connects to the cluster and starts the workers, which load the model."""

    def __init__(self, params: StyleParams, source: Path, address: str, workers: int | None = None,
                 codec: str | None = None):
        from pipeline.cluster.pool import WorkerPool
        from pipeline.engines import create_engine

        self._local = create_engine(params)  # cheap: checks the parameters, loads nothing
        self.params, self.name = params, self._local.name
        self.temporal_radius = self._local.temporal_radius
        self.address = address
        self.device = f"the Ray cluster at {address}"
        self.pool = WorkerPool(params, source, workers, codec or DEFAULT_CODEC)
        self._connected = False

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return self._local.output_size(width, height)

    def prepare(self, cancel: CancelToken | None = None) -> None:
        from pipeline.cluster.address import connect

        connect(self.address)
        self._connected = True
        self.pool.start(cancel or CancelToken())
        self.device = f"{self.pool.describe()} at {self.address}"

    def process(self, frame, ctx):  # never called: the cluster stages replace the local ones
        raise VdiffError("a cluster engine renders through its workers only")

    def close(self) -> None:
        """Stop the workers and leave the cluster (a `local` one stops)."""
        from pipeline.cluster.address import disconnect

        if self._connected:
            self.pool.kill()
            disconnect()
            self._connected = False


log = logging.getLogger(__name__)

def render_on_cluster(request: RenderRequest, address: str | None = None, cancel: CancelToken | None = None,
                      cache: FrameCache | None = None, workers: int | None = None,
                      chunk_frames: int = MAX_CHUNK_FRAMES, overlap: int = SEAM_OVERLAP,
                      codec: str | None = None) -> Iterator[Event]:
    """render_frames(request) with the frames rendered on the Ray cluster at `address` (default:
    request.cluster); the same events, plus ClusterProgress and WorkerLost."""
    from pipeline.cluster.driver import ClusterStages
    from pipeline.render import render_frames

    if not ray_available():
        yield Failed(why_unavailable(), exit_code=2)
        return
    if not request.use_cache:
        yield Failed("a cluster render needs the frame cache (it is how frames come back): drop --no-cache", exit_code=2)
        return
    from pipeline.editing.region import has_region

    if has_region(request.params):
        yield Failed("region edits (--mask, --mask-at) do not run on a cluster yet: render them on this machine",
                     exit_code=2)
        return
    if request.params.keyframe_interval != 1:  # keyframe segments are not split over workers yet
        log.info("a cluster render runs the engine on every frame (keyframe rendering runs on one machine for now)")
        request = dataclasses.replace(request, params=request.params.replace(keyframe_interval=1))
    try:
        address = parse_address(address or request.cluster or "")
        if codec is not None and codec not in CODECS:
            raise VdiffError(f"unknown frame codec '{codec}'; use one of {', '.join(CODECS)}")
        engine = ClusterEngine(request.params, request.source, address, workers, codec)
    except VdiffError as exc:
        yield Failed(str(exc), exit_code=exc.exit_code)
        return
    try:
        yield from render_frames(request, cancel, cache, engine, stages=ClusterStages(engine.pool, chunk_frames, overlap))
    finally:
        engine.close()


__all__ = [
    "LOCAL", "ClusterEngine", "ClusterProgress", "WorkerLost", "WorkerStatus", "chunk_boundaries",
    "parse_address", "ray_available", "render_on_cluster", "why_unavailable",
]
