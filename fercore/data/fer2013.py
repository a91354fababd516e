"""FER2013 (Goodfellow et al., ICML 2013 challenge): 35,887 grey 48x48 faces, 7 emotions.

Reads the copies users actually have, as they are:

- ``fer2013.csv`` (``emotion,pixels,Usage``) or ``fer2013.csv.gz``;
- Kaggle's ``icml_face_data.csv`` (``emotion, Usage, pixels``: leading spaces in the header);
- the image folders ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, where ``test/`` mixes
  PublicTest and PrivateTest and only the file-name prefix (``Training_``, ``PublicTest_``,
  ``PrivateTest_``) tells an image's usage.

Each may sit in ``root`` or in ``root/fer2013/`` (torchvision's convention). Every usage is
decoded once into one cache (fercore.data.cache) and each split is a slice of it, so the
second load of any split reads one ``.npz`` and touches no image file.
"""
from __future__ import annotations

import gzip
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..labels import EMOTIONS_7, FER2013_CODES, FER2013_FOLDERS
from . import DatasetFormatError, DatasetNotFoundError, register_dataset
from .base import FERDataset
from .cache import cached_arrays
from .images import decode_image, list_files, resize, subfolders, to_gray

# Our split names and the Usage values of the original CSV they select.
USAGES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
CSV_FILES = ("fer2013.csv", "fer2013.csv.gz", "icml_face_data.csv")
IMAGE_FOLDERS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SIZE = 48
KEYS = ("images", "targets", "usage", "files")  # what a cache file must hold
PROTOCOL = "train on Training, select on PublicTest (val), report PrivateTest (test) once"
KAGGLE_CHALLENGE = ("Kaggle, 'Challenges in Representation Learning: Facial Expression Recognition Challenge' "
                    "(https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge)")
SOURCE = (f"{KAGGLE_CHALLENGE}: fer2013.csv or icml_face_data.csv; "
          "or the image folders train/ and test/ (https://www.kaggle.com/datasets/msambare/fer2013)")


def locate_fer2013(root) -> Path | None:
    """The CSV file or image folder that ``load_fer2013`` would read, or None.

    Looks in ``root`` and then ``root/fer2013``. A CSV wins over image folders beside it: it
    holds the exact pixels and all three usages.
    """
    if root is None:
        return None
    root = Path(root).expanduser()
    if root.is_file() and root.name in CSV_FILES:
        return root
    for base in (root, root / "fer2013"):
        for name in CSV_FILES:
            if (base / name).is_file():
                return base / name
        if _has_class_folders(base):
            return base
    return None


def _has_class_folders(base: Path) -> bool:
    return any(folder.is_dir() and folder.name.lower() in FER2013_FOLDERS
               for top in IMAGE_FOLDERS if (base / top).is_dir() for folder in (base / top).iterdir())


@register_dataset("fer2013", splits=tuple(USAGES), locate=locate_fer2013, source=SOURCE)
def load_fer2013(root, split: str, *, cache_dir=None) -> FERDataset:
    """Load ``split`` of FER2013: ``train`` = Training, ``val`` = PublicTest, ``test`` = PrivateTest.

    ``meta`` holds per-image ``usage``; ``file``, the image's path relative to the folder that
    holds ``train/`` and ``test/``, or ``"<csv name>:row<k>"`` for a CSV, with ``k`` the 1-based
    data row (header not counted; blank lines skipped); and ``index``, the image's position in
    the whole source (the 0-based CSV data row, ``k - 1``, or its place in the sorted file list).
    ``cache_dir=False`` decodes without caching.
    """
    source = locate_fer2013(root)
    if source is None:
        raise DatasetNotFoundError(_not_found_message(root))
    arrays = _load_all(source, cache_dir)
    index = np.flatnonzero(arrays["usage"] == USAGES[split])
    if len(index) == 0:
        raise ValueError(_empty_split_message(split, source, arrays["usage"]))
    return FERDataset(
        torch.from_numpy(arrays["images"][index]).unsqueeze(1),
        torch.from_numpy(arrays["targets"][index]).long(),
        EMOTIONS_7,
        {"usage": arrays["usage"][index], "file": arrays["files"][index], "index": index},
        name="fer2013", split=split, protocol=PROTOCOL,
    )


