"""The on-disk frame cache: what makes renders resumable, re-renders instant and exports cheap.

One folder per render key (the source file's identity + the parameters that change pixels); one file
per frame index inside it: a magic, a CRC-32 of the payload, the frame size, then the raw RGB bytes
(raw, because PNG compression cost more time per frame than the engine's own overhead budget; the
size bound keeps the disk use in check). A frame whose checksum fails is deleted and rendered again. The cache is bounded: least recently used keys go first,
never one that is in use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import cache_dir, load_config
from pipeline.profile import stage
from pipeline.video.probe import VideoInfo

MAGIC = b"VDF2"
HEADER = struct.Struct("<4sIII")  # magic, crc32 of the pixels, height, width


def source_identity(path: Path) -> dict:
    """Identifies a source file's content cheaply: size, mtime and a hash of its first and last 64 KiB."""
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(65536))
        if st.st_size > 65536:
            handle.seek(max(65536, st.st_size - 65536))
            digest.update(handle.read(65536))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": digest.hexdigest()[:32]}


def render_key(info: VideoInfo, description: dict) -> str:
    """The cache key: the same source and the same pixel-changing parameters give the same key."""
    blob = json.dumps({"source": source_identity(info.path), "params": description}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CacheEntry:
    """The frames of one render key."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key = folder.name

    def _frame_path(self, index: int) -> Path:
        return self.folder / f"{index:07d}.vdf"

    def has(self, index: int) -> bool:
        return self._frame_path(index).exists()

    def indices(self) -> set[int]:
        """Frame indices stored (not checked; load() checks)."""
        found = set()
        for name in os.listdir(self.folder) if self.folder.exists() else ():
            if name.endswith(".vdf") and name[:-4].isdigit():
                found.add(int(name[:-4]))
        return found

    @stage("cache")
    def load(self, index: int) -> np.ndarray | None:
        """The stored frame, or None when missing or damaged (a damaged one is deleted)."""
        path = self._frame_path(index)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        image = _decode(data)
        if image is None:
            path.unlink(missing_ok=True)
        return image

    @stage("cache")
    def store(self, index: int, image: np.ndarray) -> None:
        """Write a frame atomically (temp + rename): a kill never leaves a half-written frame."""
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        height, width = pixels.shape[:2]
        path = self._frame_path(index)
        temp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(temp, "wb") as handle:
                handle.write(HEADER.pack(MAGIC, zlib.crc32(pixels), height, width))
                handle.write(pixels.data)
            os.replace(temp, path)
        except OSError as exc:
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass
            if exc.filename is None:  # a failed write() names no file: name the frame for the message
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise

    def write_meta(self, meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {**self.read_meta(), **meta, "last_used": time.time()}
        temp = self.folder / "meta.json.tmp"
        temp.write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
        os.replace(temp, self.folder / "meta.json")

    def read_meta(self) -> dict:
        try:
            return json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*") if p.is_file())


def _decode(data: bytes) -> np.ndarray | None:
    if len(data) < HEADER.size:
        return None
    magic, crc, height, width = HEADER.unpack_from(data)
    payload = memoryview(data)[HEADER.size :]
    if magic != MAGIC or len(payload) != height * width * 3 or zlib.crc32(payload) != crc:
        return None
    return np.frombuffer(payload, np.uint8).reshape(height, width, 3).copy()  # writable, like decoded frames


@dataclass
class CacheUsage:
    key: str
    frames: int
    bytes: int
    last_used: float
    source: str
    description: str


class FrameCache:
    """All cache entries under one root (default: the user cache folder)."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root else cache_dir()
        if max_bytes is None:
            max_bytes = int(load_config()["cache_max_gb"] * 1e9)
        self.max_bytes = max_bytes

    def entry(self, key: str) -> CacheEntry:
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        return CacheEntry(folder)

    def find(self, key: str) -> CacheEntry | None:
        folder = self.root / key
        return CacheEntry(folder) if folder.is_dir() else None

    def usage(self) -> list[CacheUsage]:
        rows = []
        if not self.root.exists():
            return rows
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            entry = CacheEntry(folder)
            meta = entry.read_meta()
            rows.append(
                CacheUsage(
                    key=entry.key,
                    frames=len(entry.indices()),
                    bytes=entry.size_bytes(),
                    last_used=float(meta.get("last_used", folder.stat().st_mtime)),
                    source=str(meta.get("source", "?")),
                    description=str(meta.get("params", "")),
                )
            )
        return rows

    def total_bytes(self) -> int:
        return sum(row.bytes for row in self.usage())

    def evict(self, keep: set[str] = frozenset(), room: int = 0) -> int:
        """Remove least recently used entries until the cache fits its bound with `room` bytes to spare.
        Returns bytes freed."""
        rows = sorted(self.usage(), key=lambda r: r.last_used)
        total = sum(r.bytes for r in rows)
        freed = 0
        for row in rows:
            if total - freed + room <= self.max_bytes:
                break
            if row.key in keep:
                continue
            shutil.rmtree(self.root / row.key, ignore_errors=True)
            freed += row.bytes
        return freed

    def clear(self) -> int:
        """Remove every entry. Returns bytes freed."""
        total = self.total_bytes()
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        return total
