"""Scrub previews, for any engine: one stylized frame at the playhead, from the cache or rendered on the
spot, and the idle work that prepares the frames around it. The render of a range is pipeline.render;
engines with keyframes answer through pipeline.keyframes.preview, which makes the frame a render would.
"""

from __future__ import annotations

import numpy as np

from pipeline.cache import CacheEntry
from pipeline.editing.region import RegionEdit
from pipeline.engines import Engine, FrameContext
from pipeline.engines.base import resize_to
from pipeline.events import CancelToken
from pipeline.keyframes.plan import uses_keyframes
from pipeline.render import measure_source
from pipeline.temporal.stabilizer import is_stateful
from pipeline.video import VideoInfo, VideoReader
from pipeline.video.probe import check_renderable


def preview_ready(engine: Engine, info: VideoInfo, index: int, start: int = 0,
                  size: tuple[int, int] | None = None) -> bool:
    """preview_frame would answer at once from memory: frames prepared by prepare_previews."""
    if not uses_keyframes(engine.params):
        return False
    from pipeline.keyframes.preview import prepared

    return prepared(engine, info.path, index, start, size)


def preview_needs_keyframes(engine: Engine, info: VideoInfo, index: int, entry: CacheEntry | None = None,
                            start: int = 0, size: tuple[int, int] | None = None) -> bool:
    """preview_frame would run the engine on a keyframe (not just carry the frame from kept ones, nor
    answer from memory); always True for engines that render every frame."""
    if not uses_keyframes(engine.params):
        return True
    from pipeline.keyframes.preview import needs_keyframes

    return needs_keyframes(engine, info.path, index, entry, start, size)


def prepare_previews(engine: Engine, reader: VideoReader, playhead: int, cancel: CancelToken | None = None,
                     entry: CacheEntry | None = None, start: int = 0, size: tuple[int, int] | None = None,
                     source: VideoInfo | None = None, in_order: bool = False) -> bool:
    """Idle work for the app: render one more view-size (`size`) preview frame near `playhead`, kept in
    memory for the scrubs to come (pipeline.keyframes.preview). False when there is nothing (more) to
    do: every frame within the memory budget is ready, or the engine renders per frame, or is too slow
    for idle work (`Engine.prepares_previews`), or the previews are full size. With `in_order` (a reader
    whose seeks are slow) only keyframes, in the order `reader` decodes them. Arguments as preview_frame's."""
    if not (engine.prepares_previews and uses_keyframes(engine.params) and size is not None):
        return False
    from pipeline.keyframes.preview import prepare_in_order, prepare_near

    prepare = prepare_in_order if in_order else prepare_near
    return prepare(engine, reader, playhead, cancel, entry, start, size, source)


def preview_frame(
    engine: Engine,
    reader: VideoReader,
    index: int,
    cancel: CancelToken | None = None,
    entry: CacheEntry | None = None,
    on_step=None,
    edit: RegionEdit | None = None,
    start: int = 0,
    size: tuple[int, int] | None = None,
    source: VideoInfo | None = None,
) -> tuple[np.ndarray, bool]:
    """The stylized frame `index` for a scrub preview: from the cache when there, else rendered and stored.

    A rendered preview is per-frame (no temporal consistency); it is stored only when the engine's
    frames do not depend on the frames before them, so it never stands in for a consistent render's.
    An engine with a faster, lower-quality preview path (`engine.preview`, e.g. diffusion's tiny
    autoencoder) uses it here, and such a frame is never stored: the export renders its own.
    `edit` (pipeline.editing) limits the change to its mask. With `size` (width, height), the source
    frames are scaled to it first (a preview at the view's pixel size, from `reader` of the source or
    of its proxy) and the result is never stored.
    With keyframes, the frame is the one a render of the range from `start` makes (pipeline.keyframes.preview),
    its plan made from `source` (the clip's VideoInfo, when `reader` reads its proxy) or `reader`'s clip.
    Returns (image, from_cache). The engine must be prepared; the caller's thread owns it.
    """
    check_renderable(reader.info)
    if uses_keyframes(engine.params):
        from pipeline.keyframes.preview import keyframe_preview

        measure_source(engine, reader.info)
        if edit is None:
            return keyframe_preview(engine, reader, index, cancel, entry, on_step, start, size, source)
        cached = entry.load(index) if entry is not None else None
        if cached is not None:
            return cached, True
        # with a content edit nothing is stored: the keyframes it carries would lack their masks
        image, _ = keyframe_preview(engine, reader, index, cancel, None, on_step, start, size, source)
        return edit.apply(index, resize_to(reader.frame(index), (image.shape[1], image.shape[0])), image), False
    if entry is not None:
        image = entry.load(index)
        if image is not None:
            return image, True
    measure_source(engine, reader.info)
    radius = engine.temporal_radius
    lo, hi = max(0, index - radius), min(reader.info.frame_count, index + radius + 1)
    frames = [reader.frame(i) for i in range(lo, hi)]
    if size is not None:  # a preview at the view's size
        frames = [resize_to(frame, size) for frame in frames]
    ctx = FrameContext(index=index, cancel=cancel or CancelToken(), on_step=on_step, neighbors=frames, center=index - lo)
    source = frames[index - lo]
    if edit is not None:
        ctx.mask = edit.mask_at(index, engine.output_size(source.shape[1], source.shape[0]))
    preview = getattr(engine, "preview", None)
    image = (preview or engine.process)(source, ctx)
    if edit is not None:
        image = edit.apply(index, source, image)
    exact = size is None and (preview is None or getattr(engine, "previews_exact", True))  # known once it ran
    if entry is not None and exact and not is_stateful(engine.params):
        entry.store(index, image)
    return image, False
