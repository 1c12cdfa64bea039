"""Where the keyframes go: scene cuts, then keyframes inside each shot (fixed interval or where the motion asks).

A plan depends on the source and on where the range starts, never on where it ends, so a longer or
shorter render of the same start finds the same keyframes (and the same cached frames). Every shot
starts with a keyframe and ends with one (its last frame), so every in-between lies strictly between
two keyframes of its own shot and nothing is carried across a cut. The scan reads the frames once at
a low resolution (SCAN_WIDTH) and keeps three numbers per frame, against the frame before (cut,
motion, occlusion), which serve every range start and spacing of the clip: the app scans a clip in the
background when it opens, and plans then cost nothing. A render of a clip not scanned plans as it reads
the frames (LivePlan: the same measures and decisions, without reading the clip twice).

- Cuts: a frame starts a new shot when its colour histogram is far from the previous frame's
  (Bhattacharyya distance > CUT_HISTOGRAM), or moderately far while the motion-compensated grey
  difference is large too (the flow cannot explain the change).
- Fixed: keyframes at shot_start + k * interval, and the shot's last frame.
- Auto: from each keyframe, the accumulated mean flow (as a fraction of the frame width) and the
  accumulated occluded fraction are summed frame by frame; the next keyframe comes when either passes
  its budget (at least `keyframe_min` frames on) or after `keyframe_max` frames.
"""

from __future__ import annotations

import bisect
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.profile import stage
from pipeline.request import StyleParams, keyframe_interval, keyframe_settings  # noqa: F401 (re-exported)
from pipeline.temporal.flow import compute_flow, flow_pair, occlusion_mask, warp

SCAN_WIDTH = 160  # px; cut and motion measures need only a thumbnail
CUT_HISTOGRAM = 0.45  # Bhattacharyya distance of HSV histograms above which a frame is a cut
CUT_HISTOGRAM_WEAK = 0.25  # ... or above this with a motion-compensated difference over CUT_RESIDUAL
CUT_RESIDUAL = 0.12  # mean absolute grey difference (0-1) after warping along the flow
MOTION_BUDGET = 0.015  # auto: accumulated mean flow, as a fraction of the frame width, per keyframe
OCCLUSION_BUDGET = 0.25  # auto: accumulated occluded fraction of the frame per keyframe


@dataclass(frozen=True)
class KeyframePlan:
    """Keyframes and shot starts of the frames [start, stop); stop >= the range end: the plan runs on to
    the keyframe that closes the range's last segment."""

    start: int
    stop: int
    keyframes: tuple[int, ...]
    shots: tuple[int, ...]  # first frame of each shot, starting with `start`

    def is_keyframe(self, index: int) -> bool:
        return _contains(self.keyframes, index)

    def shot_of(self, index: int) -> int:
        """The first frame of the shot `index` belongs to."""
        return self.shots[int(np.searchsorted(self.shots, index, side="right")) - 1]

    def neighbours(self, index: int) -> tuple[int, int]:
        """The keyframes (a, b) with a <= index <= b, in the same shot (a == b == index for a keyframe)."""
        if self.is_keyframe(index):
            return index, index
        at = int(np.searchsorted(self.keyframes, index))
        return self.keyframes[at - 1], self.keyframes[at]

    def to_json(self) -> dict:
        return {"start": self.start, "stop": self.stop, "keyframes": list(self.keyframes), "shots": list(self.shots)}

    # what a render's stages ask of a plan, which a LivePlan answers while it is made
    @property
    def horizon(self) -> int:
        """The frames [start, horizon) the render reads."""
        return self.stop

    @property
    def spacing(self) -> int:
        """The most frames from one keyframe to the next."""
        keys = self.keyframes
        return max((b - a for a, b in zip(keys, keys[1:])), default=1)

    def measure(self, index: int, frame: np.ndarray) -> None:
        """A plan made already needs no frames."""

    def plan(self) -> KeyframePlan:
        """What is settled, as a plan: all of it (as LivePlan.plan)."""
        return self

    def settled(self, index: int) -> bool:
        return True

    def wants_frames_after(self, index: int) -> bool:
        return index + 1 < self.stop


def _contains(values: tuple[int, ...], index: int) -> bool:
    at = int(np.searchsorted(values, index))
    return at < len(values) and values[at] == index


def uses_keyframes(params: StyleParams) -> bool:
    return keyframe_settings(params) is not None