def _load_all(source: Path, cache_dir) -> dict[str, np.ndarray]:
    """All usages of ``source`` decoded (or read from the cache): images, targets, usage, files.

    (``files``, not ``file``: np.savez takes ``file`` as its own argument.)
    """
    if source.is_file():
        return cached_arrays("fer2013-csv", [source], lambda: _read_csv(source), cache_dir, keys=KEYS)
    files = _list_images(source)
    return cached_arrays("fer2013-folder", files, lambda: _read_folder(source, files), cache_dir,
                         root=source, keys=KEYS)


# --- CSV files ---------------------------------------------------------------------------

def read_lines(path: Path) -> Iterator[str]:
    """The text lines of a CSV or ``.csv.gz``; a line that is not UTF-8, or a broken gzip file, is named.

    Bytes are decoded line by line (a leading BOM dropped), so the error can name the data row
    (blank lines not counted) and the line where the bad byte is.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            row = 0
            for number, raw in enumerate(f, start=1):
                row += number > 1 and bool(raw.strip())
                try:
                    yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    where = "line 1 (the header)" if number == 1 else f"row {row} (line {number})"
                    raise DatasetFormatError(f"{path}, {where}: byte 0x{raw[err.start]:02x} at column {err.start + 1} "
                                             "is not UTF-8 text; expected a UTF-8 (or ASCII) CSV") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DatasetFormatError(f"{path}: not a complete gzip file ({err}); expected a gzip-compressed CSV: "
                                 "download it again, or decompress it and give the .csv") from None


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Decode every row of a FER2013 CSV; a bad row stops with its file and row number.

    No FER2013 field holds a comma, so each line is split on commas directly: several times
    faster than the csv module on these 8 kB lines.
    """
    lines = read_lines(path)
    header = _fields(next(lines, ""))
    missing = [c for c in ("emotion", "pixels", "Usage") if c not in header]
    if missing:
        raise DatasetFormatError(f"{path}: header {header} lacks column(s) {missing}; "
                                 "expected emotion,pixels,Usage in any order")
    cols = [header.index(c) for c in ("emotion", "Usage", "pixels")]
    targets, usages, images = [], [], []
    for line_num, line in enumerate(lines, start=2):
        row = _fields(line)
        if row == [""]:
            continue
        where = f"{path}, row {len(targets) + 1} (line {line_num})"
        if len(row) != len(header):
            raise DatasetFormatError(f"{where}: {len(row)} fields, expected {len(header)} ({','.join(header)})")
        emotion, usage, pixels = (row[c] for c in cols)
        targets.append(_parse_label(emotion, where))
        usages.append(_parse_usage(usage, where))
        images.append(_parse_pixels(pixels, where))
    n = len(targets)
    return {
        "images": np.stack(images) if n else np.empty((0, SIZE, SIZE), np.uint8),
        "targets": np.array(targets, np.int64),
        "usage": np.array(usages, dtype=str),
        "files": np.array([f"{path.name}:row{k}" for k in range(1, n + 1)], dtype=str),
    }


def _fields(line: str) -> list[str]:
    """One CSV line's fields, without surrounding spaces (icml_face_data.csv) or quotes."""
    return [field.strip().strip('"') for field in line.split(",")]


def _parse_label(text: str, where: str) -> int:
    if not text.isdigit() or int(text) not in FER2013_CODES:
        raise DatasetFormatError(f"{where}: emotion {text!r} is not a label 0..6 ({', '.join(EMOTIONS_7)})")
    return FER2013_CODES[int(text)]


def _parse_usage(text: str, where: str) -> str:
    if text not in USAGES.values():
        raise DatasetFormatError(f"{where}: Usage {text!r} is not one of {', '.join(USAGES.values())}")
    return text


