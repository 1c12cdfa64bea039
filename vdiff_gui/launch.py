"""The `vdiff` command: no arguments (or `gui`) opens the window, `--self-test` checks the app, anything
else is the CLI.

Qt is imported only when the window opens, so CLI commands start fast and run without a display.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LOG_LIMIT = 5_000_000  # bytes; a longer log starts again


def guard_streams() -> Path | None:
    """Point missing sys.stdout/sys.stderr at a log file; the file's path, or None when nothing was missing.

    A windowed build (a packaged app started from a desktop or a file manager) has neither: print()
    copes, but tqdm progress bars and logging handlers write to them and crash. Call it first of all.
    """
    if sys.stdout is not None and sys.stderr is not None:
        return None
    path: Path | None = None
    try:
        import platformdirs

        folder = Path(platformdirs.user_log_dir("vdiff", appauthor=False))  # ~/.local/state/vdiff/log on Linux
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "vdiff.log"
        mode = "w" if path.exists() and path.stat().st_size > LOG_LIMIT else "a"
        stream = open(path, mode, encoding="utf-8", errors="replace", buffering=1)
    except OSError:
        path, stream = None, open(os.devnull, "w", encoding="utf-8")
    if sys.stdout is None:
        sys.stdout = stream
    if sys.stderr is None:
        sys.stderr = stream
    return path


def main(argv: list[str] | None = None) -> int:
    guard_streams()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--self-test":
        from vdiff_gui.self_test import main as self_test

        return self_test(argv[1:])
    if not argv or argv[0] == "gui":
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # before huggingface_hub loads: the app shows its own
        from vdiff_gui.app import run_app

        return run_app(argv)
    from pipeline.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
