"""run_app: the QApplication, the qasync event loop, argv and the first launch (`--self-test`: vdiff_gui.self_test)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import qasync
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from pipeline import __version__
from vdiff_gui.garbage import GuiGarbageCollector
from vdiff_gui.presets import RESOURCES
from vdiff_gui.tasks import start_task
from vdiff_gui.theme import apply_dark_theme

USAGE = "usage: vdiff [VIDEO|PROJECT.vdiff] | vdiff gui [VIDEO|PROJECT.vdiff] | vdiff --self-test"


def app_icon() -> QIcon:
    icon = QIcon()
    for name in ("vdiff.svg", "vdiff.png"):
        if (RESOURCES / name).exists():
            icon.addFile(str(RESOURCES / name))
    return icon


def make_application() -> tuple[QApplication, qasync.QEventLoop]:
    """The QApplication (name, version, icon, theme) and the qasync loop that runs the app's tasks."""
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("vdiff")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("vdiff")
    app.setWindowIcon(app_icon())
    if os.environ.get("VDIFF_THEME", "dark") == "dark":
        apply_dark_theme(app)
    if app.findChild(GuiGarbageCollector) is None:
        GuiGarbageCollector(app).start()  # cycles holding Qt objects are freed on the GUI thread only
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    return app, loop


def run_app(argv: list[str]) -> int:
    """`vdiff`, `vdiff VIDEO` and `vdiff gui [VIDEO|PROJECT.vdiff]`: the window, until it closes."""
    args = [a for a in argv if a != "gui"]
    if any(a.startswith("-") for a in args) or len(args) > 1:
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app, loop = make_application()

    from vdiff_gui.main_window import MainWindow  # after the QApplication exists
    from vdiff_gui.startup import startup

    window = MainWindow()
    window.show()
    start_task(startup(window, args[0] if args else None))
    with loop:
        loop.run_forever()
    if window.worker.isRunning():  # stuck in a model load past the bounded wait: do not hang or abort on exit
        logging.shutdown()
        os._exit(0)
    return 0