def _parse_pixels(text: str, where: str) -> np.ndarray:
    """2304 space-separated grey levels -> (48, 48) uint8, parsed by numpy in one call."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns, rather than raises, on a non-number
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            raise DatasetFormatError(f"{where}: pixels hold something other than numbers") from None
    if values.size != SIZE * SIZE:
        raise DatasetFormatError(f"{where}: {values.size} pixel values, expected {SIZE * SIZE} (48x48)")
    if values.min() < 0 or values.max() > 255:
        raise DatasetFormatError(f"{where}: pixel values must lie in 0..255, found {values.min()}..{values.max()}")
    return values.astype(np.uint8).reshape(SIZE, SIZE)


# --- image folders -----------------------------------------------------------------------

def _class_dirs(base: Path):
    """Yield each ``train/<class>`` and ``test/<class>`` folder; an unknown class name is an error."""
    for top in IMAGE_FOLDERS:
        if not (base / top).is_dir():
            continue
        for folder in subfolders(base / top):
            if folder.name.lower() not in FER2013_FOLDERS:
                raise DatasetFormatError(f"{folder}: unknown class folder; expected one of {', '.join(EMOTIONS_7)}")
            yield folder


def _list_images(base: Path) -> list[str]:
    """Every image's path relative to ``base`` (``train/happy/Training_1.jpg``), sorted."""
    files = []
    for folder in _class_dirs(base):
        files += [f"{folder.parent.name}/{folder.name}/{name}" for name in list_files(folder, IMAGE_SUFFIXES)]
    return sorted(files)


def _usage_from_name(path: Path) -> str:
    usage = path.name.split("_", 1)[0]
    if usage not in USAGES.values():
        raise DatasetFormatError(f"{path}: cannot tell its Usage; FER2013 image names start with "
                                 "Training_, PublicTest_ or PrivateTest_")
    return usage


def _read_folder(base: Path, files: list[str]) -> dict[str, np.ndarray]:
    """Decode every listed image; labels come from the class folder, usages from the file name.

    An image that is not 48x48 grayscale is converted, and all of them are listed in one warning.
    """
    images = np.empty((len(files), SIZE, SIZE), np.uint8)
    targets = np.empty(len(files), np.int64)
    usages, converted = [], []
    for i, rel in enumerate(tqdm(files, desc="decoding FER2013 images", unit="img", leave=False)):
        path = base / rel
        usages.append(_usage_from_name(path))
        targets[i] = FER2013_FOLDERS[path.parent.name.lower()]
        image = decode_image(path, "a 48x48 grayscale JPEG or PNG")
        height, width = image.shape[:2]
        mode = "grayscale" if image.ndim == 2 else {3: "RGB", 4: "RGBA"}[image.shape[2]]
        if (mode, height, width) != ("grayscale", SIZE, SIZE):
            converted.append(f"{rel} ({width}x{height} {mode})")
        images[i] = resize(to_gray(image))
    if converted:
        shown = ", ".join(converted[:10]) + (f" and {len(converted) - 10} more" if len(converted) > 10 else "")
        warnings.warn(f"FER2013: converted {len(converted)} image(s) under {base} to 48x48 grayscale: {shown}")
    return {"images": images, "targets": targets, "usage": np.array(usages, dtype=str),
            "files": np.array(files, dtype=str)}


# --- messages ----------------------------------------------------------------------------

def _not_found_message(root) -> str:
    expected = f"{', '.join(CSV_FILES)}, or the folders train/<class>/ and test/<class>/"
    how = (f"Get FER2013 from {KAGGLE_CHALLENGE}, or its image-folder copy "
           "(https://www.kaggle.com/datasets/msambare/fer2013), and place it there; "
           "`python -m fercore datasets --data-root <folder>` shows what fercore finds there.")
    if root is None:
        return f"FER2013 needs root=<folder holding {expected}>. {how}"
    root = Path(root).expanduser()
    state = "" if root.exists() else " (that folder does not exist)"
    return f"FER2013 not found: looked in {root} and {root / 'fer2013'}{state} for {expected}. {how}"


def _empty_split_message(split: str, source: Path, usage: np.ndarray) -> str:
    names, counts = np.unique(usage, return_counts=True)
    found = dict(zip(names.tolist(), counts.tolist()))
    listed = ", ".join(f"{u} ({found[u]})" for u in USAGES.values() if u in found) or "none"
    return f"split {split!r} ({USAGES[split]}) has no images in {source}; found usages: {listed}"
