"""Read images as people have them into one form: ``uint8`` RGB ``(H, W, 3)``.

Handles JPEG, PNG, TIFF (anything Pillow decodes); grayscale, palette, RGB, RGBA/LA (alpha is
composited on white, so a transparent background reads as white paper, not black); 16- and 32-bit
images (scaled to 8 bits by their value range: 16-bit by /257, float by clipping 0..1 or 0..255);
and the EXIF orientation tag (``PIL.ImageOps.exif_transpose``), so a phone photo comes out upright.

Pillow's decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP) is left as the
application set it; it is never lifted here. An image over twice that limit is refused with a
one-line error naming it; one between the limit and twice it (a 108 MP phone photo) is read with
a warning that names it, instead of Pillow's anonymous one.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale one high-bit-depth or float array to 0..255."""
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "f":
        a = a * 255.0 if np.nanmax(a) <= 1.0 else a
        return np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    if a.dtype in (np.uint16, np.int32, np.uint32) or a.dtype.kind in "iu":
        top = 65535 if a.max() > 255 or a.dtype == np.uint16 else 255
        return np.clip(np.round(a.astype(np.float64) * 255.0 / top), 0, 255).astype(np.uint8)
    return a.astype(np.uint8)


def read_image(path) -> np.ndarray:
    """Image file -> ``(H, W, 3)`` uint8 RGB, upright (EXIF applied), alpha composited on white.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for one Pillow cannot decode
    or refuses as a decompression bomb.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # re-issued below, naming the file
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: refused as a possible decompression bomb: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read {path} as an image (expected JPEG, PNG, TIFF or another format "
                         f"Pillow decodes): {e}") from e
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        warnings.warn(f"{path}: {im.width}x{im.height} image is over PIL.Image.MAX_IMAGE_PIXELS "
                      f"({limit:,} pixels), Pillow's decompression-bomb guard; read anyway", stacklevel=2)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        return np.round(rgba[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    if im.mode in ("RGB", "L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    a = _to_uint8(np.asarray(im))  # I;16, I, F and other high-bit-depth modes
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])
