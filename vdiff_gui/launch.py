"""The `vdiff` command: no arguments (or `gui`) opens the window; anything else is the CLI.

Qt is imported only when the window opens, so CLI commands start fast and run without a display.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] == "gui" or argv[0] == "--self-test":
        from vdiff_gui.app import run_app

        return run_app(argv)
    from pipeline.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