def plan_keyframes(path: str | Path, params: StyleParams, start: int, end: int, cancel=None) -> KeyframePlan:
    """The keyframe plan for rendering [start, end) of the clip at `path` with `params` (see the module).

    Made from the clip's per-frame measures (ClipScan), kept per source file: the GUI asks again for
    every preview, and scanning again costs nothing."""
    return _plan_for(path, _spacing(params), start, end, cancel)


def plan_if_scanned(path: str | Path, params: StyleParams, start: int, end: int) -> KeyframePlan | None:
    """plan_keyframes' plan when the clip is already measured that far (nothing is read), else None."""
    spacing = _spacing(params)
    scan = clip_scan(path, start)
    if scan.frame_count is None or scan.scanned < min(scan.frame_count, end + spacing[2]):
        return None
    return _plan(scan, *spacing, start, end, min(scan.frame_count, end + spacing[2]))


def _spacing(params: StyleParams) -> tuple[bool, int, int]:
    """(auto, fewest frames between keyframes, most)."""
    settings = keyframe_settings(params) or {"keyframes": "fixed", "keyframe_interval": 1}
    if settings["keyframes"] == "auto":
        return True, settings["keyframe_min"], settings["keyframe_max"]
    return False, settings["keyframe_interval"], settings["keyframe_interval"]


class ClipScan:
    """The per-frame measures every plan of one clip is made from, each of a frame against the one
    before it (so they depend neither on where a range starts nor on the spacing): whether it is a cut,
    and for auto spacing its motion and occluded fraction. Frames [origin, scanned) are measured;
    `extend` reads on, and a scan in the background and a preview that needs more share the work."""

    def __init__(self, path: Path, origin: int):
        self.path, self.origin = path, origin
        self.frame_count: int | None = None  # known once the first extend has opened the clip
        self.cut: list[bool] = []  # [i - origin]: frame i starts a shot after frame i - 1
        self.motion: list[float] = []
        self.occluded: list[float] = []
        self._last = None  # signature of frame scanned - 1
        self._lock = threading.Lock()
        self.plans: dict[tuple, KeyframePlan] = {}  # made from these measures, which never change once taken
        self.plans_lock = threading.Lock()  # the worker's previews and the app's scan thread share a scan

    @property
    def scanned(self) -> int:
        return self.origin + len(self.cut)

    def extend(self, upto: int, cancel=None) -> None:
        """Measure the frames up to `upto` (exclusive; clamped to the clip)."""
        from pipeline.errors import CancelledError
        from pipeline.video import VideoReader

        if self.frame_count is not None and self.scanned >= min(upto, self.frame_count):
            return
        with VideoReader(self.path) as reader:  # it probes the clip: the frame count comes with it
            self.frame_count = reader.info.frame_count
            upto = min(upto, self.frame_count)
            if self.scanned >= upto:  # another thread measured these frames while the clip was opened
                return
            for index, frame in reader.iter_frames(self.scanned, upto):
                if cancel is not None and cancel.cancelled:
                    raise CancelledError()
                current = _signature(frame)
                with self._lock:  # another thread may have measured this frame meanwhile
                    if index != self.scanned:
                        if self.scanned >= upto:
                            return
                        continue
                    cut, motion, occluded = _measures(self._last, current, with_motion=True)
                    self.cut.append(cut)
                    self.motion.append(motion)
                    self.occluded.append(occluded)
                    self._last = current


_SCANS: dict = {}  # (source path, identity) -> [ClipScan], one per origin asked for
_SCANS_KEPT = 8
_SCANS_LOCK = threading.Lock()  # the app's background scan and a preview may ask for the first scan at once
CONTINUE_SCAN = 240  # frames: a range starting this far past a scan's end reads on from it, not anew


def clip_scan(path: str | Path, start: int) -> ClipScan:
    """The scan of the clip at `path` that covers `start` (one is made from `start` if none does)."""
    from pipeline.cache import source_identity

    key = (str(path), tuple(sorted(source_identity(Path(path)).items())))
    with _SCANS_LOCK:
        scans = _SCANS.get(key)
        if scans is None:
            if len(_SCANS) >= _SCANS_KEPT:
                _SCANS.pop(next(iter(_SCANS)))
            scans = _SCANS[key] = []
        usable = [scan for scan in scans if scan.origin <= start <= scan.scanned + CONTINUE_SCAN]
        if usable:
            return max(usable, key=lambda scan: scan.scanned)  # the one that has read furthest
        scan = ClipScan(Path(path), start)
        scans.append(scan)
        return scan


def scan_clip(path: str | Path, cancel=None) -> None:
    """Measure the whole clip ahead of time (the app, when a clip opens): plans from then on cost nothing."""
    clip_scan(path, 0).extend(sys.maxsize, cancel)


