"""Frames through Ray's object store: losslessly compressed, because a 1080p RGB frame is 6.2 MB raw.

PNG (OpenCV, fastest level, with its row filters) was measured against zlib on the raw bytes and
against sending raw bytes (bench/cluster.py, docs/distributed.md); PNG at level 1 is the default: it
packs a stylized 1080p frame to roughly a third for a few milliseconds on the worker, and unpacking
costs the driver less than writing the frame to the cache.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

HEADER = struct.Struct("<4sII")  # codec tag, height, width
CODECS = ("png", "zlib", "raw")
DEFAULT_CODEC = "png"


def pack(image: np.ndarray, codec: str = DEFAULT_CODEC) -> bytes:
    """An HxWx3 uint8 RGB frame as bytes that unpack() turns back into the same pixels."""
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if codec == "png":
        ok, data = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # channel order kept as is
        if not ok:
            raise ValueError("cannot compress a frame as PNG")
        body = data.tobytes()
    elif codec == "zlib":
        body = zlib.compress(pixels.data, 1)
    elif codec == "raw":
        body = pixels.tobytes()
    else:
        raise ValueError(f"unknown frame codec {codec!r}; use one of {', '.join(CODECS)}")
    return HEADER.pack(codec.encode().ljust(4, b" "), height, width) + body


def unpack(data: bytes) -> np.ndarray:
    """The frame pack() packed (writable, HxWx3 uint8 RGB)."""
    tag, height, width = HEADER.unpack_from(data)
    body = memoryview(data)[HEADER.size:]
    codec = tag.decode().strip()
    if codec == "png":
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    elif codec == "zlib":
        image = np.frombuffer(zlib.decompress(body), np.uint8).reshape(height, width, 3).copy()
    elif codec == "raw":
        image = np.frombuffer(body, np.uint8).reshape(height, width, 3).copy()
    else:
        raise ValueError(f"unknown frame codec {codec!r}")
    if image is None or image.shape != (height, width, 3):
        raise ValueError("a frame from a cluster worker is damaged")
    return image
