"""Listing, decoding and cropping shared by the image-folder loaders (FER2013 folders, CK+, JAFFE, FERG)."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from . import DatasetFormatError

SIZE = 48
# Formats whose header Pillow reads to learn an image's size before cv2 decodes it.
_HEADER_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")


def subfolders(folder: Path) -> list[Path]:
    """The folders in ``folder``, sorted, hidden ones (``.git``, ``__MACOSX``'s ``._x``) left out."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Names of the files in ``folder`` ending in one of ``suffixes`` (any case), sorted.

    Hidden files (macOS's ``._KA.AN1.39.tiff``) are left out. One ``os.scandir`` per folder:
    FER2013 and FERG have tens of thousands of files, listed on every load.
    """
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if e.name.lower().endswith(suffixes) and not e.name.startswith(".") and e.is_file())


def _check_size(path: Path, data: np.ndarray, expected: str) -> None:
    """Refuse a decompression bomb before cv2 allocates it: Pillow reads the size from the header only.

    The limit is Pillow's ``Image.MAX_IMAGE_PIXELS``, read at each call, never changed here.
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a probe: a bomb is reported below, naming the file
            with Image.open(io.BytesIO(data), formats=_HEADER_FORMATS) as im:
                width, height = im.size
    except Image.DecompressionBombError as err:
        raise DatasetFormatError(f"{path}: {err} (expected {expected})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # not for Pillow to judge: cv2 decodes it or names it below
    if limit and width * height > limit:
        raise DatasetFormatError(f"{path}: {width}x{height} image ({width * height:,} pixels) is over the "
                                 f"decompression-bomb limit of {limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); "
                                 f"expected {expected}")


def decode_image(path: Path, expected: str) -> np.ndarray:
    """``path`` decoded as stored: 2-D grey, or BGR / BGRA, uint8 (16-bit scaled); a bad file is named.

    ``expected`` says what the dataset's files should be, for the message.
    """
    data = np.fromfile(path, np.uint8)  # np.fromfile + imdecode: non-ASCII paths work on Windows too
    if data.size:
        _check_size(path, data, expected)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # e.g. over OpenCV's own size limit
        image = None
    if image is None:
        raise DatasetFormatError(f"{path}: cannot decode this image file (expected {expected})")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 or channels not in (1, 3, 4):
        raise DatasetFormatError(f"{path}: {channels}-channel {image.dtype} image; expected {expected}")
    return image.reshape(image.shape[:2]) if channels == 1 else image


def to_gray(image: np.ndarray, on_white: bool = False) -> np.ndarray:
    """A ``decode_image`` result as 2-D grey uint8.

    ``on_white`` composites transparent pixels onto white (FERG's cartoons) instead of dropping alpha.
    """
    if image.ndim == 2:
        return image
    grey = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    if image.shape[2] == 4 and on_white:
        alpha = image[..., 3].astype(np.float32) / 255
        grey = np.rint(grey * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return grey


def read_gray(path: Path, expected: str, on_white: bool = False) -> np.ndarray:
    """Decode ``path`` to a 2-D uint8 grey image (from grey, BGR or BGRA); a bad file is named."""
    return to_gray(decode_image(path, expected), on_white)


def resize(image: np.ndarray) -> np.ndarray:
    """``image`` at 48x48 (cv2.INTER_AREA averages rather than skips pixels); unchanged if it already is."""
    if image.shape == (SIZE, SIZE):
        return image
    return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def crop_resize(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Cut the fixed ``box`` (left, top, right, bottom fractions) out of ``image``, resize to 48x48."""
    height, width = image.shape
    left, top, right, bottom = box
    face = image[round(top * height):round(bottom * height), round(left * width):round(right * width)]
    return cv2.resize(face, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
