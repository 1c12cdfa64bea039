"""A quick look at what the user typed as a diffusion model, for a hint under the field.

Only file-system and local-cache checks (no network, no loading): the engine on the worker loads the
model and raises ModelError with the real reason when it cannot. A hub id that is not cached can be
downloaded (pipeline.hub) unless huggingface_hub is switched off.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


class ModelCheck(NamedTuple):
    ok: bool  # looks usable as it is
    hint: str  # one line for the user
    downloadable: bool = False  # a hub id that is not cached, while downloads are possible


def check_model(text: str, allow_pickle: bool = False) -> ModelCheck:
    """What the field holds: a hub id (cached or not), a diffusers folder or a checkpoint file."""
    text = text.strip()
    if not text:
        return ModelCheck(False, "choose a hub id (org/name), a diffusers folder or a .safetensors file")
    path = Path(text).expanduser()
    looks_like_path = path.exists() or text.startswith(("/", ".", "~")) or "\\" in text
    if looks_like_path or path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            return ModelCheck(
                False, "pickle checkpoints can run code when loaded: tick 'allow pickle' only if you trust the file"
            )
        return ModelCheck(*_path_hint(path))
    if HUB_ID.match(text):
        return _hub_check(text)
    return ModelCheck(False, f"'{text}' is neither a hub id (org/name) nor an existing file or folder")


def _path_hint(path: Path) -> tuple[bool, str]:
    if not path.exists():
        return False, f"not found: {path}"
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return True, "diffusers folder"
        return False, "this folder has no model_index.json: choose a diffusers model folder"
    size = path.stat().st_size / 1024**3
    return True, f"single-file checkpoint ({size:.1f} GB)"


def _hub_check(repo_id: str) -> ModelCheck:
    from pipeline.hub import is_cached, offline

    if is_cached(repo_id):
        return ModelCheck(True, "hub id, in the local Hugging Face cache")
    if offline():
        return ModelCheck(
            False, "hub id, not in the local cache, and downloads are off (HF_HUB_OFFLINE): choose a local "
            "folder or file"
        )
    return ModelCheck(False, "hub id, not in the local cache: download it to use it", downloadable=True)
