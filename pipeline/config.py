"""User-level settings shared by the CLI and the GUI, in a small JSON file. Bad values fall back to defaults."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

DEFAULTS = {"cache_max_gb": 10.0}


def config_dir() -> Path:
    return Path(os.environ.get("VDIFF_CONFIG_DIR") or platformdirs.user_config_dir("vdiff", appauthor=False))


def cache_dir() -> Path:
    """The frame cache folder; platformdirs honours XDG_CACHE_HOME on Linux."""
    return Path(platformdirs.user_cache_dir("vdiff", appauthor=False)) / "frames"


def load_config() -> dict:
    path = config_dir() / "config.json"
    config = dict(DEFAULTS)
    if not path.exists():
        return config
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s); using defaults", path, exc)
        return config
    value = stored.get("cache_max_gb") if isinstance(stored, dict) else None
    if isinstance(value, (int, float)) and value > 0:
        config["cache_max_gb"] = float(value)
    elif value is not None:
        log.warning("ignoring bad cache_max_gb %r in %s; using %s", value, path, DEFAULTS["cache_max_gb"])
    return config


def save_config(config: dict) -> None:
    path = config_dir() / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(config, indent=2), encoding="utf-8")
    os.replace(temp, path)
