"""Load QtMultimedia and its media backend on a background thread, before the first Play with sound.

The first Play with sound used to hold the GUI thread 45-110 ms: importing PySide6.QtMultimedia with the
Qt libraries under it, then the first QMediaPlayer loading the FFmpeg media plugin and the FFmpeg
libraries under that. Most of it is the dynamic linker's work, and a `dlopen` called through ctypes runs
without Python's lock, so the GUI thread goes on meanwhile; the Python import left after it is short.
`preload_multimedia` starts that once per process (PlaybackController calls it a second after a clip
with sound opens); the player then finds everything loaded.

While the libraries map, a Python handler of Qt's messages (pytest-qt's, the self-test's) is set aside
and Qt's own, which needs no Python, prints them: a library's constructor runs under the dynamic linker's
lock, and the FFmpeg stubs log through Qt when VA-API is missing. A Python handler then waited for
Python's lock while the thread holding it waited for the linker's to import an extension module: the GUI
tests hung there.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PLUGIN_SUFFIXES = (".so", ".dylib")
_lock = threading.Lock()
_thread: threading.Thread | None = None
_outcome: dict = {}  # what the preload did: "plugins" mapped, "failed" {plugin: why}, "error" when the import failed


def preload_multimedia(plugin_folders: list[str]) -> threading.Thread:
    """Start loading QtMultimedia and the media plugins found in `plugin_folders` (Qt's library paths).

    Only the first call starts a thread; every call returns it. Failures are left for the first Play to
    report, which imports the same module on the GUI thread.
    """
    global _thread
    with _lock:
        if _thread is None:
            handler = _set_qt_message_handler_aside()
            _thread = threading.Thread(target=_load, args=(list(plugin_folders), handler),
                                       name="vdiff-multimedia-preload", daemon=True)
            _thread.start()
        return _thread


def preload_outcome(timeout: float) -> tuple[bool, str]:
    """Wait up to `timeout` s for the preload: (whether QtMultimedia and a media plugin were loaded, why not)."""
    thread = _thread
    if thread is None:
        return False, "no preload was started"
    thread.join(timeout)
    if thread.is_alive():
        return False, f"the preload did not end within {timeout:g} s"
    if "error" in _outcome:
        return False, f"PySide6.QtMultimedia did not load: {_outcome['error']}"
    if _outcome.get("failed") and not _outcome.get("plugins"):
        failed = _outcome["failed"].items()
        return False, "; ".join(f"the media plugin {name} did not load: {why}" for name, why in failed)
    if not _outcome.get("plugins"):
        return False, "no Qt media plugin was found in " + (", ".join(_outcome.get("folders", [])) or "no folder")
    return True, ""


def _load(plugin_folders: list[str], handler=None) -> None:
    _outcome["folders"] = plugin_folders
    try:
        try:
            for path in _module_file():
                _dlopen(path)
            plugins = _media_plugins(plugin_folders)
            failed = {path: why for path in plugins if (why := _dlopen(path))}
        finally:
            _put_qt_message_handler_back(handler)
        _outcome["plugins"] = [Path(f).name for f in plugins if f not in failed]
        _outcome["failed"] = {Path(f).name: why for f, why in failed.items()}
        importlib.import_module("PySide6.QtMultimedia")  # its libraries are mapped now: only Python's part is left
    except Exception as exc:  # ImportError, OSError: no sound here; the first Play says so
        _outcome["error"] = f"{type(exc).__name__}: {exc}"
        log.debug("preloading QtMultimedia failed: %s", exc)


def _set_qt_message_handler_aside():
    """Qt's own message handler until the libraries are mapped; the Python one it replaced (or None)."""
    from PySide6.QtCore import qInstallMessageHandler

    return qInstallMessageHandler(None)


def _put_qt_message_handler_back(handler) -> None:
    if handler is None:
        return
    from PySide6.QtCore import qInstallMessageHandler

    newer = qInstallMessageHandler(handler)
    if newer is not None:  # another was installed meanwhile (a test's teardown, say): that one stays
        qInstallMessageHandler(newer)


def library_files(plugin_folders: list[str]) -> list[str]:
    """What the preload maps: the QtMultimedia extension module, then the media plugins."""
    return _module_file() + _media_plugins(plugin_folders)


_MISSING_LIBRARY = re.compile(r"(lib[\w.+-]+?\.so(?:\.\d+)*): cannot open shared object file")
# the sound stack's client libraries, which QtMultimedia takes from the system: what each is, and its Debian
# package; everything else it needs (Qt's own, FFmpeg's) ships with PySide6 and in the bundle
SYSTEM_SOUND_LIBRARIES = {"libpulse": ("PulseAudio's client library", "libpulse0"),
                          "libasound": ("ALSA's library", "libasound2")}


def missing_system_library(why: str) -> str | None:
    """The system's sound library that a failed load names as missing, e.g. libpulse.so.0 on a server with
    no sound stack: that machine plays without sound, and a bundle is not broken by it. None otherwise."""
    found = _MISSING_LIBRARY.search(why)
    return found.group(1) if found is not None and _sound_library(found.group(1)) is not None else None


def missing_library_hint(library: str) -> str:
    """What a missing system sound library is and the package that has it, for a message."""
    what, package = SYSTEM_SOUND_LIBRARIES[_sound_library(library)]
    return f"{what} (Debian and Ubuntu: apt install {package})"


def _sound_library(library: str) -> str | None:
    """Its entry in SYSTEM_SOUND_LIBRARIES: libpulse.so.0 and libpulse-simple.so.0 are PulseAudio's."""
    stem = library.split(".so")[0]
    return next((name for name in SYSTEM_SOUND_LIBRARIES if stem == name or stem.startswith(name + "-")), None)


def _module_file() -> list[str]:
    """The QtMultimedia extension module (its library pulls in libQt6Multimedia), or none where not found."""
    spec = importlib.util.find_spec("PySide6.QtMultimedia")
    return [spec.origin] if spec is not None and spec.origin else []


def _media_plugins(plugin_folders: list[str]) -> list[str]:
    files = []
    for folder in plugin_folders:
        media = Path(folder) / "multimedia"
        if media.is_dir():
            files += sorted(str(p) for p in media.iterdir() if p.suffix in PLUGIN_SUFFIXES)
    return files


def _dlopen(path: str) -> str:
    """Map `path` and the libraries it needs for the life of the process (the handle is never closed);
    why not ("" when mapped, or not tried: on Windows the import and Qt load everything, as before)."""
    if os.name != "posix":
        return ""
    libc = ctypes.CDLL(None)
    libc.dlopen.restype = ctypes.c_void_p
    libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.dlerror.restype = ctypes.c_char_p
    if libc.dlopen(os.fsencode(path), os.RTLD_NOW):  # a foreign call runs without the lock; ctypes.CDLL holds it
        return ""
    why = (libc.dlerror() or b"unknown error").decode(errors="replace")
    log.debug("could not preload %s: %s", path, why)
    return why
