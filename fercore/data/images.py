"""Decoding and cropping shared by the loaders of photographed datasets (JAFFE, CK+)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import DatasetFormatError

SIZE = 48


def read_gray(path: Path, expected: str, on_white: bool = False) -> np.ndarray:
    """Decode ``path`` to a 2-D uint8 grey image (from grey, BGR or BGRA); a bad file is named.

    ``on_white`` composites transparent pixels onto white (FERG's cartoons) instead of dropping alpha.
    """
    data = np.fromfile(path, np.uint8)  # np.fromfile + imdecode: non-ASCII paths work on Windows too
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DatasetFormatError(f"{path}: cannot decode this image file (expected {expected})")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 or channels not in (1, 3, 4):
        raise DatasetFormatError(f"{path}: {channels}-channel {image.dtype} image; expected {expected}")
    grey = image if channels == 1 else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    if channels == 4 and on_white:
        alpha = image[..., 3].astype(np.float32) / 255
        grey = np.rint(grey * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return grey.reshape(grey.shape[:2])


def crop_resize(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Cut the fixed ``box`` (left, top, right, bottom fractions) out of ``image``, resize to 48x48."""
    height, width = image.shape
    left, top, right, bottom = box
    face = image[round(top * height):round(bottom * height), round(left * width):round(right * width)]
    return cv2.resize(face, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
