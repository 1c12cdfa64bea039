"""A scrub preview with keyframes: a keyframe as the render makes it, an in-between carried from its two
keyframes (from the cache when a render put them there, else rendered for the preview).

A preview frame is stored in the cache only when it is exactly the frame the render would make: a
keyframe that starts its shot (no history to carry), and an in-between whose two keyframes are exact
(cached or shot starts), since synthesis is deterministic given its keyframes.
"""

from __future__ import annotations

import numpy as np

from pipeline.cache import CacheEntry
from pipeline.engines import Engine, FrameContext
from pipeline.engines.base import resize_to
from pipeline.events import CancelToken
from pipeline.keyframes.plan import plan_keyframes
from pipeline.keyframes.synth import Keyframe, synthesize
from pipeline.temporal.stabilizer import is_stateful

KEPT_KEYFRAMES = 8  # keyframes rendered for previews, kept so that scrubbing nearby reuses them
_kept: dict = {}  # (params, source path, range start, index) -> (Keyframe, exact)


def keyframe_preview(engine: Engine, reader, index: int, cancel: CancelToken | None = None,
                     entry: CacheEntry | None = None, on_step=None, start: int = 0,
                     size: tuple[int, int] | None = None, source_info=None) -> tuple[np.ndarray, bool]:
    """The frame `index` of a keyframe render of the range starting at `start`: (image, from_cache).

    With `size` (width, height) the source frames are scaled to it first (a preview at the view's pixel
    size, `reader` may then read the clip's scrubbing proxy) and nothing is stored in `entry` (it is
    still read). The plan is made from `source_info`'s clip (default: the reader's), as the render's is."""
    cancel = cancel or CancelToken()
    info = source_info or reader.info
    store = entry if size is None else None

    def source(i: int) -> np.ndarray:
        frame = reader.frame(i)
        return frame if size is None else resize_to(frame, size)
    if entry is not None:
        image = entry.load(index)
        if image is not None:
            return image, True
    if index < start:  # a frame before the range: as if a range began there, and not stored in this one
        start, entry, store = index, None, None
    plan = plan_keyframes(info.path, engine.params, start, index + 1, cancel)
    if store is not None and store.read_meta().get("keyframes", {}).get("stop", 0) < plan.stop:
        store.write_meta({"keyframes": plan.to_json()})  # the timeline marks them
    out = engine.output_size(*(size or (info.width, info.height)))

    def keyframe(k: int) -> tuple[Keyframe, bool]:
        image = entry.load(k) if entry is not None else None
        if image is not None:  # what the render made
            return Keyframe(k, resize_to(source(k), out), resize_to(image, out)), True
        key = (engine.params, str(info.path), start, k, size)
        if key not in _kept:
            if len(_kept) >= KEPT_KEYFRAMES:
                _kept.pop(next(iter(_kept)))
            _kept[key] = render_alone(k)
        return _kept[key]

    def render_alone(k: int) -> tuple[Keyframe, bool]:
        frame = source(k)
        radius = engine.temporal_radius
        lo, hi = max(0, k - radius), min(info.frame_count, k + radius + 1)
        frames = [source(i) for i in range(lo, hi)]
        ctx = FrameContext(index=k, cancel=cancel, on_step=on_step, neighbors=frames, center=k - lo)
        image = engine.process(frame, ctx)
        # a shot's first keyframe has nothing to carry: the render makes the same frame
        exact = k == plan.shot_of(k) or not is_stateful(engine.params)
        if exact and store is not None:
            store.store(k, image)
        return Keyframe(k, resize_to(frame, out), image), exact

    a, b = plan.neighbours(index)
    before, exact_a = keyframe(a)
    if a == b:
        return before.image, False
    after, exact_b = keyframe(b)
    fill = None
    if engine.fills_holes:
        fill = lambda crop: engine.process(crop, FrameContext(index=index, cancel=cancel))  # noqa: E731
    image = synthesize(index, resize_to(source(index), out), before, after, fill)
    if store is not None and exact_a and exact_b:
        store.store(index, image)
    return image, False
