"""High-DPI screens (QT_SCALE_FACTOR=2, offscreen, in a fresh process): frames, thumbnails and swatches
at the device pixel ratio, and 100% is one source pixel per device pixel."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import asyncio, sys
import numpy as np
from PySide6.QtCore import QSize
from vdiff_gui.app import make_application
app, loop = make_application()
from vdiff_gui.images import qimage_to_array
from vdiff_gui.main_window import MainWindow
from vdiff_gui.widgets.style_grid import swatch_dir
from vdiff_gui.widgets.timeline import THUMB_HEIGHT

window = MainWindow()
window.auto_answer = True
window.show()

async def until(test, what):
    for _ in range(2400):
        if test():
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")

async def main():
    assert window.devicePixelRatioF() == 2.0, window.devicePixelRatioF()
    await window.documents.open_clip(sys.argv[1])
    after = window.compare.after_view
    await until(lambda: after.frame_index == 0 and after.marker() is None and not after.showing_original, "the preview")
    await until(lambda: window.timeline._thumbnails, "the thumbnails")
    thumb = window.timeline._thumbnails[0]
    assert thumb.devicePixelRatio() == 2.0 and thumb.height() == 2 * THUMB_HEIGHT, (thumb.devicePixelRatio(), thumb.height())
    window.compare.set_fit(False)  # 100%: one source pixel per device pixel, half as many logical pixels
    rect = after.image_rect()
    assert (rect.width(), rect.height()) == (96 / 2, 64 / 2), rect
    await until(lambda: window.param_panel.style_grid.ready, "the swatches")
    stored = sorted(swatch_dir(88).glob("style-*.png"))
    assert len(stored) == 26, stored
    icon = window.param_panel.style_grid.buttons[3].icon().pixmap(QSize(44, 44), 2.0).toImage()
    import cv2
    expected = cv2.imread(str(swatch_dir(88) / "style-03.png"))[:, :, ::-1]
    assert (icon.width(), icon.height()) == (88, 88) and np.array_equal(qimage_to_array(icon), expected)
    print("hidpi ok")

try:
    with loop:
        loop.run_until_complete(main())
finally:
    window.shutdown()
'''


def test_frames_thumbnails_and_swatches_use_the_device_pixel_ratio(small_clip, tmp_path):
    env = dict(os.environ, QT_SCALE_FACTOR="2", QT_QPA_PLATFORM="offscreen", XDG_CACHE_HOME=str(tmp_path / "cache"),
               VDIFF_CONFIG_DIR=str(tmp_path / "config"), VDIFF_THEME="dark")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(small_clip)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0 and "hidpi ok" in done.stdout, done.stdout + done.stderr[-3000:]
