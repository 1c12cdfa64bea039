"""Drive the real window through its main states and screenshot the X display (run under Xvfb).

    xvfb-run -s "-screen 0 1600x1000x24" python docs/screenshots/make_screenshots.py

Uses fresh settings and cache folders (a first launch), writes main-window.png, rendering.png (a render
with an export queued behind it in the job list), flicker-graph.png, export-done.png and
export-dialog.png (with the past exports) beside this file. Needs ImageMagick's `import`.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(tempfile.mkdtemp(prefix="vdiff-shots-"))
os.environ["XDG_CACHE_HOME"] = str(WORK / "cache")
os.environ["VDIFF_CONFIG_DIR"] = str(WORK / "config")
sys.path.insert(0, str(HERE.parents[1]))

from vdiff_gui.app import make_application  # noqa: E402
from vdiff_gui.tasks import start_task  # noqa: E402


def shoot(name: str, widget=None) -> None:
    """The whole screen at 1280 px wide, or just `widget`'s window frame at its own size."""
    target = HERE / name
    raw = WORK / name
    subprocess.run(["import", "-window", "root", str(raw)], check=True)
    if widget is None:
        size = ["-resize", "1280x"]
    else:
        frame = widget.frameGeometry()
        size = ["-crop", f"{frame.width()}x{frame.height()}+{frame.x()}+{frame.y()}", "+repage"]
    subprocess.run(["convert", str(raw), *size, "-depth", "8", "-strip", str(target)], check=True)
    print("wrote", target, target.stat().st_size // 1024, "KiB")


async def until(test, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if test():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the window did not reach the state in time")


async def pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def script(window, app) -> None:
    try:
        await states(window)
    finally:  # a failed step must not leave the app running
        window.auto_answer = True
        window.close()


async def states(window) -> None:
    from vdiff_gui.startup import startup

    await startup(window, None)  # first launch: the sample clip with fast-style
    await until(lambda: window.compare.after_view.marker() is None and not window.compare.after_view.showing_original)
    window.state.set_frame(30)
    window.param_panel.style_grid.buttons[4].click()
    await until(lambda: window.param_panel.style_grid.ready and window.compare.after_view.frame_index == 30
                and window.compare.after_view.marker() is None)
    await pause(1.0)  # thumbnails
    shoot("main-window.png")

    window.state.set_range(8, 63)
    window.worker.pause()  # hold the render mid-way for the picture
    window.jobs.render_range()
    window.worker.resume()
    await until(lambda: window.render_bar.progress.value() >= 24)
    window.worker.pause()
    export = window.open_export_dialog()  # queued behind the render: the job list opens
    export.path.setText(str(WORK / "vdiff-sample-styled.mp4"))
    export.accept()
    await pause(0.8)
    shoot("rendering.png")
    window.worker.resume()
    await until(lambda: window.export_box is not None and window.export_box.isVisible(), timeout=180)
    box = window.export_box
    box.adjustSize()
    box.move(window.geometry().center() - box.rect().center())
    await pause(0.8)
    shoot("export-done.png")
    box.close()
    window.jobs_dock.hide()

    worst = window.flicker_graph.worst()
    window.state.set_frame(worst if worst is not None else 30)
    window.timeline.zoom_by(1.6)
    await until(lambda: window.compare.after_view.marker() is None and not window.compare.after_view.showing_original)
    await pause(0.8)
    shoot("flicker-graph.png")

    dialog = window.open_export_dialog()  # with the export above in its list of past exports
    dialog.history.setCurrentRow(0)
    dialog.adjustSize()
    dialog.move(window.geometry().center() - dialog.rect().center())
    await pause(0.8)
    shoot("export-dialog.png", dialog)
    dialog.reject()


def main() -> int:
    app, loop = make_application()
    from vdiff_gui.main_window import MainWindow

    window = MainWindow()
    window.setGeometry(0, 0, 1600, 1000)
    window.show()
    start_task(script(window, app))
    with loop:
        loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
