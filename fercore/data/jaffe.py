"""JAFFE (Lyons et al., FG 1998): 213 posed photos of 10 Japanese women, 7 expressions.

The original release (https://zenodo.org/records/3451524; agree to its terms there) is one
folder, ``jaffedbase/``, of 256x256 grayscale TIFFs named ``KA.AN1.39.tiff``: subject ``KA``,
expression code ``AN`` (NE HA AN DI FE SA SU, mapped by fercore.labels.JAFFE_CODES), the
repetition ``1`` and a running index ``39``. Some readers see the TIFFs as 3-channel; they
are converted to grey.

Face crop: ``CROP`` is a *fixed box*, not a face detector. JAFFE's faces are centred and of
similar size, so one box (as fractions of the image) holds brows to chin on almost every
image; it is then resized to 48x48 (cv2.INTER_AREA, which averages rather than skips
pixels). The faces pipeline (fercore.faces, a later issue) may replace it with detection.

Protocol: subject-independent folds (fercore.data.folds). With the default 10 folds over the
10 subjects, fold ``k`` tests on one woman, selects checkpoints on another, trains on 8.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..labels import EMOTIONS_7, JAFFE_CODES
from . import DatasetFormatError, DatasetNotFoundError, not_found_message, register_dataset
from .base import FERDataset
from .cache import cached_arrays
from .folds import SPLITS, fold_mask, fold_protocol
from .images import SIZE, crop_resize, list_files, read_gray

# (left, top, right, bottom) as fractions of the image: 256x256 -> x 59..197, y 84..223, a
# 138-pixel square from just above the brows to below the chin (hair and ears mostly cut).
CROP = (0.23, 0.33, 0.77, 0.87)
NAME = re.compile(r"^(?P<subject>[A-Z]{2})\.(?P<code>[A-Z]{2})(?P<rep>\d)\.(?P<index>\d+)\.(?i:tiff?)$")
PATTERN = "<subject>.<code><repetition>.<index>.tiff, e.g. KA.AN1.39.tiff, with code one of " + " ".join(JAFFE_CODES)
SOURCE = "https://zenodo.org/records/3451524 (JAFFE, Lyons et al. 1998; agree to its terms to download)"


def _candidates(root: Path) -> list[Path]:
    return [root / "jaffe", root / "JAFFE", root / "jaffedbase", root,
            root / "jaffe" / "jaffedbase", root / "JAFFE" / "jaffedbase"]


KEYS = ("images", "targets", "subject", "files", "index")  # what a cache file must hold


def _tiffs(folder: Path) -> list[str]:
    """The names of the TIFF files in ``folder`` (hidden files such as ``._KA.AN1.39.tiff`` left out)."""
    return list_files(folder, (".tif", ".tiff"))


def locate_jaffe(root) -> Path | None:
    """The first folder among ``_candidates(root)`` holding a file named like ``KA.AN1.39.tiff``."""
    if root is None:
        return None
    for folder in _candidates(Path(root).expanduser()):
        if folder.is_dir() and any(NAME.match(name) for name in _tiffs(folder)):
            return folder
    return None


@register_dataset("jaffe", splits=SPLITS, locate=locate_jaffe, source=SOURCE)
def load_jaffe(root, split: str = "train", *, fold: int = 0, folds: int = 10, seed: int = 0,
               cache_dir=None) -> FERDataset:
    """Load ``split`` (train, val, test or all) of subject-independent fold ``fold`` of ``folds``.

    ``meta``: ``subject`` (e.g. ``"KA"``), ``file`` (the file name) and ``index`` (the number
    in the file name). ``cache_dir=False`` decodes without caching.
    """
    folder = locate_jaffe(root)
    if folder is None:
        raise DatasetNotFoundError(_not_found_message(root))
    names = _tiffs(folder)
    arrays = cached_arrays("jaffe", names, lambda: _read_all([folder / name for name in names]), cache_dir,
                           extra={"crop": CROP, "size": SIZE}, root=folder, keys=KEYS)
    mask = fold_mask(arrays["subject"], split, fold, folds, seed)
    n_subjects = len(set(arrays["subject"].tolist()))
    return FERDataset(
        torch.from_numpy(arrays["images"][mask]).unsqueeze(1),
        torch.from_numpy(arrays["targets"][mask]).long(),
        EMOTIONS_7,
        {"subject": arrays["subject"][mask], "file": arrays["files"][mask], "index": arrays["index"][mask]},
        name="jaffe", split=split, protocol=fold_protocol(folds, fold, n_subjects, split),
    )


def _read_all(files: list[Path]) -> dict[str, np.ndarray]:
    """Parse every file name first (cheap, so a misnamed file is reported at once), then decode."""
    parsed = []
    for path in files:
        match = NAME.match(path.name)
        if match is None or match["code"] not in JAFFE_CODES:
            raise DatasetFormatError(f"{path}: not a JAFFE file name; expected {PATTERN}")
        parsed.append(match)
    return {
        "images": np.stack([crop_resize(read_gray(p, "a 256x256 grayscale TIFF"), CROP) for p in files])
        if files else np.empty((0, SIZE, SIZE), np.uint8),
        "targets": np.array([JAFFE_CODES[m["code"]] for m in parsed], np.int64),
        "subject": np.array([m["subject"] for m in parsed], dtype=str),
        "files": np.array([p.name for p in files], dtype=str),
        "index": np.array([int(m["index"]) for m in parsed], np.int64),
    }


def _not_found_message(root) -> str:
    return not_found_message("JAFFE", root, _candidates, f"the 213 JAFFE TIFFs named like KA.AN1.39.tiff ({PATTERN})",
                             f"Get JAFFE from {SOURCE} and unpack jaffedbase/ there")
