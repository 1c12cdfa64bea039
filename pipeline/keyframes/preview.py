"""A scrub preview with keyframes: a keyframe as the render makes it, an in-between carried from its two
keyframes (from the cache when a render put them there, else rendered for the preview).

A preview frame is stored in the cache only when it is exactly the frame the render would make: a
keyframe that starts its shot (no history to carry), and an in-between whose two keyframes are exact
(cached or shot starts), since synthesis is deterministic given its keyframes.

Frames rendered for previews are kept in memory (PREVIEW_MEMORY), and while the app is idle
`prepare_near` makes more of them around the playhead, the way a video editor fills its render cache:
every keyframe first, nearest first, then the frames between them within PREPARE_REACH, nearest first,
then twice as far. A scrub onto a prepared frame shows it at once; one between prepared keyframes costs
one in-between (about a third of a keyframe's network run), so the keyframes serve every scrub soonest.
"""

from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass

import numpy as np

from pipeline.cache import CacheEntry
from pipeline.engines import Engine, FrameContext
from pipeline.engines.base import resize_to
from pipeline.events import CancelToken
from pipeline.keyframes.plan import KeyframePlan, plan_if_scanned, plan_keyframes
from pipeline.keyframes.synth import Keyframe, synthesize
from pipeline.temporal.stabilizer import is_stateful

PREVIEW_MEMORY = 256 * 2**20  # bytes of preview frames kept: a 10-s 24-fps clip in a 1280-px window, with room
PREPARE_REACH = 48  # frames each side of the playhead whose in-betweens are prepared first (2 s at 24 fps)


@dataclass(frozen=True)
class _Kept:
    index: int
    value: object  # (Keyframe, exact) for a keyframe, the image for a frame between
    nbytes: int


class PreviewFrames:
    """Frames rendered for previews, bounded in bytes. Each belongs to a setting (engine parameters, clip,
    range start, size); when room is needed, frames of other settings go first, then those of the
    current one farthest from its playhead. Thread-safe (the app's worker and any other caller)."""

    def __init__(self, budget: int = PREVIEW_MEMORY):
        self.budget = budget
        self.items: dict[tuple, _Kept] = {}  # (setting, "key" or "frame", index) -> kept, oldest first
        self.nbytes = 0
        self.setting: tuple | None = None  # the latest caller's, and its playhead
        self.playhead = 0
        self._lock = threading.Lock()

    def use(self, setting: tuple, playhead: int) -> None:
        """The setting previews are made for now, and its playhead. Another clip's frames are dropped (the
        app shows one clip at a time); another style's of this clip stay until room is needed (switching back)."""
        with self._lock:
            if self.setting is not None and setting[1] != self.setting[1]:
                for key in [key for key in self.items if key[0][1] != setting[1]]:
                    self.nbytes -= self.items.pop(key).nbytes
            self.setting, self.playhead = setting, playhead

    def get(self, setting: tuple, kind: str, index: int):
        with self._lock:
            kept = self.items.get((setting, kind, index))
        return None if kept is None else kept.value

    def put(self, setting: tuple, kind: str, index: int, value, nbytes: int) -> bool:
        """Keep `value` unless all there is of the current setting is nearer its playhead and there is no
        room: False then."""
        with self._lock:
            rank = self._rank(setting, index)
            while self.nbytes + nbytes > self.budget and self.items:
                far_key = max(self.items, key=lambda key: self._rank(key[0], self.items[key].index))
                if self._rank(far_key[0], self.items[far_key].index) <= rank:
                    return False
                self.nbytes -= self.items.pop(far_key).nbytes
            if self.nbytes + nbytes > self.budget:
                return False
            self.items[(setting, kind, index)] = _Kept(index, value, nbytes)
            self.nbytes += nbytes
            return True

    def room_for(self, setting: tuple, index: int, nbytes: int) -> bool:
        """put() would keep it: there is room, or what it would drop is farther from the playhead."""
        with self._lock:
            rank = self._rank(setting, index)
            dropped = sum(kept.nbytes for key, kept in self.items.items() if self._rank(key[0], kept.index) > rank)
            return self.nbytes - dropped + nbytes <= self.budget

    def _rank(self, setting: tuple, index: int) -> float:
        """How readily a frame is dropped: another setting's first, then by distance from the playhead."""
        return float("inf") if setting != self.setting else abs(index - self.playhead)


_frames = PreviewFrames()  # owned by the thread that makes previews (the app's render worker)


