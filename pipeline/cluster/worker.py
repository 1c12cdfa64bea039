"""The Ray actor behind one cluster worker: one engine on one GPU (or CPU slot), chunk after chunk.

It loads the model once (load()), then render_chunk() runs the same render stages a local render
runs (pipeline.render.render_span) on its chunk and yields each frame, packed, as soon as it is done
(a Ray streaming generator, so frames leave the node while the chunk goes on). The source is read
where the node sees it (shared storage, checked by content identity), else from a copy the driver
sent once. This module imports without Ray: the driver wraps the class with ray.remote.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from pipeline.cache import source_identity
from pipeline.cluster.transfer import pack, unpack
from pipeline.engines import create_engine
from pipeline.events import CancelToken
from pipeline.render import render_span
from pipeline.request import StyleParams
from pipeline.temporal.stabilizer import Stabilizer, anchors_color, is_stateful
from pipeline.video import VideoReader, probe


class ChunkWorker:
    """Owns one engine. Not thread-safe: Ray runs one method at a time on a (non-async) actor."""

    def __init__(self, params: dict, number: int, codec: str):
        self.params = StyleParams.from_dict(params)
        self.number = number
        self.codec = codec
        self.engine = None
        self.source: Path | None = None
        self.info = None
        self._copy: Path | None = None
        self._anchor: tuple[int, np.ndarray] | None = None  # the range's first output, computed here

    def describe(self) -> dict:
        """Who this worker is, for progress lines and failure reports."""
        import ray

        node, node_id, gpus = "127.0.0.1", "", []
        if ray.is_initialized():  # in an actor; outside one (bench, tests) Ray's calls would start a Ray
            node, node_id = ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id()[:8]
            gpus = [str(g) for g in ray.get_gpu_ids()]
        return {
            "number": self.number,
            "node": node,
            "node_id": node_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.engine.device if self.engine is not None else "?",
            "gpus": gpus,
        }

    def load(self, source: str, identity: dict) -> dict:
        """Load the model, and say whether this node sees the source file itself (same content)."""
        self.engine = create_engine(self.params)
        self.engine.prepare(CancelToken())
        path = Path(source)
        sees = False
        try:
            sees = path.is_file() and source_identity(path) == identity
        except OSError:
            pass
        if sees:
            self.source, self.info = path, probe(path)
        return {**self.describe(), "sees_source": sees}

    def receive_source(self, data: bytes, suffix: str) -> None:
        """Keep the driver's copy of the source in a temporary file (a node without shared storage)."""
        handle, name = tempfile.mkstemp(prefix="vdiff-source-", suffix=suffix)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        self._copy = self.source = Path(name)
        self.info = probe(self.source)

    def render_chunk(self, task: dict):
        """Render frames task['first']..task['end']-1 and yield (index, packed frame) from task['start'] on.

        task: start, end, first (<= start: the warm-up frames before the chunk), range_start (where the
        render's consistency state begins), seed (index, packed output) to continue from or None,
        anchor (packed output of range_start) or None.
        """
        with VideoReader(self.source, self.info) as reader:
            stabilizer = self._stabilizer(task, reader) if is_stateful(self.params) else None
            for event in render_span(self.engine, self.info, task["first"], task["end"], CancelToken(), stabilizer):
                if event.index >= task["start"]:
                    yield event.index, pack(event.image, self.codec)

    def _stabilizer(self, task: dict, reader: VideoReader) -> Stabilizer:
        """The consistency state a single-machine render would have just before task['first']."""
        range_start, first = task["range_start"], task["first"]
        stabilizer = Stabilizer(self.params, range_start, reader.frame)
        if first > range_start and (anchors_color(self.params) or _attends(self.params)):
            stabilizer.remember(range_start, self._anchor_output(task))
        if task.get("seed") is not None:
            index, data = task["seed"]
            stabilizer.remember(index, unpack(data))
        return stabilizer

    def _anchor_output(self, task: dict) -> np.ndarray:
        """The range's first output (colour anchor, cross-frame reference): sent, or rendered here once."""
        range_start = task["range_start"]
        if task.get("anchor") is not None:
            return unpack(task["anchor"])
        if self._anchor is None or self._anchor[0] != range_start:
            fresh = Stabilizer(self.params, range_start, lambda index: None)
            for event in render_span(self.engine, self.info, range_start, range_start + 1, CancelToken(), fresh):
                self._anchor = (range_start, event.image)
        return self._anchor[1]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self._copy is not None:
            self._copy.unlink(missing_ok=True)


def _attends(params: StyleParams) -> bool:
    return params.engine == "diffusion" and params.cross_frame_attention
