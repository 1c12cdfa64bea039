"""`.vdiff` project files: JSON with a `version`, the source clip, the parameters and the range.

Reading checks everything before anything is used, so a malformed file or one from a newer vdiff
gives one clear sentence and changes nothing. Writing is atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInputError, VdiffError
from pipeline.request import StyleParams

PROJECT_VERSION = 2  # 2 added ControlNets, LoRAs and the IP-Adapter to the params; version 1 files still open
SUFFIX = ".vdiff"


class ProjectFileError(BadInputError):
    """A project file cannot be read or written."""


@dataclass(frozen=True)
class Project:
    source: Path
    params: StyleParams
    in_point: int = 0
    out_point: int | None = None  # inclusive; None: the clip's last frame
    frame: int = 0

    def to_json(self) -> dict:
        return {
            "version": PROJECT_VERSION,
            "app": "vdiff",
            "source": str(self.source),
            "params": self.params.to_dict(),
            "in": self.in_point,
            "out": self.out_point,
            "frame": self.frame,
        }


def save_project(path: str | Path, project: Project) -> Path:
    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    temp = path.with_name(f".{path.name}.tmp")
    try:
        temp.write_text(json.dumps(project.to_json(), indent=2), encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ProjectFileError(f"cannot save the project to {path}: {exc.strerror or exc}") from None
    return path


def load_project(path: str | Path) -> Project:
    """Read and check a project file; raises ProjectFileError with what is wrong."""
    path = Path(path)
    name = path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProjectFileError(f"cannot open the project {name}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProjectFileError(f"{name} is not a vdiff project (not valid JSON: {exc})") from None
    if not isinstance(data, dict) or "version" not in data:
        raise ProjectFileError(f"{name} is not a vdiff project (no version field)")
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProjectFileError(f"{name} has a bad version field ({version!r})")
    if version > PROJECT_VERSION:
        raise ProjectFileError(
            f"{name} was saved by a newer vdiff (project version {version}); update vdiff to open it"
        )
    if version < 1:
        raise ProjectFileError(f"{name} has an unknown project version ({version})")
    source = data.get("source")
    if not isinstance(source, str) or not source:
        raise ProjectFileError(f"{name} names no source video")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ProjectFileError(f"{name} has bad parameters (not an object)")
    try:
        style = StyleParams.from_dict(params)
        if style.engine != "diffusion" or style.model:
            style.validate()
    except (VdiffError, TypeError) as exc:
        raise ProjectFileError(f"{name} has bad parameters: {exc}") from None
    numbers = {}
    for key in ("in", "frame"):
        value = data.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProjectFileError(f"{name} has a bad '{key}' frame ({value!r})")
        numbers[key] = value
    out = data.get("out")
    if out is not None and (not isinstance(out, int) or isinstance(out, bool) or out < 0):
        raise ProjectFileError(f"{name} has a bad 'out' frame ({out!r})")
    source_path = Path(source)
    if not source_path.is_absolute():  # relative to the project file, so a folder can move as a whole
        source_path = path.parent / source_path
    return Project(source_path, style, numbers["in"], out, numbers["frame"])
