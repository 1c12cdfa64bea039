"""Where an export lands, and the only ways it may touch what is already there.

The output is written to a hidden partial beside the target, verified, and only then moved into place:
a file by one atomic rename over the old one; a PNG sequence by moving its frame_*.png files into the
folder. An existing folder is never removed or emptied: a folder that is not empty is refused unless
the user asked to overwrite, and then only its frame_*.png files are replaced (the old sequence's
frames past the new one's end go too, so the folder holds one sequence); nothing else in it is touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.errors import OutputError

FRAME_PATTERN = "frame_*.png"


def partial_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.vdiff-partial{target.suffix}")


def failed_path(target: Path) -> Path:
    """Where an output that failed verification is kept for a look (beside the untouched target)."""
    return target.with_name(f"{target.stem}.vdiff-unverified{target.suffix}")


def check_png_folder(target: Path, overwrite: bool) -> None:
    """A PNG sequence goes into a new folder, an empty one, or (overwrite) one whose frames it replaces."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder; a PNG sequence is written into a folder")
    if target.is_dir() and not overwrite and any(target.iterdir()):
        raise OutputError(
            f"the folder {target} is not empty; choose an empty or new folder for the PNG sequence "
            f"(or add --overwrite to replace only its {FRAME_PATTERN} files)"
        )


def check_not_the_source(target: Path, source: Path | None) -> None:
    """Writing over the clip being read would lose it when the export is moved into place."""
    if source is None or not target.exists():
        return
    try:
        same = os.path.samefile(target, source)
    except OSError:
        return
    if same:
        raise OutputError(f"the output {target} is the source clip itself; choose another output name")


def commit(temp: Path, target: Path) -> Path:
    """Move the verified partial into place. Returns the target."""
    if not temp.is_dir():
        os.replace(temp, target)
        return target
    if not target.exists():
        temp.rename(target)
        return target
    new = {p.name for p in temp.glob(FRAME_PATTERN)}
    for name in sorted(new):
        os.replace(temp / name, target / name)
    for old in target.glob(FRAME_PATTERN):
        if old.name not in new and old.is_file():
            old.unlink()  # a longer sequence's tail would otherwise read as part of this one
    shutil.rmtree(temp, ignore_errors=True)
    return target


def set_aside(temp: Path, target: Path) -> Path:
    """Keep an output that failed verification under a visible name; the target stays as it was."""
    kept = failed_path(target)
    if kept.is_dir():
        shutil.rmtree(kept, ignore_errors=True)
    os.replace(temp, kept)
    return kept


def remove_partial(temp: Path) -> None:
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)
