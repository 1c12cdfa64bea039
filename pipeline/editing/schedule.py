"""Values that change over the clip: prompt, strength and seed keyframes.

`--prompt "0:a forest in winter" --prompt "120:a forest in summer"` sets keys at frame positions
(`120`) or times (`4.5s`, `1:02.5`); a text without a position is the value from frame 0. Between two
keys a prompt's embedding, and a strength, is interpolated linearly; a seed holds until the next key.
Times are resolved to frames through the clip's timestamp index (`resolve`), so a schedule stored in
the render request is a tuple of (frame, value) pairs that the cache key can include as it is.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Callable, Sequence

from pipeline.errors import BadInputError

# a position, then a colon: frames (120), seconds (4.5s) or minutes:seconds (1:02.5 or 1:02.5s)
_KEY = re.compile(r"^\s*(?P<pos>\d+:\d+(?:\.\d+)?s?|\d+(?:\.\d+)?s|\d+)\s*:\s*(?P<value>.*)$", re.S)


def split_key(text: str) -> tuple[str | None, str]:
    """'120:a forest' -> ('120', 'a forest'); 'a forest' -> (None, 'a forest')."""
    match = _KEY.match(text)
    if match is None:
        return None, text
    return match["pos"], match["value"].strip()


def parse_keys(texts: Sequence[str], to_frame: Callable[[str], int], kind: type = str) -> tuple[tuple[int, object], ...]:
    """Keys from the command line's repeated option, sorted by frame; `to_frame` turns a position text
    into a frame index. One text without a position is a constant (a key at frame 0)."""
    keys: dict[int, object] = {}
    for text in texts:
        position, value = split_key(str(text))
        frame = 0 if position is None else to_frame(position)
        if frame in keys:
            raise BadInputError(f"two values for frame {frame} in '{text}'")
        keys[frame] = _convert(value, kind, text)
    if len(texts) > 1 and any(split_key(str(t))[0] is None for t in texts):
        raise BadInputError("when a value changes over time, give every value a position (e.g. 0:... 120:...)")
    return tuple(sorted(keys.items()))


def _convert(value: str, kind: type, text: str):
    if kind is str:
        return value
    try:
        return kind(value)
    except ValueError:
        raise BadInputError(f"cannot read '{value}' in '{text}' as a {kind.__name__}") from None


def value_at(keys: Sequence[tuple[int, object]], index: int, default=None):
    """The value in force at frame `index`: linearly interpolated between float keys, held for others."""
    if not keys:
        return default
    frames = [k for k, _ in keys]
    i = bisect_right(frames, index) - 1
    if i < 0:
        return keys[0][1]
    frame, value = keys[i]
    if isinstance(value, float) and i + 1 < len(keys):
        nxt, after = keys[i + 1]
        t = (index - frame) / (nxt - frame)
        return value + (after - value) * t
    return value


def blend_at(keys: Sequence[tuple[int, object]], index: int) -> tuple[object, object, float]:
    """For values that are mixed rather than computed (a prompt's embeddings): (a, b, t) meaning
    (1 - t) * a + t * b at frame `index`. Before the first key and after the last, t is 0."""
    frames = [k for k, _ in keys]
    i = bisect_right(frames, index) - 1
    if i < 0:
        return keys[0][1], keys[0][1], 0.0
    if i + 1 >= len(keys):
        return keys[i][1], keys[i][1], 0.0
    (a_frame, a), (b_frame, b) = keys[i], keys[i + 1]
    return a, b, (index - a_frame) / (b_frame - a_frame)


def describe(keys: Sequence[tuple[int, object]]) -> list:
    """JSON-friendly form, for the cache key and project files."""
    return [[frame, value] for frame, value in keys]


def from_json(data) -> tuple[tuple[int, object], ...]:
    """Back from describe() (a project or preset file); bad entries are a BadInputError."""
    try:
        return tuple(sorted((int(frame), value) for frame, value in data or ()))
    except (TypeError, ValueError):
        raise BadInputError(f"bad keyframes: {data!r}") from None
