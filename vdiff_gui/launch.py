"""The `vdiff` command: no arguments, `gui [FILE]` or a clip/project file (`vdiff CLIP.mp4`) opens the
window, `--self-test` checks the app, anything else is the CLI.

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


OPENABLE = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".vdiff")  # what "Open with" hands over


def opens_in_app(argv: list[str]) -> bool:
    """`vdiff`, `vdiff gui [FILE]` and `vdiff CLIP.mp4` (a file, not a subcommand) open the window."""
    if not argv or argv[0] == "gui":
        return True
    if len(argv) != 1 or argv[0].startswith("-"):
        return False
    from pipeline.cli import build_parser

    commands = next((a.choices for a in build_parser()._actions if hasattr(a, "add_parser")), {})
    return argv[0] not in commands and (Path(argv[0]).is_file() or Path(argv[0]).suffix.lower() in OPENABLE)


def main(argv: list[str] | None = None) -> int:
    guard_streams()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--self-test":
        from vdiff_gui.self_test import main as self_test

        return self_test(argv[1:])
    if opens_in_app(argv):
        if argv and argv[-1] != "gui" and not argv[-1].startswith("-") and not Path(argv[-1]).exists():
            print(f"vdiff: error: no such file: {argv[-1]}", file=sys.stderr)
            return 2
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # before huggingface_hub loads: the app shows its own
        from vdiff_gui.app import run_app

        return run_app(argv)
    from pipeline.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
