"""A quick look at what the user typed as a diffusion model, for a hint under the field.

Only file-system and local-cache checks (no network, no loading): the engine on the worker loads the
model and raises ModelError with the real reason when it cannot.
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


def model_hint(text: str, allow_pickle: bool = False) -> tuple[bool, str]:
    """(looks usable, one line for the user) for a hub id, a diffusers folder or a checkpoint file."""
    text = text.strip()
    if not text:
        return False, "choose a hub id (org/name), a diffusers folder or a .safetensors file"
    path = Path(text).expanduser()
    looks_like_path = path.exists() or text.startswith(("/", ".", "~")) or "\\" in text
    if looks_like_path or path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            return False, "pickle checkpoints can run code when loaded: tick 'allow pickle' only if you trust the file"
        return _path_hint(path)
    if HUB_ID.match(text):
        return True, _hub_hint(text)
    return False, f"'{text}' is neither a hub id (org/name) nor an existing file or folder"


def _path_hint(path: Path) -> tuple[bool, str]:
    if not path.exists():
        return False, f"not found: {path}"
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return True, "diffusers folder"
        return False, "this folder has no model_index.json: choose a diffusers model folder"
    size = path.stat().st_size / 1024**3
    return True, f"single-file checkpoint ({size:.1f} GB)"


def _hub_hint(repo_id: str) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception:
        cached = None
    if isinstance(cached, str):
        return "hub id, in the local Hugging Face cache"
    return "hub id, not in the local cache: loading it needs the network"