def keyframe_preview(engine: Engine, reader, index: int, cancel: CancelToken | None = None,
                     entry: CacheEntry | None = None, on_step=None, start: int = 0,
                     size: tuple[int, int] | None = None, source_info=None) -> tuple[np.ndarray, bool]:
    """The frame `index` of a keyframe render of the range starting at `start`: (image, from_cache).

    With `size` (width, height) the source frames are scaled to it first (a preview at the view's pixel
    size, `reader` may then read the clip's scrubbing proxy) and nothing is stored in `entry` (it is
    still read). The plan is made from `source_info`'s clip (default: the reader's), as the render's is."""
    if entry is not None:
        image = entry.load(index)
        if image is not None:
            return image, True
    maker = _Maker(engine, reader, index, cancel, entry, on_step, start, size, source_info)
    image = maker.kept("frame", index)
    if image is not None:
        return image, False
    return maker.frame(index), False


def prepared(engine: Engine, path, index: int, start: int = 0, size: tuple[int, int] | None = None) -> bool:
    """Frame `index` of this preview setting is ready in memory (a scrub onto it needs no engine call)."""
    setting = _setting(engine, path, start, size)
    return _frames.get(setting, "frame", index) is not None or _frames.get(setting, "key", index) is not None


def needs_keyframes(engine: Engine, path, index: int, entry: CacheEntry | None = None, start: int = 0,
                    size: tuple[int, int] | None = None) -> bool:
    """A preview of frame `index` would run the engine on a keyframe: it is neither prepared nor between
    two keyframes kept in memory or in `entry` (then it costs one in-between). True too while the clip
    is not measured that far (finding its keyframes would read the clip)."""
    if index < start:  # planned as a range of its own, never kept
        return True
    setting = _setting(engine, path, start, size)
    if _frames.get(setting, "frame", index) is not None:
        return False
    plan = plan_if_scanned(path, engine.params, start, index + 1)
    if plan is None:
        return True
    return any(_frames.get(setting, "key", k) is None and (entry is None or not entry.has(k))
               for k in set(plan.neighbours(index)))


def prepare_near(engine: Engine, reader, playhead: int, cancel: CancelToken | None = None,
                 entry: CacheEntry | None = None, start: int = 0, size: tuple[int, int] | None = None,
                 source_info=None) -> bool:
    """Make one more preview frame around `playhead` (see the module), skipping those a render put in
    `entry` and those the memory has no room for (it holds nearer ones): False when none is left.
    Raises CancelledError when `cancel` is (within milliseconds)."""
    maker = _Maker(engine, reader, playhead, cancel, entry, None, start, size, source_info)
    plan = maker.plan_to(maker.info.frame_count)
    rendered = maker.entry.indices() if maker.entry is not None else set()
    for kind, index in _reach_order(plan, playhead, maker.start, maker.info.frame_count):
        if maker.kept(kind, index) is not None or (kind == "frame" and maker.kept("key", index) is not None):
            continue
        if index in rendered:
            continue
        if not maker.room_for(kind, index):
            continue
        if kind == "key":
            maker.keyframe(index)
        else:
            maker.frame(index)
        return maker.kept(kind, index) is not None
    return False


def prepare_in_order(engine: Engine, reader, playhead: int, cancel: CancelToken | None = None,
                     entry: CacheEntry | None = None, start: int = 0, size: tuple[int, int] | None = None,
                     source_info=None) -> bool:
    """prepare_near for a reader whose seeks are slow (a long-GOP original while its proxy is made): make
    the next keyframe not kept yet after where `reader` is, decoding on to it (VideoReader.advance), then
    from the range's start once the clip's end is reached; no in-betweens (those read frames all over the
    clip). False when every keyframe is kept or has no room, or the clip's shots are not measured yet (the
    plan would read the clip). Raises CancelledError when `cancel` is (within milliseconds)."""
    maker = _Maker(engine, reader, playhead, cancel, entry, None, start, size, source_info)
    plan = plan_if_scanned(maker.info.path, engine.params, maker.start, maker.info.frame_count)
    if plan is None:
        return False
    maker.plan = plan
    rendered = maker.entry.indices() if maker.entry is not None else set()
    keys = [k for k in plan.keyframes if k >= maker.start]
    at = bisect.bisect_left(keys, reader.position) if reader.position >= 0 else 0
    for reading_order in (keys[at:], keys[:at]):  # on from the decoder, then from the start
        k = next((k for k in reading_order if k not in rendered and maker.kept("key", k) is None), None)
        # the memory is asked once a segment: a long clip has thousands of keyframes
        if k is not None and maker.room_for("key", k):
            reader.advance(k, maker.cancel)
            maker.keyframe(k)
            return maker.kept("key", k) is not None
    return False


