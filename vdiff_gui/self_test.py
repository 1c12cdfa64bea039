"""`vdiff --self-test`: the real app, offscreen, from a generated clip to a verified export with audio.

It proves that an installation or a packaged bundle works end to end with no display, no network and
no model download. The real MainWindow and RenderWorker open a generated clip, show a fast-style
preview, render a range with fast-style and one with a tiny random-weight diffusion model written to a
folder and chosen as a user chooses a model folder, then export through the Export dialog and check
the written file (frames, timing, audio). One line goes to stdout; the exit status is 0 when every
check passed, 1 otherwise. Settings, caches and the model live in a temporary folder, removed after a
pass and kept (named in the line) after a failure. A watchdog ends a run that hangs.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from pipeline import __version__

TIMEOUT_S = float(os.environ.get("VDIFF_SELF_TEST_TIMEOUT", "300"))  # a cold bundle on 2 busy cores: ~30 s
CLIP = {"frames": 24, "width": 96, "height": 64, "fps": 12, "audio": True}
FAST_FRAMES = 6
DIFFUSION_FRAMES = 3
DIFFUSION = {"prompt": "a watercolor painting", "steps": 4, "strength": 0.5, "seed": 7}  # 2 denoising steps a frame

log = logging.getLogger(__name__)


class SelfTestError(Exception):
    """A check that failed; its message is the reason the user reads."""


class _Progress:
    """The step the test is at, for the watchdog's message (read from the watchdog thread)."""

    step = "starting"


def prepare_environment(folder: Path) -> None:
    """Before Qt or huggingface_hub are imported: offscreen, settings and caches in `folder`, offline."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    scratch = folder / "tmp"  # what libraries put in the temp folder (onnxruntime, torch) goes here too
    scratch.mkdir(exist_ok=True)
    for name in ("TMPDIR", "TMP", "TEMP"):
        os.environ[name] = str(scratch)
    tempfile.tempdir = str(scratch)
    os.environ["VDIFF_CONFIG_DIR"] = str(folder / "config")
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # the frame cache, sample clip and swatches (Linux)
    os.environ["HF_HOME"] = str(folder / "huggingface")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its import-time advice would clutter the output
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def _log_to(path: Path) -> logging.Handler:
    """Everything the app logs, Python warnings included, goes to `path` (stdout keeps the one line)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler


def _start_watchdog(folder: Path) -> threading.Timer:
    """Ends the process with one line when the test has not finished in TIMEOUT_S, even if Qt hangs."""

    def expire() -> None:
        print(_failure_line(f"no result within {TIMEOUT_S:g} s", folder), flush=True)
        os._exit(1)

    timer = threading.Timer(TIMEOUT_S, expire)
    timer.daemon = True
    timer.start()
    return timer


def _failure_line(reason: str, folder: Path) -> str:
    reason = " ".join(str(reason).split()) or "unknown error"
    return f"vdiff {__version__} self-test: FAILED at {_Progress.step}: {reason} (log: {folder / 'self-test.log'})"


def main(argv: list[str]) -> int:
    """`vdiff --self-test`; returns the exit status."""
    if argv:
        print("usage: vdiff --self-test", file=sys.stderr)
        return 2
    began = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="vdiff-self-test-"))
    prepare_environment(folder)
    handler = _log_to(folder / "self-test.log")
    try:
        faulthandler.enable(sys.stderr)  # a native crash says where it happened
    except (AttributeError, ValueError, OSError):  # no stderr, or one with no file descriptor
        pass
    watchdog = _start_watchdog(folder)
    try:
        summary = _run(folder)
    except SelfTestError as exc:
        line, status = _failure_line(str(exc), folder), 1
    except Exception as exc:  # a bug, not a failed check: keep the traceback in the log
        log.exception("self-test crashed")
        line, status = _failure_line(f"{type(exc).__name__}: {exc}", folder), 1
    else:
        line, status = f"vdiff {__version__} self-test: ok — {summary} ({time.perf_counter() - began:.1f} s)", 0
    finally:
        watchdog.cancel()
    print(line, flush=True)
    logging.getLogger().removeHandler(handler)
    handler.close()
    if status == 0:
        shutil.rmtree(folder, ignore_errors=True)
    return status


