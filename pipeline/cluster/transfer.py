"""Frames through Ray's object store, losslessly compressed: a 1080p RGB frame is 6.2 MB raw.

Measured on a real fast-style 1080p frame (bench/cluster.py, docs/distributed.md): PNG level 1 packs
it to 0.53 for 257 ms of CPU, zlib level 1 to 0.82 for 250 ms; LZ4 on the difference to the pixel on
the left ("lz4", the default) to 0.85 for 37 ms (a smooth frame, such as the source, to 0.21) and
unpacks in 25 ms: a worker packs while its GPU renders the next frame, and the driver unpacks in a
fraction of what writing the frame costs. "raw" suits fast links, "png" slow ones. Without the lz4
package, zlib level 1 is the default.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

try:
    import lz4.frame as lz4_frame
except ImportError:  # the cluster extra brings it; zlib does the same job more slowly
    lz4_frame = None

HEADER = struct.Struct("<4sII")  # codec tag, height, width
CODECS = ("lz4", "png", "zlib", "raw") if lz4_frame is not None else ("png", "zlib", "raw")
DEFAULT_CODEC = "lz4" if lz4_frame is not None else "zlib"


def pack(image: np.ndarray, codec: str = DEFAULT_CODEC) -> bytes:
    """An HxWx3 uint8 RGB frame as bytes that unpack() turns back into the same pixels."""
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if codec == "lz4":
        body = lz4_frame.compress(_left_difference(pixels).data, compression_level=0)
    elif codec == "png":
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
    if codec == "lz4":
        if lz4_frame is None:
            raise ValueError("a frame packed with lz4 arrived but the lz4 package is not installed here")
        difference = np.frombuffer(lz4_frame.decompress(body), np.uint8).reshape(height, width, 3)
        image = np.cumsum(difference, axis=1, dtype=np.uint8)  # wraps mod 256: undoes the difference exactly
    elif codec == "png":
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


def _left_difference(pixels: np.ndarray) -> np.ndarray:
    """Each pixel minus the one on its left, per channel, mod 256 (smooth images become mostly small)."""
    difference = pixels.copy()
    np.subtract(pixels[:, 1:], pixels[:, :-1], out=difference[:, 1:])
    return difference
