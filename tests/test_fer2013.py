"""FER2013 loader: small fixtures written in each real format, checked by one shared harness.

Like torchvision's dataset tests, each format gets a few fake images with known pixels,
labels and usages; the same tests then run on every format. The real-data test at the end
checks the counts of the real image-folder copy and skips without it.
"""
from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fercore.data import DATASETS, DatasetFormatError, DatasetNotFoundError, fer2013, load_dataset
from fercore.data.fer2013 import load_fer2013, locate_fer2013
from fercore.labels import EMOTIONS_7

USAGE_OF = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
# Ten fake images: 5 Training, 3 PublicTest, 2 PrivateTest, labels cycling through 0..6.
USAGE_LIST = ["Training"] * 5 + ["PublicTest"] * 3 + ["PrivateTest"] * 2


def make_samples(smooth: bool = False) -> list[dict]:
    """Pixels, label and usage of each fake image; ``smooth`` images survive JPEG nearly intact."""
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(48) * 3, np.arange(48))  # asymmetric, so a transpose shows
    samples = []
    for k, usage in enumerate(USAGE_LIST):
        pixels = np.clip(ramp + 9 * k, 0, 255) if smooth else rng.integers(0, 256, (48, 48))
        samples.append({"pixels": pixels.astype(np.uint8), "label": (k * 3) % 7, "usage": usage, "id": k})
    samples[4]["id"] = 0  # the real folder reuses a file name across class folders; so do we
    return samples


def pixel_text(pixels: np.ndarray) -> str:
    return " ".join(str(v) for v in pixels.ravel())