def _run(folder: Path) -> str:
    """Start the app offscreen, run the checks in its event loop, close it; the checks' summary."""
    from PySide6.QtCore import qInstallMessageHandler

    from pipeline.cache import FrameCache
    from vdiff_gui.app import make_application
    from vdiff_gui.tasks import start_task

    qt_log = logging.getLogger("qt")
    qInstallMessageHandler(lambda mode, context, message: qt_log.info("%s", message))
    _Progress.step = "starting the app"
    _app, loop = make_application()  # keep the QApplication referenced while the loop runs
    from vdiff_gui.main_window import MainWindow  # after the QApplication exists, as in run_app

    window = MainWindow(cache=FrameCache(folder / "frames"))  # the cache path explicitly: XDG_* is Linux-only
    window.auto_answer = True
    window.show()
    outcome: dict = {}

    async def checks() -> None:
        try:
            outcome["summary"] = await _checks(window, folder)
        except BaseException as exc:  # handed to the caller after the loop stops
            outcome["error"] = exc
        else:
            _Progress.step = "closing the app"
        finally:
            window.close()
            loop.stop()

    start_task(checks())
    with loop:
        loop.run_forever()
    if "error" in outcome:
        raise outcome["error"]
    if "summary" not in outcome:
        raise SelfTestError("the event loop stopped before the checks ended")
    return outcome["summary"]