def _plan_for(path, spacing: tuple, start: int, end: int, cancel) -> KeyframePlan:
    scan = clip_scan(path, start)
    scan.extend(end + spacing[2], cancel)  # a keyframe is due by then at the latest
    return _plan(scan, *spacing, start, end, min(scan.frame_count, end + spacing[2]))


PLANS_KEPT = 16  # per scan: the idle preparation's whole-clip plan and the latest previews' plans


def _plan(scan: ClipScan, auto: bool, low: int, high: int, start: int, end: int, horizon: int) -> KeyframePlan:
    """The plan of [start, end) on `scan`'s measures up to `horizon`; made once (a whole-clip plan of a
    10-minute clip is a 7-10 ms loop, asked again for every frame the idle preparation makes)."""
    key = (auto, low, high, start, end, horizon)
    with scan.plans_lock:
        plan = scan.plans.get(key)
    if plan is None:
        plan = _make_plan(scan, auto, low, high, start, end, horizon)
        with scan.plans_lock:
            if len(scan.plans) >= PLANS_KEPT:
                scan.plans.pop(next(iter(scan.plans)))
            scan.plans[key] = plan
    return plan


def _make_plan(scan: ClipScan, auto: bool, low: int, high: int, start: int, end: int, horizon: int) -> KeyframePlan:
    planner = _Planner(auto, low, high, start, end)
    for index in range(start, horizon):
        at = index - scan.origin
        planner.step(index, scan.cut[at], scan.motion[at], scan.occluded[at])
        if planner.done:
            break
    else:
        planner.finish(horizon)
    return planner.plan()


class LivePlan:
    """The plan of [start, end) made while a render reads the frames, for a clip not scanned yet: the plan
    plan_keyframes makes (the same measures, in the same order), without reading the clip a second time.

    The render hands it each frame in order (`measure`); a frame's place in the plan is known once
    `settled(index)`; the frames after `done` are not needed. Fixed spacing measures only the cuts."""

    def __init__(self, params: StyleParams, start: int, end: int, frame_count: int):
        auto, low, high = _spacing(params)
        self.start = start
        self.horizon = min(frame_count, end + high)  # a keyframe is due by then at the latest
        self.spacing = high  # the most frames from one keyframe to the next
        self._planner = _Planner(auto, low, high, start, end)
        self._last = None  # the signature of the frame measured last
        self._measured = start

    @stage("plan")
    def measure(self, index: int, frame: np.ndarray) -> None:
        """Frame `index`, the one after the last measured, at the render's source size."""
        if index != self._measured:
            raise ValueError(f"frame {index} measured out of order (expected {self._measured})")
        current = _signature(frame)
        previous, self._last = self._last, current
        self._planner.step(index, *_measures(previous, current, with_motion=self._planner.auto))
        self._measured = index + 1
        if self._measured >= self.horizon and not self._planner.done:
            self._planner.finish(self.horizon)

    @property
    def done(self) -> bool:
        return self._planner.done

    def wants_frames_after(self, index: int) -> bool:
        """False once the plan is closed: the frames after it change nothing."""
        return not self.done

    def settled(self, index: int) -> bool:
        """Whether frame `index`'s place (keyframe or not, its shot) is final."""
        return self.done or index < self._measured - 1

    def is_keyframe(self, index: int) -> bool:
        keyframes = self._planner.keyframes  # a growing list: bisect, not a copy per frame
        at = bisect.bisect_left(keyframes, index)
        return at < len(keyframes) and keyframes[at] == index

    def shot_of(self, index: int) -> int:
        shots = self._planner.shots
        return shots[bisect.bisect_right(shots, index) - 1]

    def plan(self) -> KeyframePlan | None:
        """What is settled so far, as a plan (the whole plan once done); None before the first keyframe."""
        planner = self._planner
        keyframes = planner.keyframes if self.done else [k for k in planner.keyframes if self.settled(k)]
        if not keyframes:
            return None
        return KeyframePlan(self.start, keyframes[-1] + 1, tuple(keyframes),
                            tuple(s for s in planner.shots if s <= keyframes[-1]))


