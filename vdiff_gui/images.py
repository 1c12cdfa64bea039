"""numpy RGB frames <-> QImage. Call on the GUI thread only (worker threads hand over arrays)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def array_to_qimage(image: np.ndarray) -> QImage:
    """An HxWx3 uint8 RGB array as a QImage that owns its pixels (the array may be freed after)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB frame, got shape {image.shape}")
    height, width = image.shape[:2]
    return QImage(image.data, width, height, image.strides[0], QImage.Format.Format_RGB888).copy()


def qimage_to_array(qimage: QImage) -> np.ndarray:
    """The pixels of a QImage as an HxWx3 uint8 RGB array (a copy)."""
    rgb = qimage.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    data = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=stride * height)
    return data.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()
