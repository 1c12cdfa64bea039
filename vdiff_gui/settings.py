"""Window geometry, recent files, last parameters and device choice, the last export choices and folders,
and past exports, in an INI file beside vdiff's config.

The file lives in pipeline.config.config_dir() (VDIFF_CONFIG_DIR overrides it), so tests are isolated.
A stored value that cannot be used falls back to its default with a log line; it never stops the app.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from pipeline.config import config_dir
from pipeline.errors import VdiffError
from pipeline.request import StyleParams

log = logging.getLogger(__name__)

MAX_RECENT = 10
MAX_EXPORTS = 20
DEVICES = ("auto", "cpu", "cuda")
COMPARE_MODES = ("side-by-side", "wipe", "after")


def settings_path() -> Path:
    return config_dir() / "gui.ini"


class AppSettings:
    """Typed access to the GUI's QSettings (IniFormat)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else settings_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._qs = QSettings(str(self.path), QSettings.Format.IniFormat)

    def _bad(self, key: str, value, default):
        log.warning("settings: ignoring bad %s %r in %s; using %r", key, value, self.path, default)
        return default

    # window
    def geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, geometry: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)

    def splitter_state(self) -> QByteArray | None:
        value = self._qs.value("window/splitter")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_splitter_state(self, state: QByteArray) -> None:
        self._qs.setValue("window/splitter", state)

    def compare_mode(self) -> str:
        value = self._qs.value("view/compare_mode", COMPARE_MODES[0])
        return value if value in COMPARE_MODES else self._bad("view/compare_mode", value, COMPARE_MODES[0])

    def set_compare_mode(self, mode: str) -> None:
        self._qs.setValue("view/compare_mode", mode)

    # recent files
    def recent_files(self) -> list[str]:
        value = self._qs.value("files/recent", [])
        if isinstance(value, str):  # INI stores a one-element list as a plain string
            value = [value] if value else []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return self._bad("files/recent", value, [])
        return value[:MAX_RECENT]

    def add_recent_file(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        files = [path] + [p for p in self.recent_files() if p != path]
        self._qs.setValue("files/recent", files[:MAX_RECENT])

    def clear_recent_files(self) -> None:
        self._qs.setValue("files/recent", [])

    # parameters and device
    def params(self) -> StyleParams:
        """The last parameters, with the stored device choice; defaults when missing or unusable."""
        default = StyleParams()
        text = self._qs.value("render/params")
        params = default
        if text:
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                params = StyleParams.from_dict(data)
                if params.engine != "diffusion" or params.model:  # a diffusion model may be chosen later
                    params.validate()
            except (ValueError, TypeError, VdiffError) as exc:
                params = self._bad("render/params", f"{text} ({exc})", default)
        return params.replace(device=self.device())

    def set_params(self, params: StyleParams) -> None:
        self._qs.setValue("render/params", json.dumps(params.to_dict(), sort_keys=True))
        self.set_device(params.device)

    def device(self) -> str:
        value = self._qs.value("render/device", "auto")
        return value if value in DEVICES else self._bad("render/device", value, "auto")

    def set_device(self, device: str) -> None:
        self._qs.setValue("render/device", device)

    # the export dialog's last choices, the folders last used, past exports
    def export_settings(self) -> dict:
        """The last export's format, quality, size, audio and range choices ({} when none or unusable)."""
        value = self._load_json("export/settings", {})
        return value if isinstance(value, dict) else self._bad("export/settings", value, {})

    def set_export_settings(self, choices: dict) -> None:
        self._qs.setValue("export/settings", json.dumps(choices, sort_keys=True))

    def last_folder(self, kind: str) -> str:
        """The folder last used for `kind` ("video", "project", "export", "style_image"); "" when none or gone."""
        value = self._qs.value(f"folders/{kind}", "")
        return value if isinstance(value, str) and value and Path(value).is_dir() else ""

    def set_last_folder(self, kind: str, path: str | Path) -> None:
        path = Path(path)
        self._qs.setValue(f"folders/{kind}", str(path if path.is_dir() else path.parent))

    def export_history(self) -> list[dict]:
        """Past exports, newest first: output, when, frames, verification lines and ok."""
        value = self._load_json("export/history", [])
        if not isinstance(value, list) or not all(isinstance(v, dict) and "output" in v for v in value):
            return self._bad("export/history", value, [])
        return value[:MAX_EXPORTS]

    def add_export(self, entry: dict) -> None:
        self._qs.setValue("export/history", json.dumps([entry, *self.export_history()][:MAX_EXPORTS]))

    def _load_json(self, key: str, default):
        text = self._qs.value(key)
        if not text:
            return default
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            return self._bad(key, text, default)

    def first_launch_done(self) -> bool:
        return str(self._qs.value("app/first_launch_done", "false")).lower() == "true"

    def set_first_launch_done(self) -> None:
        self._qs.setValue("app/first_launch_done", True)

    def sync(self) -> None:
        self._qs.sync()

    def set_raw(self, key: str, value) -> None:
        """Store a value as it is (used to repair, and by tests to store a bad value)."""
        self._qs.setValue(key, value)
