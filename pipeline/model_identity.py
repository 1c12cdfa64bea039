"""The content identity of a model (base model, LoRA, ControlNet, IP-Adapter) for the frame cache key.

A name is not an identity: a folder whose weights were replaced, or a hub id whose `main` moved, must
not serve frames made with the old weights. A hub id is identified by the commit its cached `refs/main`
names; a local file by its size, mtime and a hash of samples of its content (start, middle, end); a
folder by that of every file in it. Sample hashes are cached by (path, size, mtime), so asking again is
a stat per file. No torch here: the GUI computes keys too.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

SAMPLE_BYTES = 65536  # read at the start, the middle and the end of each file
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(/.+)?$")
_cache: dict[tuple, str] = {}
_lock = threading.Lock()


def file_fingerprint(path: Path) -> str:
    """'size:mtime_ns:sha256-of-samples' for one file (its target, for a symlink)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        known = _cache.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for offset in sorted({0, max(0, st.st_size // 2 - SAMPLE_BYTES // 2), max(0, st.st_size - SAMPLE_BYTES)}):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE_BYTES))
    value = f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()[:24]}"
    with _lock:
        _cache[key] = value
    return value


def folder_fingerprint(folder: Path) -> str:
    """One hash over the relative path and fingerprint of every file under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}={file_fingerprint(path)}\n".encode())
    return digest.hexdigest()[:24]


def hub_commit(repo_id: str, revision: str = "main") -> str | None:
    """The commit the Hugging Face cache's refs/<revision> names for `repo_id`, or None (not cached)."""
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "refs" / revision
    try:
        return ref.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def model_identity(name: str, config: str | None = None) -> str:
    """What the frames made with model `name` depend on: a hub commit or a fingerprint of its files.

    A single file also covers its config folder (`name` without the extension, or `config/` beside
    it, or `config`). A name that is none of these (not found) identifies as itself: loading fails.
    """
    if not name:
        return ""
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            return f"folder:{folder_fingerprint(path)}"
        if path.is_file():
            parts = [f"file:{file_fingerprint(path)}"]
            for folder in ([Path(config)] if config else []) + [path.with_suffix(""), path.parent / "config"]:
                if folder.is_dir():
                    parts.append(f"config:{folder_fingerprint(folder)}")
                    break
            return ";".join(parts)
    except OSError:
        return f"unreadable:{name}"
    if _HUB_ID.match(name):
        repo_id = "/".join(name.split("/")[:2])
        return f"hub:{name}@{hub_commit(repo_id) or 'not-cached'}"
    return f"name:{name}"


def forget() -> None:
    """Drop the cached sample hashes (tests that rewrite a file within one mtime tick)."""
    with _lock:
        _cache.clear()


__all__ = ["file_fingerprint", "folder_fingerprint", "hub_commit", "model_identity", "forget"]
