"""One harness for every registered dataset, after torchvision's ``DatasetTestCase``.

Each dataset (and each layout a loader reads) gives a ``Case``: a writer that puts a few fake
items in the real format into a folder, the length of each split, and a way to spoil one
source file. Every case then gets the same tests: not found, a bad file named in one line,
an unknown split that lists the valid ones, split lengths and types, transform and
target_transform, a second load that decodes nothing, a broken cache file rebuilt, and a
decompression bomb refused by name. The generated datasets (``synthetic``,
``simulated_ferplus``) have no files: they get the split, length and transform tests only
(``simulated_ferplus`` the split test alone, since it draws 3,000 faces on first use; its
files are read by the FERPlus loader, tested here as ``ferplus``).

Format details (crop boxes, label rules, row numbers) stay in the per-dataset test files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from test_fer2013 import make_samples, write_csv, write_folders
from test_ferplus import write_labels

from fercore.data import DATASETS, DatasetFormatError, DatasetNotFoundError, find_datasets, load_dataset


def _png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _noise(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- writers: each writes a few items in the real layout under ``root`` and returns the root to load ---

def write_fer2013_csv(root: Path) -> Path:
    write_csv(root / "fer2013.csv", make_samples())
    return root


def write_fer2013_gz(root: Path) -> Path:
    write_csv(root / "fer2013" / "fer2013.csv.gz", make_samples())
    return root


def write_fer2013_folders(root: Path) -> Path:
    write_folders(root, make_samples())
    return root


def write_ferplus(root: Path) -> Path:
    write_csv(root / "fer2013.csv", make_samples())
    write_labels(root / "fer2013new.csv", make_samples())
    return root


def write_ckplus_original(root: Path) -> Path:
    """Three subjects, one labelled 4-frame sequence each: 3 peak frames + 1 neutral onset per subject."""
    for k, subject in enumerate(("S005", "S010", "S011")):
        for frame in range(1, 5):
            _png(root / "CK+" / "cohn-kanade-images" / subject / "001" / f"{subject}_001_{frame:08d}.png",
                 _noise((490, 640), 10 * k + frame))
        emotion = root / "CK+" / "Emotion" / subject / "001" / f"{subject}_001_00000004_emotion.txt"
        emotion.parent.mkdir(parents=True, exist_ok=True)
        emotion.write_text(f"   {float(k + 1):.7e}\n")
    return root


def write_ck48(root: Path, folder: str = "CK+48") -> Path:
    for k, subject in enumerate(("S005", "S010", "S011")):
        for emotion in ("anger", "happy"):
            _png(root / folder / emotion / f"{subject}_001_0000001{k}.png", _noise((48, 48), k))
    return root


def write_jaffe(root: Path) -> Path:
    for k, subject in enumerate(("KA", "KL", "KM")):
        for j, code in enumerate(("AN", "HA")):
            path = root / "jaffe" / f"{subject}.{code}1.{2 * k + j}.tiff"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_noise((256, 256), 2 * k + j)).save(path)
    return root


def write_ferg(root: Path) -> Path:
    for k, character in enumerate(("aia", "bonnie", "jules")):
        for emotion in ("joy", "anger"):
            rgba = np.dstack([_noise((256, 256, 3), k), np.full((256, 256), 255, np.uint8)])
            path = root / "FERG_DB_256" / character / f"{character}_{emotion}" / f"{character}_{emotion}_1.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba).save(path)
    return root


# --- ways to spoil one source file; each returns the file it spoiled --------------------------------

def not_an_image(pattern: str) -> Callable[[Path], Path]:
    def spoil(root: Path) -> Path:
        path = sorted(root.rglob(pattern))[1]
        path.write_bytes(b"this is not an image")
        return path
    return spoil


def non_utf8_row(name: str) -> Callable[[Path], Path]:
    def spoil(root: Path) -> Path:
        path = next(root.rglob(name))
        lines = path.read_bytes().split(b"\n")
        lines[2] = lines[2].replace(b",", b"\xe9,", 1)  # Latin-1 e-acute in data row 2
        path.write_bytes(b"\n".join(lines))
        return path
    return spoil


def truncated_gzip(root: Path) -> Path:
    path = next(root.rglob("*.csv.gz"))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@dataclass
class Case:
    id: str
    name: str                                 # the registered dataset
    lengths: dict[str, int]                   # split -> images (splits not listed are not checked)
    write: Callable[[Path], Path] | None = None  # None: a generated dataset, no files
    spoil: Callable[[Path], Path] | None = None
    kwargs: dict = field(default_factory=dict)
    images_from_files: bool = False           # decoded with fercore.data.images (the bomb test applies)
    target_dtype: torch.dtype = torch.long


FOLDS = {"folds": 3}
CASES = [
    Case("fer2013-csv", "fer2013", {"train": 5, "val": 3, "test": 2}, write_fer2013_csv, non_utf8_row("fer2013.csv")),
    Case("fer2013-csv.gz", "fer2013", {"train": 5, "val": 3, "test": 2}, write_fer2013_gz, truncated_gzip),
    Case("fer2013-folders", "fer2013", {"train": 5, "val": 3, "test": 2}, write_fer2013_folders,
         not_an_image("*.png"), images_from_files=True),
    Case("ferplus", "ferplus", {"train": 2, "val": 2}, write_ferplus, non_utf8_row("fer2013new.csv")),
    Case("ckplus-original", "ckplus", {"train": 4, "val": 4, "test": 4, "all": 12}, write_ckplus_original,
         not_an_image("*.png"), FOLDS, images_from_files=True),
    Case("ckplus-ck48", "ckplus", {"train": 2, "val": 2, "test": 2, "all": 6}, write_ck48,
         not_an_image("*.png"), FOLDS, images_from_files=True),
    Case("jaffe", "jaffe", {"train": 2, "val": 2, "test": 2, "all": 6}, write_jaffe, not_an_image("*.tiff"),
         FOLDS, images_from_files=True),
    Case("ferg", "ferg", {"train": 4, "val": 1, "test": 1, "all": 6}, write_ferg, not_an_image("*.png"),
         images_from_files=True),
    Case("synthetic", "synthetic", {"train": 8, "val": 8, "test": 8}, kwargs={"n": 8}),
]
FILE_CASES = [c for c in CASES if c.write is not None]
SPLIT_CASES = CASES + [Case("simulated_ferplus", "simulated_ferplus", {})]


def _params(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def _load(case: Case, root, split: str, cache, **kw):
    return load_dataset(case.name, root, split, cache_dir=cache, **case.kwargs, **kw)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def _root(case: Case, tmp_path: Path) -> Path | None:
    return case.write(tmp_path / "data") if case.write else None


def test_every_registered_dataset_has_a_case():
    assert {c.name for c in SPLIT_CASES} == set(DATASETS)


@_params(SPLIT_CASES)
def test_unknown_split_lists_the_valid_splits_before_reading_anything(case, tmp_path):
    valid = DATASETS[case.name].splits
    with pytest.raises(ValueError) as err:  # the folder does not exist: the split is checked first
        load_dataset(case.name, tmp_path / "nowhere", "validation", **case.kwargs)
    assert str(err.value) == f"unknown split 'validation' for {case.name}; valid splits: {', '.join(valid)}"
    assert not isinstance(err.value, DatasetNotFoundError)


def test_an_unknown_loader_argument_is_named_with_the_accepted_ones(tmp_path):
    # `evaluate --data-arg classes=8` on a synthetic-trained checkpoint reached the loader as a TypeError.
    with pytest.raises(ValueError, match=r"dataset synthetic has no loader argument 'classes'; it accepts: n, size, "):
        load_dataset("synthetic", None, "val", classes=8)
    with pytest.raises(ValueError, match=r"dataset jaffe has no loader argument 'flod'; it accepts: fold, folds"):
        load_dataset("jaffe", tmp_path / "nowhere", "train", flod=3)


@_params(CASES)
def test_split_lengths_and_types(case, tmp_path, cache):
    root = _root(case, tmp_path)
    for split, n in case.lengths.items():
        ds = _load(case, root, split, cache)
        assert len(ds) == n, split
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, 1, 48, 48)
        assert ds.targets.dtype == case.target_dtype and ds.targets.shape[0] == n
        assert ds.name == case.name and ds.split == split and ds.protocol
        assert all(len(v) == n for v in ds.meta.values())
        image, target = ds[0]
        assert torch.equal(image, ds.images[0]) and torch.equal(target, ds.targets[0])


@_params(CASES)
def test_transform_and_target_transform(case, tmp_path, cache):
    root = _root(case, tmp_path)
    split = next(iter(case.lengths))
    ds = _load(case, root, split, cache, transform=lambda x: x.float() / 255, target_transform=lambda y: int(y) + 100)
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.dtype == torch.float32 and torch.equal(image, ds.images[i].float() / 255)
        assert target == int(ds.targets[i]) + 100


@_params(FILE_CASES)
def test_not_found_says_where_in_one_line(case, tmp_path, cache):
    for root in (tmp_path / "nowhere", tmp_path):  # absent, and present but empty
        with pytest.raises(DatasetNotFoundError) as err:
            _load(case, root, "train", cache)
        assert isinstance(err.value, FileNotFoundError) and str(root) in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="root="):
        _load(case, None, "train", cache)
    assert not {r["name"]: r for r in find_datasets(tmp_path)}[case.name]["found"]


@_params(FILE_CASES)
def test_find_datasets_finds_the_fixture(case, tmp_path):
    row = {r["name"]: r for r in find_datasets(_root(case, tmp_path))}[case.name]
    assert row["found"] and Path(row["where"]).is_relative_to(tmp_path)


@_params(FILE_CASES)
def test_bad_file_is_named_in_one_line(case, tmp_path, cache):
    root = _root(case, tmp_path)
    bad = case.spoil(root)
    with pytest.raises(DatasetFormatError) as err:
        _load(case, root, next(iter(case.lengths)), cache)
    assert isinstance(err.value, ValueError)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


@_params([c for c in FILE_CASES if c.images_from_files])
def test_second_load_decodes_nothing(case, tmp_path, cache, monkeypatch):
    root = _root(case, tmp_path)
    first = {s: _load(case, root, s, cache) for s in case.lengths}

    def no_decoding(*args):
        raise AssertionError("decoded again despite an up-to-date cache")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for split, ds in first.items():
        again = _load(case, root, split, cache)
        assert torch.equal(again.images, ds.images) and torch.equal(again.targets, ds.targets)
    assert not list(root.rglob("*.npz"))  # the cache is never written into the data folder


@_params(FILE_CASES)
def test_broken_cache_file_is_rebuilt(case, tmp_path, cache):
    """Item 8 of issue 10, through every loader: a truncated cache file is named, deleted and rebuilt."""
    root = _root(case, tmp_path)
    split = next(iter(case.lengths))
    first = _load(case, root, split, cache)
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ": unreadable cache file"):
        again = _load(case, root, split, cache)
    assert torch.equal(again.images, first.images) and torch.equal(again.targets, first.targets)
    assert [p.name for p in cache.glob("*.npz")] == [path.name] and path.stat().st_size > 100


@_params([c for c in FILE_CASES if c.images_from_files])
def test_decompression_bomb_is_refused_by_name(case, tmp_path, cache, monkeypatch):
    """Pillow's limit, as the application set it (lowered here), guards every loader's decoding."""
    root = _root(case, tmp_path)
    for limit in (2000, 1000):  # 48x48 = 2304 pixels: over the limit, then over twice it (Pillow's error)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(DatasetFormatError) as err:
            _load(case, root, next(iter(case.lengths)), False)
        message = str(err.value)
        assert re.search("decompression.bomb", message) and str(root) in message and "\n" not in message
