"""GUI fixtures: one qasync loop for the session, small real clips, and windows that are always joined."""

import asyncio
import shutil

import pytest
import qasync

from pipeline.sample import make_sample_clip


@pytest.fixture(scope="session")
def qt_loop(qapp):
    """The app's asyncio tasks run in the Qt event loop that qtbot spins, as under run_app."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    executor = qasync.QThreadExecutor(4)
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    yield loop
    executor.shutdown(wait=True)  # join its threads before Qt goes away


@pytest.fixture(scope="session")
def gui_garbage_collector(qapp):
    """As in the app (make_application): cyclic garbage is freed on the GUI thread only."""
    from vdiff_gui.garbage import GuiGarbageCollector

    collector = GuiGarbageCollector(qapp)
    yield collector
    collector.stop()


@pytest.fixture(autouse=True)
def garbage_freed_on_the_gui_thread(gui_garbage_collector):
    gui_garbage_collector.start()  # a test outside tests/gui stops it (tests/conftest.py): no event loop spins there


@pytest.fixture(scope="session")
def small_clip(clip_dir):
    """16 frames, 96x64, 12 fps, with an AAC tone."""
    return make_sample_clip(clip_dir / "small.mp4", frames=16, width=96, height=64, fps=12)


@pytest.fixture(scope="session")
def swatch_cache(tmp_path_factory, qapp):
    """The 26 style swatches, rendered once for the session (each test has its own cache folder)."""
    from vdiff_gui.widgets.style_grid import render_swatches, swatch_source

    folder = tmp_path_factory.mktemp("swatches")
    render_swatches(folder, swatch_source())
    return folder


@pytest.fixture
def make_window(qtbot, qt_loop, swatch_cache):
    """Build MainWindows on this test's settings and cache folders; each is shut down and joined after."""
    from vdiff_gui.main_window import MainWindow
    from vdiff_gui.widgets.style_grid import swatch_dir

    made = []

    def make(**kwargs):
        if not swatch_dir().exists():
            shutil.copytree(swatch_cache, swatch_dir())
        window = MainWindow(**kwargs)
        window.auto_answer = True
        qtbot.addWidget(window)
        window.show()
        made.append(window)
        return window

    yield make
    for window in made:
        window.shutdown()
        assert not window.worker.isRunning()


@pytest.fixture
def window(make_window):
    return make_window()