def _setting(engine: Engine, path, start: int, size) -> tuple:
    """What prepared frames depend on; the file's size and time: a clip rewritten in place is another clip."""
    try:
        st = os.stat(path)
        clip = (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        clip = (str(path), None, None)
    return (engine.params, clip, start, size)


def _reach_order(plan: KeyframePlan, playhead: int, start: int, frame_count: int):
    """("key" or "frame", index) in the order prepare_near makes them."""
    near = lambda i: abs(i - playhead)  # noqa: E731
    yield from (("key", k) for k in sorted((k for k in plan.keyframes if k >= start), key=near))
    reach, done = PREPARE_REACH, (playhead, playhead)
    while True:
        lo, hi = max(start, playhead - reach), min(frame_count, playhead + reach + 1)
        yield from (("frame", i) for i in sorted((i for i in range(lo, hi) if not done[0] <= i < done[1]), key=near))
        if lo == start and hi == frame_count:
            return
        done, reach = (lo, hi), reach * 2


class _Maker:
    """Renders keyframes and in-betweens of one preview setting, keeping what it makes in `_frames`."""

    def __init__(self, engine, reader, playhead, cancel, entry, on_step, start, size, source_info):
        self.engine, self.reader, self.cancel, self.entry, self.on_step = engine, reader, cancel or CancelToken(), entry, on_step
        self.info = source_info or reader.info
        self.size = size
        self.store = entry if size is None else None
        if playhead < start:  # a frame before the range: as if a range began there, and not stored in this one
            start, self.entry, self.store = playhead, None, None
        self.start = start
        self.plan: KeyframePlan | None = None
        self.stop = playhead + 1
        self.out = engine.output_size(*(size or (self.info.width, self.info.height)))
        self.setting = _setting(engine, self.info.path, start, size)
        _frames.use(self.setting, playhead)

    def kept(self, kind: str, index: int):
        return _frames.get(self.setting, kind, index)

    def room_for(self, kind: str, index: int) -> bool:
        """The memory would keep it: a keyframe counts twice (its source and its stylized frame)."""
        width, height = self.out
        return _frames.room_for(self.setting, index, width * height * 3 * (2 if kind == "key" else 1))

    def source(self, i: int) -> np.ndarray:
        frame = self.reader.frame(i)
        return frame if self.size is None else resize_to(frame, self.size)

    def plan_to(self, stop: int) -> KeyframePlan:
        if self.plan is None or self.plan.stop < stop:
            self.plan = plan_keyframes(self.info.path, self.engine.params, self.start, max(stop, self.stop), self.cancel)
            if self.store is not None and self.store.read_meta().get("keyframes", {}).get("stop", 0) < self.plan.stop:
                self.store.write_meta({"keyframes": self.plan.to_json()})  # the timeline marks them
        return self.plan

    def frame(self, index: int) -> np.ndarray:
        plan = self.plan_to(index + 1)
        a, b = plan.neighbours(index)
        before, exact_a = self.keyframe(a)
        if a == b:
            return before.image
        after, exact_b = self.keyframe(b)
        fill = None
        if self.engine.fills_holes:
            fill = lambda crop: self.engine.process(crop, FrameContext(index=index, cancel=self.cancel))  # noqa: E731
        image = synthesize(index, resize_to(self.source(index), self.out), before, after, fill, cancel=self.cancel)
        if self.store is not None and exact_a and exact_b:
            self.store.store(index, image)
        _frames.put(self.setting, "frame", index, image, image.nbytes)
        return image

    def keyframe(self, k: int) -> tuple[Keyframe, bool]:
        image = self.entry.load(k) if self.entry is not None else None
        if image is not None:  # what the render made
            return Keyframe(k, resize_to(self.source(k), self.out), resize_to(image, self.out)), True
        kept = self.kept("key", k)
        if kept is None:
            kept = self.render_alone(k)
            key = kept[0]  # kept with its flow-size source, which every in-between beside it needs
            _frames.put(self.setting, "key", k, kept, key.source.nbytes + key.image.nbytes + key.small_source.nbytes)
        return kept

    def render_alone(self, k: int) -> tuple[Keyframe, bool]:
        frame = self.source(k)
        radius = self.engine.temporal_radius
        lo, hi = max(0, k - radius), min(self.info.frame_count, k + radius + 1)
        frames = [self.source(i) for i in range(lo, hi)]
        ctx = FrameContext(index=k, cancel=self.cancel, on_step=self.on_step, neighbors=frames, center=k - lo)
        image = self.engine.process(frame, ctx)
        # a shot's first keyframe has nothing to carry: the render makes the same frame
        exact = k == self.plan_to(k + 1).shot_of(k) or not is_stateful(self.engine.params)
        if exact and self.store is not None:
            self.store.store(k, image)
        return Keyframe(k, resize_to(frame, self.out), image), exact