class _Planner:
    """The plan made one frame at a time, from each frame's measures in order (the same decisions whether
    the measures come from a ClipScan or from the render reading the frames). After step(i) the frames
    before i are settled; i itself may still become a keyframe: the last of its shot, if i + 1 is a cut."""

    def __init__(self, auto: bool, low: int, high: int, start: int, end: int):
        self.auto, self.low, self.high, self.start, self.end = auto, low, high, start, end
        self.keyframes: list[int] = []
        self.shots: list[int] = []  # first frame of each shot, starting with `start`
        self.done = False  # the range's last segment is closed: later frames change nothing
        self._last_key = start
        self._motion = self._occluded = 0.0

    def step(self, index: int, cut: bool, motion: float, occluded: float) -> None:
        keyframes = self.keyframes
        if index == self.start or cut:
            if keyframes and keyframes[-1] != index - 1:
                keyframes.append(index - 1)  # the shot before ends with a keyframe
            if keyframes and keyframes[-1] >= self.end - 1:
                self.done = True
                return
            self.shots.append(index)
            keyframes.append(index)
            self._last_key, self._motion, self._occluded = index, 0.0, 0.0
        else:
            if self.auto:
                self._motion, self._occluded = self._motion + motion, self._occluded + occluded
            spacing = index - self._last_key
            changed = self._motion > MOTION_BUDGET or self._occluded > OCCLUSION_BUDGET
            if spacing >= self.high or (self.auto and spacing >= self.low and changed):
                keyframes.append(index)
                self._last_key, self._motion, self._occluded = index, 0.0, 0.0
        if keyframes[-1] == index and index >= self.end - 1:
            self.done = True

    def finish(self, horizon: int) -> None:
        """The frames ran out at `horizon` (the clip's end): its last frame closes the last shot."""
        if self.keyframes[-1] != horizon - 1:
            self.keyframes.append(horizon - 1)
        self.done = True

    def plan(self) -> KeyframePlan:
        return KeyframePlan(self.start, self.keyframes[-1] + 1, tuple(self.keyframes), tuple(self.shots))


def _measures(previous, current, with_motion: bool) -> tuple[bool, float, float]:
    """A frame's measures against the frame before (signatures; previous None: the first frame measured):
    whether it is a cut, and with_motion, its motion and occluded fraction (only auto spacing needs them)."""
    if previous is None:
        return True, 0.0, 0.0
    motion, occluded = _motion(previous[0], current[0]) if with_motion else (0.0, 0.0)
    return is_cut(previous, current), motion, occluded


def _signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (SCAN_WIDTH, max(8, round(h * SCAN_WIDTH / w))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, [12, 6, 6], [0, 180, 0, 256, 0, 256])
    cv2.normalize(histogram, histogram, 1.0, 0.0, cv2.NORM_L1)
    return small, histogram


def is_cut(previous: tuple[np.ndarray, np.ndarray], current: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether `current` (thumbnail, histogram) starts a new shot after `previous`."""
    distance = cv2.compareHist(previous[1], current[1], cv2.HISTCMP_BHATTACHARYYA)
    if distance > CUT_HISTOGRAM:
        return True
    if distance <= CUT_HISTOGRAM_WEAK:
        return False
    return residual(previous[0], current[0]) > CUT_RESIDUAL


def residual(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey difference (0-1) between b and a brought into b's place along the flow."""
    flow = compute_flow(b, a)
    grey = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)  # noqa: E731
    return float(np.abs(grey(warp(a, flow)) - grey(b)).mean() / 255.0)


def _motion(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean flow length (fraction of the width) and occluded fraction from thumbnail a to b."""
    forward, backward = flow_pair(a, b)
    length = np.sqrt(forward[:, :, 0] ** 2 + forward[:, :, 1] ** 2).mean() / a.shape[1]
    return float(length), float(occlusion_mask(forward, backward).mean())


def shot_boundaries(path: str | Path, params: StyleParams, start: int, end: int) -> list[int]:
    """The first frame of each shot in [start, end): where a cluster may cut a range into chunks that do
    not share any history (each chunk then renders as its own range from that start)."""
    if uses_keyframes(params):
        plan = plan_keyframes(path, params, start, end)
    else:  # the cuts alone: one keyframe per shot is enough to find them
        plan = _plan_for(path, (False, end - start, end - start), start, end, None)
    return [shot for shot in plan.shots if shot < end]


def keyframe_positions(path: str | Path, params: StyleParams, start: int, end: int) -> list[int]:
    """The keyframes a render of [start, end) with `params` runs the engine on (every frame without
    keyframe rendering); the last may lie past `end` (it closes the range's last segment)."""
    if not uses_keyframes(params):
        return list(range(start, end))
    return list(plan_keyframes(path, params, start, end).keyframes)


__all__ = ["KeyframePlan", "keyframe_interval", "keyframe_positions", "plan_keyframes", "shot_boundaries",
           "uses_keyframes"]
