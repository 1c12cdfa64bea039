"""Helpers for the GUI tests (beside them; pytest puts this folder on sys.path)."""

import numpy as np

from pipeline.engines import FrameContext, create_engine
from pipeline.keyframes import uses_keyframes
from pipeline.previews import preview_frame
from pipeline.video import VideoReader
from vdiff_gui.images import qimage_to_array


def open_clip(qtbot, window, path):
    with qtbot.waitSignal(window.documents.clip_opened, timeout=15000):
        window.documents.open_clip(path)


def wait_view_settled(qtbot, window, timeout=5000):
    """Until the window's layout has settled: the preview's box is the after view's size and stays so (a
    window just shown can resize its views after the first frame; a new box asks for the frame again)."""
    from vdiff_gui.preview import RESIZE_SETTLE_MS

    preview = window.preview
    boxes = [preview.box]

    def settled():
        qtbot.wait(RESIZE_SETTLE_MS)
        boxes.append(preview.box)
        return boxes[-1] == boxes[-2] == preview.fitted_box() and not preview._resize_timer.isActive()

    qtbot.waitUntil(settled, timeout=timeout)


def wait_stylized(qtbot, window, index, timeout=15000):
    """Until the after view shows the stylized frame `index` (not the original, no marker)."""
    view = window.compare.after_view

    def shown():
        assert view.frame_index == index and not view.showing_original and view.marker() is None

    qtbot.waitUntil(shown, timeout=timeout)


def core_stylized(path, params, index) -> np.ndarray:
    """What the core makes of frame `index`: create_engine(params).process() on VideoReader.frame(), or
    with keyframe rendering the core's preview (the in-between carried from its keyframes)."""
    engine = create_engine(params)
    engine.prepare()
    try:
        with VideoReader(path) as reader:
            if uses_keyframes(params):
                return preview_frame(engine, reader, index)[0]
            frame = reader.frame(index)
        return engine.process(frame, FrameContext(index=index))
    finally:
        engine.close()


def shown_pixels(view) -> np.ndarray:
    """The pixels a FrameView is showing, read back from its QImage."""
    return qimage_to_array(view.image())