async def _checks(window, folder: Path) -> str:
    from pipeline.sample import make_sample_clip
    from pipeline.tiny_models import make_tiny_sd_folder
    from vdiff_gui.tasks import run_blocking

    _Progress.step = "generating the clip"
    clip = await run_blocking(lambda: make_sample_clip(folder / "clip.mp4", **CLIP))
    # the model builds (torch, diffusers) while fast-style runs
    model = asyncio.ensure_future(run_blocking(make_tiny_sd_folder, folder / "tiny-sd"))
    try:
        _Progress.step = "opening the clip"
        # a box half the tiny clip's size: it gets a proxy too, so the proxy's process runs
        window.proxies.box = (CLIP["width"] // 2, CLIP["height"] // 2)
        info = await window.documents.open_clip(clip)
        _raise_shown_error(window)
        if info is None or not info.has_audio or info.frame_count != CLIP["frames"]:
            raise SelfTestError(f"the generated clip opened wrong: {info}")
        _Progress.step = "checking the app's resources"
        _check_resources(window)

        _Progress.step = "the fast-style preview"
        await _wait_for_preview(window)
        _Progress.step = "the fast-style render"
        window.state.set_range(0, FAST_FRAMES - 1)
        fast = await _job(window, window.jobs.render_range, window.worker.render_finished)
        _expect(fast.get("total") == FAST_FRAMES, f"rendered {fast.get('total')} frames, not {FAST_FRAMES}")
        fast_device = window.device

        _Progress.step = "building the tiny diffusion model"
        folder_path = await model
        _Progress.step = "the diffusion preview"
        window.param_panel.model.model_chosen.emit(str(folder_path))  # as Model ▸ Folder… does
        window.state.edit(engine="diffusion", **DIFFUSION)
        await _wait_for_preview(window)
        _Progress.step = "the diffusion render"
        window.state.set_range(0, DIFFUSION_FRAMES - 1)
        diffusion = await _job(window, window.jobs.render_range, window.worker.render_finished)
        _expect(diffusion.get("total") == DIFFUSION_FRAMES, f"rendered {diffusion.get('total')} frames, not {DIFFUSION_FRAMES}")
        diffusion_device = window.device

        _Progress.step = "the export"
        window.state.edit(engine="fast-style")
        target = folder / "export.mp4"
        exported = await _export(window, target)

        _Progress.step = "the scrubbing proxy"  # made meanwhile, by a child process (`vdiff proxy`)
        await _wait_for_proxy(window)
        _Progress.step = "the playback sound"  # preloaded a second after the clip opened
        sound = await _playback_sound()
    finally:
        model.cancel()
    return (f"fast-style {fast['total']} frames ({fast_device}), diffusion {diffusion['total']} frames "
            f"({diffusion_device}), export {exported} frames verified with audio, scrubbing proxy made, {sound}")


async def _playback_sound() -> str:
    """QtMultimedia and a media plugin loaded for playback (a bundle missing them would play silently)."""
    from vdiff_gui.multimedia_preload import missing_system_library, preload_outcome
    from vdiff_gui.tasks import run_blocking

    if os.environ.get("VDIFF_NO_AUDIO"):
        return "playback sound off (VDIFF_NO_AUDIO)"
    loaded, why = await run_blocking(preload_outcome, 60.0)
    missing = None if loaded else missing_system_library(why)
    if missing is not None:  # the machine's, not the bundle's: the app plays the picture alone and says why
        return f"playback sound off (this machine has no {missing})"
    _expect(loaded, f"playback would have no sound: {why}")
    return "playback sound loaded"


async def _export(window, target: Path) -> int:
    """Export the whole clip as H.264 with audio through the Export dialog; check the file. Its frame count."""
    from pipeline.video import probe

    dialog = window.open_export_dialog()
    _expect(dialog is not None, "the Export dialog did not open")
    dialog.set_format("h264")
    dialog.range_all.setChecked(True)
    dialog.path.setText(str(target))
    _expect(dialog.audio.isChecked() and dialog.audio.isEnabled(), "the Export dialog offers no audio for a clip with audio")
    result = await _job(window, dialog.accept, window.jobs.export_done, refused=dialog.error.text)
    verification = result.get("verification") or {}
    bad = [c for c in verification.get("checks", []) if not c.get("ok")]
    _expect(verification.get("ok") and not bad, f"the exported file does not match the clip: {bad or verification}")
    audio = [c for c in verification.get("checks", []) if c.get("name") == "audio"]
    _expect(audio and audio[0].get("actual") is True, f"the verification did not find the audio: {audio}")
    info = probe(target)
    _expect(info.has_audio, "the exported file has no audio")
    _expect(info.frame_count == CLIP["frames"], f"the exported file has {info.frame_count} frames, not {CLIP['frames']}")
    _expect(window.export_box is not None, "no 'Export finished' box was shown")
    return info.frame_count


def _check_resources(window) -> None:
    """The icon (SVG rendered through Qt's plugin), the desktop file, the presets, the version in the title."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from vdiff_gui.presets import RESOURCES, PresetStore

    svg = RESOURCES / "vdiff.svg"
    _expect(svg.is_file() and (RESOURCES / "vdiff.png").is_file(), f"the app icon is missing from {RESOURCES}")
    _expect(not QIcon(str(svg)).pixmap(32, 32).isNull(), "Qt cannot draw the SVG icon (no svg icon-engine plugin)")
    _expect(not QApplication.windowIcon().isNull(), "the window has no icon")
    _expect((RESOURCES / "vdiff.desktop").is_file(), f"the desktop file is missing from {RESOURCES}")
    _expect(any(p.builtin for p in PresetStore().presets()), f"the built-in presets are missing from {RESOURCES}")
    title = window.windowTitle()
    _expect(title.startswith(f"vdiff {__version__}"), f"the window title '{title}' does not show the version")


def _expect(condition, reason: str) -> None:
    if not condition:
        raise SelfTestError(reason)


def _raise_shown_error(window) -> None:
    """Every error the app meets goes to its message banner: an error there fails the test."""
    if window.banner.isVisibleTo(window) and window.banner.level in ("error", "warning"):
        raise SelfTestError(window.banner.label.text())


async def _wait_for_preview(window) -> None:
    """Until the after view shows the stylized current frame (not the original, no 'updating' marker)."""
    view = window.compare.after_view
    while not (view.frame_index == window.state.frame and view.image() is not None
               and not view.showing_original and view.marker() is None):
        _raise_shown_error(window)
        await asyncio.sleep(0.05)


async def _wait_for_proxy(window, timeout_s: float = 120.0) -> None:
    """Until the preview reads the clip's proxy; a proxy that fails is only logged by the app, so say where."""
    waited = time.monotonic() + timeout_s
    while window.preview.proxy is None:
        if time.monotonic() > waited:
            raise SelfTestError(f"no scrubbing proxy after {timeout_s:.0f} s (the log says why)")
        await asyncio.sleep(0.1)


async def _job(window, start: Callable[[], None], done_signal, refused: Callable[[], str] | None = None) -> dict:
    """Start a render or an export and wait for it to end; its Finished dict, or SelfTestError with the reason."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future = loop.create_future()

    def finish(value) -> None:
        if not result.done():
            result.set_result(value)

    def fail(message: str, kind: str = "error") -> None:
        if not result.done():
            result.set_exception(SelfTestError(message))

    def cancelled() -> None:
        fail("the job was cancelled")

    jobs = window.jobs
    done_signal.connect(finish)
    jobs.failed.connect(fail)
    jobs.cancelled.connect(cancelled)
    try:
        start()
        if not jobs.busy and not result.done():
            raise SelfTestError(f"the job did not start{': ' + refused() if refused else ''}")
        value = await result
        while jobs.busy:  # the job controller hears the same signal; let it settle to idle
            await asyncio.sleep(0.01)
        return value
    finally:
        done_signal.disconnect(finish)
        jobs.failed.disconnect(fail)
        jobs.cancelled.disconnect(cancelled)
