"""JAFFE loader on a fake ``jaffedbase/``: 10 subjects x 7 codes of 256x256 TIFFs with known pixels."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fercore.data import DATASETS, DatasetFormatError, DatasetNotFoundError, find_datasets, jaffe, load_dataset
from fercore.data.folds import fold_protocol
from fercore.data.jaffe import load_jaffe, locate_jaffe
from fercore.labels import EMOTIONS_7

SUBJECTS = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}
# The documented crop box (0.23, 0.33, 0.77, 0.87) of a 256x256 image, in pixels.
X0, Y0, X1, Y1 = 59, 84, 197, 223


def face(value, quadrants=None) -> np.ndarray:
    """A 256x256 image: 0 outside the crop box, ``value`` inside (or four quadrant values)."""
    image = np.zeros((256, 256), np.uint8)
    image[Y0:Y1, X0:X1] = value
    if quadrants is not None:
        (a, b), (c, d) = quadrants
        ym, xm = Y0 + 70, X0 + 69
        image[Y0:ym, X0:xm], image[Y0:ym, xm:X1], image[ym:Y1, X0:xm], image[ym:Y1, xm:X1] = a, b, c, d
    return image


def write_tiff(path: Path, image: np.ndarray, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([image] * 3, -1) if rgb else image).save(path)


def make_jaffe(folder: Path) -> dict[str, dict]:
    """Write the fake database; return, per file name, its pixel value, label, subject and index."""
    expected, index = {}, 0
    for s, subject in enumerate(SUBJECTS):
        names = [f"{subject}.{code}1.{index}" for code in CODES] + ([f"{subject}.HA2.{index}"] if s == 0 else [])
        for name in names:
            name += ".tif" if subject == "KL" else ".tiff"  # both extensions occur
            value = 20 + 3 * len(expected)
            write_tiff(folder / name, face(value), rgb=subject == "YM")  # some readers see 3 channels
            expected[name] = {"value": value, "label": CODES[name.split(".")[1][:2]], "subject": subject,
                              "index": int(name.split(".")[2])}
            index += 1
    (folder / "README.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    return expected


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, make_jaffe(root / "jaffe" / "jaffedbase")


def test_all_images_decoded_cropped_and_labelled(db, tmp_path):
    root, expected = db
    ds = load_jaffe(root, "all", cache_dir=tmp_path)
    assert len(ds) == 71 and ds.images.shape == (71, 1, 48, 48) and ds.images.dtype == torch.uint8
    assert ds.classes == list(EMOTIONS_7) and ds.name == "jaffe" and ds.split == "all"
    assert sorted(ds.meta["file"]) == sorted(expected)
    for i, file in enumerate(ds.meta["file"]):
        e = expected[file]
        assert (ds.images[i] == e["value"]).all(), file  # the crop box holds exactly the painted face
        assert int(ds.targets[i]) == e["label"] and ds.meta["subject"][i] == e["subject"]
        assert ds.meta["index"][i] == e["index"]
    assert ds.class_counts() == {c: 10 + (c == "happy") for c in EMOTIONS_7}


def test_crop_box_orientation(tmp_path):
    folder = tmp_path / "JAFFE"
    for s in ("KA", "KL", "KM"):
        write_tiff(folder / f"{s}.SU1.1.tiff", face(0, quadrants=((40, 80), (120, 160))))
    image = load_jaffe(tmp_path, "all", folds=3, cache_dir=False).images[0, 0]
    # The box is 138x139 pixels, split after 69 columns and 70 rows: output column 24 starts the
    # right half exactly, output row 24 straddles the split. Any shift of the box moves these.
    assert (image[:24, :24] == 40).all() and (image[:24, 24:] == 80).all()
    assert (image[25:, :24] == 120).all() and (image[25:, 24:] == 160).all()
    assert ((image[24, :24] > 40) & (image[24, :24] < 120)).all()


def test_crop_is_exactly_the_documented_box(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    for s in ("KA", "KL", "KM"):
        write_tiff(tmp_path / f"{s}.DI1.1.tiff", image)
    got = load_jaffe(tmp_path, "all", folds=3, cache_dir=False).images[0, 0].numpy()
    assert np.array_equal(got, cv2.resize(image[Y0:Y1, X0:X1], (48, 48), interpolation=cv2.INTER_AREA))


def test_ten_folds_are_leave_one_subject_out(db, tmp_path):
    root, expected = db
    tested = []
    for fold in range(10):
        parts = {s: load_jaffe(root, s, fold=fold, cache_dir=tmp_path) for s in ("train", "val", "test")}
        subjects = {s: set(d.meta["subject"].tolist()) for s, d in parts.items()}
        assert len(subjects["test"]) == len(subjects["val"]) == 1 and len(subjects["train"]) == 8
        assert not (subjects["train"] & subjects["test"]) and not (subjects["train"] & subjects["val"])
        assert subjects["val"] != subjects["test"]
        assert sum(len(d) for d in parts.values()) == 71
        assert len(parts["test"]) == (8 if subjects["test"] == {"KA"} else 7)
        assert parts["test"].protocol == fold_protocol(10, fold, 10)
        assert "leave-one-subject-out" in parts["test"].protocol
        tested += subjects["test"]
    assert sorted(tested) == SUBJECTS


def test_load_dataset_through_the_registry(db):
    root, _ = db
    ds = load_dataset("jaffe", root, "test", fold=4)
    direct = load_jaffe(root, "test", fold=4)
    assert torch.equal(ds.images, direct.images) and list(ds.meta["file"]) == list(direct.meta["file"])
    assert len(load_dataset("jaffe", root, "train", fold=4, folds=5)) + len(load_dataset("jaffe", root, "val", fold=4, folds=5)) \
        + len(load_dataset("jaffe", root, "test", fold=4, folds=5)) == 71
    info = DATASETS["jaffe"]
    assert info.load is load_jaffe and info.locate is locate_jaffe and "zenodo.org/records/3451524" in info.source
    assert info.splits == ("train", "val", "test", "all")


def test_find_datasets_reports_jaffe(db, tmp_path):
    root, _ = db
    rows = {r["name"]: r for r in find_datasets(root)}
    assert rows["jaffe"]["found"] and rows["jaffe"]["where"] == str(root / "jaffe" / "jaffedbase")
    assert not {r["name"]: r for r in find_datasets(tmp_path)}["jaffe"]["found"]


@pytest.mark.parametrize("where", ["jaffe", "JAFFE", "jaffedbase", ".", "jaffe/jaffedbase"])
def test_locate_each_layout(tmp_path, where):
    write_tiff(tmp_path / where / "KA.NE1.1.tiff", face(9))
    assert locate_jaffe(tmp_path) == tmp_path / where


def test_cache_goes_to_fercore_cache_and_is_reused(db, monkeypatch):
    root, _ = db
    before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}
    first = load_jaffe(root, "all")
    cache = Path(os.environ["FERCORE_CACHE"])
    assert list(cache.glob("jaffe-*.npz")) and not list(root.rglob("*.npz"))
    assert {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} == before

    def no_decoding(*args):
        raise AssertionError("decoded again despite an up-to-date cache")

    monkeypatch.setattr(jaffe, "read_gray", no_decoding)
    again = load_jaffe(root, "all")
    assert torch.equal(again.images, first.images) and torch.equal(again.targets, first.targets)


@pytest.mark.parametrize("exists", [False, True])
def test_missing_data_says_where_and_how(tmp_path, exists):
    root = tmp_path / "nowhere"
    if exists:
        (root / "jaffe").mkdir(parents=True)  # an empty folder is not JAFFE
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("jaffe", root, "train")
    message = str(err.value)
    for part in (str(root / "jaffe"), str(root / "JAFFE"), str(root / "jaffedbase"), str(root / "jaffe" / "jaffedbase"),
                 "KA.AN1.39.tiff", "https://zenodo.org/records/3451524"):
        assert part in message
    assert ("does not exist" in message) != exists


@pytest.mark.parametrize("name", ["KA.XX1.39.tiff", "notes.tiff", "KA_AN1_39.tif"])
def test_misnamed_file_is_named(tmp_path, name):
    write_tiff(tmp_path / "jaffe" / "KA.NE1.1.tiff", face(9))
    write_tiff(tmp_path / "jaffe" / name, face(9))
    with pytest.raises(DatasetFormatError, match=f"{name}: not a JAFFE file name; expected .*KA.AN1.39.tiff"):
        load_jaffe(tmp_path, "all", folds=3, cache_dir=False)


def test_corrupt_tiff_is_named(tmp_path):
    write_tiff(tmp_path / "jaffe" / "KA.NE1.1.tiff", face(9))
    (tmp_path / "jaffe" / "KL.AN1.2.tiff").write_bytes(b"II*\x00 this is not really a TIFF")
    with pytest.raises(DatasetFormatError, match="KL.AN1.2.tiff: cannot decode"):
        load_jaffe(tmp_path, "all", cache_dir=False)


def test_bad_fold_arguments(db):
    root, _ = db
    with pytest.raises(ValueError, match="fold must be in 0..9"):
        load_jaffe(root, "test", fold=10)
    with pytest.raises(ValueError, match="10 subjects cannot fill 11 folds"):
        load_jaffe(root, "test", folds=11)