def write_csv(path: Path, samples, *, icml: bool = False) -> None:
    """``fer2013.csv`` / ``.csv.gz`` (``emotion,pixels,Usage``) or ``icml_face_data.csv`` (``emotion, Usage, pixels``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if icml:
        lines = ["emotion, Usage, pixels"] + [f"{s['label']},{s['usage']},{pixel_text(s['pixels'])}" for s in samples]
    else:
        lines = ["emotion,pixels,Usage"] + [f"{s['label']},{pixel_text(s['pixels'])},{s['usage']}" for s in samples]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def image_path(base: Path, sample: dict, suffix: str) -> str:
    top = "train" if sample["usage"] == "Training" else "test"
    return f"{top}/{EMOTIONS_7[sample['label']]}/{sample['usage']}_{sample['id']}{suffix}"


def write_folders(base: Path, samples, suffix: str = ".png") -> None:
    """``train/<class>/Training_<id>.png`` and ``test/<class>/{Public,Private}Test_<id>.png``."""
    for s in samples:
        path = base / image_path(base, s, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), s["pixels"], [cv2.IMWRITE_JPEG_QUALITY, 100])


class Fixture:
    """One format written into a folder: where to point the loader and what it should return."""

    def __init__(self, fmt: str, root: Path):
        self.fmt, self.root = fmt, root
        self.samples = make_samples(smooth=fmt == "folders_jpg_nested")
        self.tolerance = 3 if fmt == "folders_jpg_nested" else 0  # JPEG rounding
        self.write()

    def write(self) -> None:
        r, s = self.root, self.samples
        writers = {
            "csv": lambda: write_csv(r / "fer2013.csv", s),
            "csv_gz_nested": lambda: write_csv(r / "fer2013" / "fer2013.csv.gz", s),
            "icml": lambda: write_csv(r / "icml_face_data.csv", s, icml=True),
            "folders": lambda: write_folders(r, s),
            "folders_jpg_nested": lambda: write_folders(r / "fer2013", s, ".jpg"),
        }
        writers[self.fmt]()

    @property
    def source(self) -> Path:
        return {"csv": self.root / "fer2013.csv", "csv_gz_nested": self.root / "fer2013" / "fer2013.csv.gz",
                "icml": self.root / "icml_face_data.csv", "folders": self.root,
                "folders_jpg_nested": self.root / "fer2013"}[self.fmt]

    def file_of(self, k: int) -> str:
        """The ``meta["file"]`` the loader should give sample ``k``."""
        if self.source.is_file():
            return f"{self.source.name}:row{k + 1}"
        return image_path(self.source, self.samples[k], ".jpg" if self.fmt.endswith("jpg_nested") else ".png")

    def expected(self, split: str) -> dict[str, dict]:
        return {self.file_of(k): s for k, s in enumerate(self.samples) if s["usage"] == USAGE_OF[split]}


FORMATS = ["csv", "csv_gz_nested", "icml", "folders", "folders_jpg_nested"]


@pytest.fixture(params=FORMATS)
def fake(request, tmp_path) -> Fixture:
    return Fixture(request.param, tmp_path / "data")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# --- the shared harness: every test below runs on every format ------------------------------

def test_locate_finds_the_source(fake):
    assert locate_fer2013(fake.root) == fake.source


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_split_contents(fake, split, tmp_path):
    ds = load_fer2013(fake.root, split, cache_dir=tmp_path / "cache")
    expected = fake.expected(split)
    assert len(ds) == len(expected) == {"train": 5, "val": 3, "test": 2}[split]
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(expected), 1, 48, 48)
    assert ds.targets.dtype == torch.long and ds.targets.shape == (len(expected),)
    assert ds.classes == list(EMOTIONS_7) and ds.name == "fer2013" and ds.split == split
    assert "PrivateTest" in ds.protocol and "PublicTest" in ds.protocol
    assert sorted(ds.meta["file"]) == sorted(expected)
    assert len(set(ds.meta["index"].tolist())) == len(ds)
    for i, file in enumerate(ds.meta["file"]):
        sample = expected[file]
        diff = np.abs(ds.images[i, 0].numpy().astype(int) - sample["pixels"].astype(int))
        assert diff.max() <= fake.tolerance, file
        assert int(ds.targets[i]) == sample["label"]
        assert ds.meta["usage"][i] == sample["usage"]
        if fake.source.is_file():
            assert file == f"{fake.source.name}:row{ds.meta['index'][i] + 1}"


def test_nothing_written_in_the_data_folder(fake, tmp_path):
    before = snapshot(fake.root)
    for split in ("train", "val", "test"):
        load_fer2013(fake.root, split, cache_dir=tmp_path / "cache")
    assert snapshot(fake.root) == before


def test_second_load_reads_the_cache(fake, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_fer2013(fake.root, "train", cache_dir=cache)
    assert len(list(cache.glob("fer2013-*.npz"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again despite an up-to-date cache")

    monkeypatch.setattr(fer2013, "_read_csv", no_decoding)
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for split in ("train", "val", "test"):  # one cache serves every split
        again = load_fer2013(fake.root, split, cache_dir=cache)
        assert len(again) == len(fake.expected(split))
    again = load_fer2013(fake.root, "train", cache_dir=cache)
    assert torch.equal(again.images, first.images) and torch.equal(again.targets, first.targets)
    assert list(again.meta["file"]) == list(first.meta["file"])


def test_changed_source_invalidates_the_cache(fake, tmp_path):
    """A rewritten source is decoded again even with its mtime restored, and the old cache file goes."""
    cache = tmp_path / "cache"
    load_fer2013(fake.root, "train", cache_dir=cache)
    mtimes = {p: p.stat().st_mtime_ns for p in fake.root.rglob("*.*")}
    changed = fake.samples[1]
    changed["pixels"] = np.ascontiguousarray(changed["pixels"][::-1, ::-1])  # same values: a CSV keeps its size
    fake.write()
    for path, mtime in mtimes.items():
        os.utime(path, ns=(mtime, mtime))
    ds = load_fer2013(fake.root, "train", cache_dir=cache)
    i = list(ds.meta["file"]).index(fake.file_of(1))
    diff = np.abs(ds.images[i, 0].numpy().astype(int) - changed["pixels"].astype(int))
    assert diff.max() <= fake.tolerance
    assert len(list(cache.glob("fer2013-*.npz"))) == 1  # the superseded cache file was removed


# --- not found ---------------------------------------------------------------------------

@pytest.mark.parametrize("exists", [False, True])
def test_missing_data_says_where_and_how(tmp_path, exists):
    root = tmp_path / "nowhere"
    if exists:
        (root / "train").mkdir(parents=True)  # a train/ with no class folders is not FER2013
    assert locate_fer2013(root) is None
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fer2013", root, "train")
    message = str(err.value)
    for part in (str(root), str(root / "fer2013"), "fer2013.csv", "icml_face_data.csv", "train/<class>/",
                 "Facial Expression Recognition Challenge", "python -m fercore datasets"):
        assert part in message
    assert ("does not exist" in message) != exists


def test_no_root_given():
    with pytest.raises(DatasetNotFoundError, match="root="):
        load_fer2013(None, "train")


# --- bad CSV rows ------------------------------------------------------------------------

def corrupt(samples, k, **change):
    """Write ``samples`` with row ``k`` altered, as text, so that the bad value really reaches the file."""
    rows = [f"{s['label']},{pixel_text(s['pixels'])},{s['usage']}" for s in samples]
    label, pixels, usage = rows[k].split(",")
    values = {"label": label, "pixels": pixels, "usage": usage, **change}
    rows[k] = f"{values['label']},{values['pixels']},{values['usage']}"
    return "emotion,pixels,Usage\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize("change, says", [
    ({"pixels": " ".join(["7"] * 2303)}, "2303 pixel values, expected 2304"),
    ({"pixels": " ".join(["7"] * 2305)}, "2305 pixel values"),
    ({"pixels": " ".join(["7"] * 2303 + ["x"])}, "other than numbers"),
    ({"pixels": " ".join(["7"] * 2303 + ["300"])}, "0..255"),
    ({"label": "7"}, "emotion '7' is not a label 0..6"),
    ({"label": "happy"}, "emotion 'happy'"),
    ({"usage": "Validation"}, "Usage 'Validation' is not one of Training, PublicTest, PrivateTest"),
])
def test_bad_csv_row_names_file_and_row(tmp_path, change, says):
    path = tmp_path / "fer2013.csv"
    path.write_text(corrupt(make_samples(), 2, **change))
    with pytest.raises(DatasetFormatError) as err:
        load_fer2013(tmp_path, "train")
    assert isinstance(err.value, ValueError)
    assert f"{path}, row 3 (line 4)" in str(err.value) and says in str(err.value)


def test_csv_with_windows_line_ends_quotes_and_blank_lines(tmp_path):
    samples = make_samples()[:3]
    lines = ["emotion, Usage, pixels"] + [f'{s["label"]}, {s["usage"]},"{pixel_text(s["pixels"])}"' for s in samples]
    path = tmp_path / "icml_face_data.csv"
    path.write_bytes(("\r\n".join(lines[:2] + [""] + lines[2:]) + "\r\n\r\n").encode())
    assert locate_fer2013(path) == path  # root may also name the CSV itself
    ds = load_fer2013(path, "train")
    assert list(ds.meta["file"]) == ["icml_face_data.csv:row1", "icml_face_data.csv:row2", "icml_face_data.csv:row3"]
    assert all(np.array_equal(ds.images[i, 0].numpy(), s["pixels"]) for i, s in enumerate(samples))
    assert ds.targets.tolist() == [s["label"] for s in samples]


def test_non_utf8_row_names_file_row_and_line(tmp_path):
    path = tmp_path / "fer2013.csv"
    text = corrupt(make_samples(), 3, usage="Training").encode()
    lines = text.split(b"\n")
    lines[4] = b"\xe9" + lines[4]  # a Latin-1 e-acute before data row 4's label
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DatasetFormatError) as err:
        load_fer2013(tmp_path, "train", cache_dir=False)
    assert str(err.value) == (f"{path}, row 4 (line 5): byte 0xe9 at column 1 is not UTF-8 text; "
                              "expected a UTF-8 (or ASCII) CSV")


@pytest.mark.parametrize("damage", ["truncated", "not gzip", "empty"])
def test_broken_gzip_is_one_line_naming_the_file(tmp_path, damage):
    plain = corrupt(make_samples(), 0).encode()
    packed = gzip.compress(plain)
    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes({"truncated": packed[:len(packed) // 2], "not gzip": plain, "empty": b"\x1f\x8b"}[damage])
    with pytest.raises(DatasetFormatError) as err:
        load_fer2013(tmp_path, "train", cache_dir=False)
    assert str(err.value).startswith(f"{path}: not a complete gzip file (") and "\n" not in str(err.value)


def test_csv_without_the_expected_header(tmp_path):
    (tmp_path / "fer2013.csv").write_text("label,pixels,Usage\n0," + " ".join(["1"] * 2304) + ",Training\n")
    with pytest.raises(DatasetFormatError, match=r"fer2013.csv: header .* lacks column\(s\) \['emotion'\]"):
        load_fer2013(tmp_path, "train")


# --- bad or unusual images ---------------------------------------------------------------

@pytest.mark.parametrize("mode, size, note", [("RGB", 64, "64x64 RGB"), ("RGBA", 48, "48x48 RGBA"), ("L", 40, "40x40 grayscale")])
def test_other_images_are_converted_with_a_warning(tmp_path, mode, size, note):
    write_folders(tmp_path, make_samples())
    # A flat colour: its grey level (ITU-R 601 luma) is known, whatever the resizing does.
    colour = {"RGB": (100, 150, 200), "RGBA": (100, 150, 200, 255), "L": 77}[mode]
    Image.new(mode, (size, size), colour).save(tmp_path / "train" / "happy" / "Training_99.png")
    with pytest.warns(UserWarning, match=f"train/happy/Training_99.png \\({note}\\)"):
        ds = load_fer2013(tmp_path, "train")
    image = ds.images[list(ds.meta["file"]).index("train/happy/Training_99.png"), 0]
    grey = 77 if mode == "L" else 0.299 * 100 + 0.587 * 150 + 0.114 * 200
    assert image.shape == (48, 48) and (image.int() - round(grey)).abs().max() <= 1
    assert len(ds) == 6


def test_plain_48x48_grey_images_give_no_warning(tmp_path):
    write_folders(tmp_path, make_samples())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_fer2013(tmp_path, "train")


def test_image_name_without_usage_prefix(tmp_path):
    write_folders(tmp_path, make_samples())
    cv2.imwrite(str(tmp_path / "test" / "sad" / "img_1.png"), np.zeros((48, 48), np.uint8))
    with pytest.raises(DatasetFormatError, match="img_1.png: cannot tell its Usage"):
        load_fer2013(tmp_path, "val")


def test_unknown_class_folder(tmp_path):
    write_folders(tmp_path, make_samples())
    (tmp_path / "train" / "bored").mkdir()
    with pytest.raises(DatasetFormatError, match="bored: unknown class folder; expected one of angry"):
        load_fer2013(tmp_path, "train")


# --- a split with no images --------------------------------------------------------------

def test_empty_split_lists_the_usages_found(tmp_path):
    write_folders(tmp_path, [s for s in make_samples() if s["usage"] != "PrivateTest"])
    with pytest.raises(ValueError) as err:
        load_dataset("fer2013", tmp_path, "test")
    assert str(err.value) == (f"split 'test' (PrivateTest) has no images in {tmp_path}; "
                              "found usages: Training (5), PublicTest (3)")


def test_registered():
    info = DATASETS["fer2013"]
    assert info.load is load_fer2013 and info.locate is locate_fer2013
    assert info.splits == ("train", "val", "test") and "Kaggle" in info.source


# --- the real image-folder copy ----------------------------------------------------------

KNOWN_TRAINING_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215,
                         "sad": 4830, "surprise": 3171, "neutral": 4965}


@pytest.mark.realdata
def test_real_fer2013_folder(real_data, tmp_path):
    source = locate_fer2013(real_data)
    if source is None or source.is_file():
        pytest.skip(f"no FER2013 image folders under {real_data}")
    on_disk = {split: {c: len(list((source / top / c).glob("*.jpg"))) for c in EMOTIONS_7}
               for split, top in (("train", "train"), ("val", "test"))}
    cache = tmp_path / "cache"
    train = load_dataset("fer2013", real_data, "train", cache_dir=cache)
    val = load_dataset("fer2013", real_data, "val", cache_dir=cache)
    assert (len(train), len(val)) == (28_709, 3_589)
    assert train.class_counts() == on_disk["train"] == KNOWN_TRAINING_COUNTS
    assert val.class_counts() == on_disk["val"]
    assert set(train.meta["usage"]) == {"Training"} and set(val.meta["usage"]) == {"PublicTest"}
    # The two file names that the real copy uses twice, in different class folders, are both kept.
    assert len(set(train.meta["file"])) == len(train)
    with pytest.raises(ValueError, match=r"split 'test' \(PrivateTest\) has no images in .*; "
                                         r"found usages: Training \(28709\), PublicTest \(3589\)"):
        load_dataset("fer2013", real_data, "test", cache_dir=cache)
