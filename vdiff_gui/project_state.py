"""The observable project: the clip, the current frame, the in/out range and the parameters.

Views take the state in their constructor and listen to its signals; they change it only through its
methods. Parameter and in/out edits go through a QUndoStack; consecutive edits of one field with the
same merge key (one slider drag, one marker drag) make one undo step until close_merge(). The stack's
clean state is the saved state: `modified` says whether there is unsaved work.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from pipeline.request import StyleParams
from pipeline.video import VideoInfo

_MERGE_IDS: dict[str, int] = {}


def _merge_id(key: str) -> int:
    return _MERGE_IDS.setdefault(key, 1000 + len(_MERGE_IDS))


class _ParamsCommand(QUndoCommand):
    def __init__(self, state: "ProjectState", before: StyleParams, after: StyleParams, merge_key: str | None):
        changed = [k for k, v in after.to_dict().items() if before.to_dict()[k] != v]
        super().__init__(f"change {', '.join(changed) or 'parameters'}")
        self.state, self.before, self.after = state, before, after
        self.merge_key = merge_key
        self.open = merge_key is not None

    def id(self) -> int:
        return _merge_id(self.merge_key) if self.merge_key else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not self.open or not isinstance(other, _ParamsCommand) or other.merge_key != self.merge_key:
            return False
        self.after = other.after
        return True

    def redo(self) -> None:
        self.state._apply_params(self.after)

    def undo(self) -> None:
        self.state._apply_params(self.before)


class _RangeCommand(QUndoCommand):
    """An in/out change; the moves of one marker drag (same open merge key) make one step."""

    def __init__(self, state: "ProjectState", before: tuple[int, int], after: tuple[int, int], merge_key: str | None):
        super().__init__("change the in/out range")
        self.state, self.before, self.after = state, before, after
        self.merge_key = merge_key
        self.open = merge_key is not None

    def id(self) -> int:
        return _merge_id(f"range:{self.merge_key}") if self.merge_key else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not self.open or not isinstance(other, _RangeCommand) or other.merge_key != self.merge_key:
            return False
        self.after = other.after
        return True

    def redo(self) -> None:
        self.state.set_range(*self.after)

    def undo(self) -> None:
        self.state.set_range(*self.before)


class ProjectState(QObject):
    clip_changed = Signal(object)  # VideoInfo or None
    frame_changed = Signal(int)
    range_changed = Signal(int, int)  # in point, out point (both inclusive)
    params_changed = Signal(object)  # StyleParams

    def __init__(self, params: StyleParams | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.info: VideoInfo | None = None
        self.frame = 0
        self.in_point = 0
        self.out_point = 0
        self.params = params or StyleParams()
        self.undo_stack = QUndoStack(self)

    @property
    def clip_path(self) -> Path | None:
        return self.info.path if self.info else None

    @property
    def last_frame(self) -> int:
        return self.info.frame_count - 1 if self.info else 0

    def set_clip(self, info: VideoInfo | None) -> None:
        """A newly opened clip: playhead at 0, the range is the whole clip, no edits to undo."""
        self.undo_stack.clear()
        self.info = info
        self.frame = 0
        self.in_point, self.out_point = 0, self.last_frame
        self.clip_changed.emit(info)
        self.range_changed.emit(self.in_point, self.out_point)
        self.frame_changed.emit(0)

    def set_frame(self, index: int) -> None:
        if self.info is None:
            return
        index = max(0, min(self.last_frame, int(index)))
        if index != self.frame:
            self.frame = index
            self.frame_changed.emit(index)

    def step(self, frames: int) -> None:
        self.set_frame(self.frame + frames)

    def step_seconds(self, seconds: float) -> None:
        """Move by a time: to the frame nearest the current frame's timestamp plus `seconds` (through
        the timestamp index, so variable-frame-rate clips land on the right frame)."""
        if self.info is not None:
            self.set_frame(min(self.last_frame, self.info.frame_at(self.info.frame_time(self.frame) + seconds)))

    def set_range(self, in_point: int, out_point: int) -> None:
        """Set both points, clamped to the clip; an out before the in moves the in (and vice versa)."""
        if self.info is None:
            return
        in_point = max(0, min(self.last_frame, int(in_point)))
        out_point = max(in_point, min(self.last_frame, int(out_point)))
        if (in_point, out_point) != (self.in_point, self.out_point):
            self.in_point, self.out_point = in_point, out_point
            self.range_changed.emit(in_point, out_point)

    def edit_range(self, in_point: int, out_point: int, merge_key: str | None = None) -> None:
        """set_range as an undo step (merged with the previous one for the same open merge key)."""
        if self.info is None:
            return
        in_point = max(0, min(self.last_frame, int(in_point)))
        out_point = max(in_point, min(self.last_frame, int(out_point)))
        if (in_point, out_point) != (self.in_point, self.out_point):
            self.undo_stack.push(_RangeCommand(self, (self.in_point, self.out_point), (in_point, out_point), merge_key))

    def set_in_point(self, index: int | None = None, merge_key: str | None = None) -> None:
        index = self.frame if index is None else index
        self.edit_range(index, max(index, self.out_point), merge_key)

    def set_out_point(self, index: int | None = None, merge_key: str | None = None) -> None:
        index = self.frame if index is None else index
        self.edit_range(min(index, self.in_point), index, merge_key)

    def clear_range(self) -> None:
        """In and out back to the whole clip (undoable)."""
        self.edit_range(0, self.last_frame)

    @property
    def modified(self) -> bool:
        """Edits (parameters, in/out) since the project was opened or saved."""
        return not self.undo_stack.isClean()

    def mark_saved(self) -> None:
        self.undo_stack.setClean()

    # parameters (undoable)
    def edit_params(self, params: StyleParams, merge_key: str | None = None) -> None:
        """Change the parameters as one undo step (merged with the previous one for the same open merge key)."""
        if params == self.params:
            return
        self.undo_stack.push(_ParamsCommand(self, self.params, params, merge_key))

    def edit(self, merge_key: str | None = None, **changes) -> None:
        self.edit_params(self.params.replace(**changes), merge_key)

    def close_merge(self) -> None:
        """End the current merge (a slider was released, a marker dropped, a text field lost focus)."""
        index = self.undo_stack.index()
        command = self.undo_stack.command(index - 1) if index > 0 else None
        if isinstance(command, (_ParamsCommand, _RangeCommand)):
            command.open = False

    def reset_params(self, params: StyleParams) -> None:
        """Replace the parameters without an undo step (opening a project) and forget the history."""
        self.undo_stack.clear()
        self._apply_params(params)

    def _apply_params(self, params: StyleParams) -> None:
        if params != self.params:
            self.params = params
            self.params_changed.emit(params)
