"""Parameter presets: built-in ones shipped in resources/presets, the user's own in the config folder.

A preset is JSON: {"version": 2, "name": ..., "params": {StyleParams fields}}. The device is the
machine's choice, not the look's, so presets never store or change it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import config_dir
from pipeline.errors import BadInputError, VdiffError
from pipeline.request import StyleParams

log = logging.getLogger(__name__)

VERSION = 2  # the preset format this vdiff writes; 2 added ControlNets, LoRAs and the IP-Adapter (1 still reads)

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUILTIN_DIR = RESOURCES / "presets"


@dataclass(frozen=True)
class Preset:
    name: str
    params: dict
    builtin: bool
    path: Path


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name.strip()).strip("-.").lower() or "preset"


class PresetStore:
    def __init__(self, user_dir: Path | None = None, builtin_dir: Path | None = None):
        self.user_dir = Path(user_dir) if user_dir else config_dir() / "presets"
        self.builtin_dir = Path(builtin_dir) if builtin_dir else BUILTIN_DIR

    def presets(self) -> list[Preset]:
        """Built-in presets first, then the user's; a user preset hides a built-in one of the same name."""
        found: dict[str, Preset] = {}
        for folder, builtin in ((self.builtin_dir, True), (self.user_dir, False)):
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
                preset, _ = _read(path, builtin)
                if preset is not None:
                    found[preset.name] = preset
        return sorted(found.values(), key=lambda p: (not p.builtin, p.name.lower()))

    def problems(self) -> list[str]:
        """One sentence for each preset file that cannot be used (it is left as it is)."""
        found = []
        for folder, builtin in ((self.builtin_dir, True), (self.user_dir, False)):
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
                problem = _read(path, builtin)[1]
                if problem is not None:
                    found.append(problem)
        return found

    def find(self, name: str) -> Preset | None:
        return next((p for p in self.presets() if p.name == name), None)

    def apply(self, name: str, current: StyleParams) -> StyleParams:
        """The preset's parameters on top of the defaults, keeping the current device."""
        preset = self.find(name)
        if preset is None:
            raise BadInputError(f"there is no preset named '{name}'")
        return StyleParams.from_dict({**preset.params, "device": current.device})

    def save(self, name: str, params: StyleParams) -> Preset:
        name = name.strip()
        if not name:
            raise BadInputError("give the preset a name")
        data = {k: v for k, v in params.to_dict().items() if k != "device"}
        path = self.user_dir / f"{_slug(name)}.json"
        if path.exists():
            existing, problem = _read(path, False)
            if existing is None or existing.name != name:  # never overwrite a file we cannot read, or another preset
                raise BadInputError(f"{path} already exists and is not the preset '{name}'; choose another name")
        self.user_dir.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps({"version": VERSION, "name": name, "params": data}, indent=2), encoding="utf-8")
        os.replace(temp, path)
        return Preset(name, data, False, path)

    def delete(self, name: str) -> None:
        preset = self.find(name)
        if preset is None:
            raise BadInputError(f"there is no preset named '{name}'")
        if preset.builtin:
            raise BadInputError(f"'{name}' ships with vdiff and cannot be deleted")
        preset.path.unlink(missing_ok=True)


def _read(path: Path, builtin: bool) -> tuple[Preset | None, str | None]:
    """The preset in `path`, or None and one sentence saying why it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
            raise ValueError("it has no params object")
        version = data.get("version")
        if not isinstance(version, int):
            raise ValueError("it has no version field")
        if version > VERSION:
            raise ValueError(f"it was made by a newer vdiff (preset version {version}; this one reads {VERSION})")
        params = StyleParams.from_dict(data["params"])
        if params.engine != "diffusion" or params.model:
            params.validate()
        name = str(data.get("name") or path.stem)
    except (OSError, ValueError, VdiffError) as exc:
        reason = "it is not valid JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
        log.warning("ignoring preset %s: %s", path, reason)
        return None, f"the preset file {path.name} was skipped: {reason}"
    return Preset(name, data["params"], builtin, path), None
