"""FERG-DB loader on a fake ``FERG_DB_256/``: 3 characters x 3 emotions of 256x256 RGBA/RGB PNGs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fercore.data import DATASETS, DatasetFormatError, DatasetNotFoundError, ferg, find_datasets, load_dataset
from fercore.data.ferg import load_ferg, locate_ferg
from fercore.labels import EMOTIONS_7

CHARACTERS = ["aia", "bonnie", "jules"]
EMOTIONS = {"anger": ("angry", 4), "joy": ("happy", 3), "neutral": ("neutral", 3)}  # folder: (class, images)


def cartoon(value: int, rgb: bool = False) -> np.ndarray:
    """Top half transparent background, bottom half an opaque face of grey ``value``; RGB: a white top."""
    image = np.zeros((256, 256, 4), np.uint8)
    image[128:, :, :3], image[128:, :, 3] = value, 255
    if rgb:
        image[:128, :, :3] = 255
        return image[..., :3]
    return image


def save_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_ferg(base: Path) -> dict[str, dict]:
    """Write the fake database; return, per file under ``base``, its face value, label and character."""
    expected = {}
    for character in CHARACTERS:
        for emotion, (name, count) in EMOTIONS.items():
            for k in range(1, count + 1):
                rel = f"{character}/{character}_{emotion}/{character}_{emotion}_{k}.png"
                value = 10 + 5 * len(expected)
                save_png(base / rel, cartoon(value, rgb=character == "jules"))
                expected[rel] = {"value": value, "label": EMOTIONS_7.index(name), "character": character}
    (base / "README.txt").write_text("FERG")
    (base / "docs").mkdir()  # a folder that is no character is ignored
    return expected


@pytest.fixture(scope="module")
def fg(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, make_ferg(root / "FERG_DB_256")


def test_all_images_on_white_and_labelled(fg):
    root, expected = fg
    ds = load_ferg(root, "all")
    assert len(ds) == 30 and ds.images.shape == (30, 1, 48, 48) and ds.images.dtype == torch.uint8
    assert ds.classes == list(EMOTIONS_7) and ds.name == "ferg"
    assert sorted(ds.meta["file"]) == sorted(expected)
    for i, file in enumerate(ds.meta["file"]):
        e = expected[file]
        assert (ds.images[i, 0, :24] == 255).all(), file  # the transparent background became white
        assert (ds.images[i, 0, 24:] == e["value"]).all(), file
        assert int(ds.targets[i]) == e["label"] and ds.meta["character"][i] == e["character"]
    assert ds.class_counts() == {c: {"angry": 12, "happy": 9, "neutral": 9}.get(c, 0) for c in EMOTIONS_7}


def test_half_transparent_pixels_blend_onto_white(tmp_path):
    image = np.zeros((256, 256, 4), np.uint8)
    image[...] = (100, 150, 200, 128)
    for c in CHARACTERS:
        save_png(tmp_path / c / f"{c}_fear" / "x.png", image)
    got = load_ferg(tmp_path, "all", cache_dir=False).images
    grey = 0.299 * 100 + 0.587 * 150 + 0.114 * 200
    assert ((got.int() - round(grey * 128 / 255 + 255 * 127 / 255)).abs() <= 1).all()


def test_random_split_is_80_10_10_disjoint_and_seeded(fg):
    root, _ = fg
    parts = {s: load_ferg(root, s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [24, 3, 3]
    files = {s: set(d.meta["file"].tolist()) for s, d in parts.items()}
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"]) and not (files["val"] & files["test"])
    assert len(files["train"] | files["val"] | files["test"]) == 30
    assert set(load_ferg(root, "test", seed=0).meta["file"]) == files["test"]
    assert set(load_ferg(root, "test", seed=1).meta["file"]) != files["test"]
    assert "80/10/10" in parts["test"].protocol and "inflates accuracy" in parts["test"].protocol


@pytest.mark.parametrize("fold, test, val, train", [(0, "aia", "bonnie", "jules"), (2, "jules", "aia", "bonnie")])
def test_character_split_holds_out_characters(fg, fold, test, val, train):
    root, _ = fg
    got = {s: load_ferg(root, s, split_mode="character", fold=fold) for s in ("train", "val", "test")}
    assert {s: set(d.meta["character"].tolist()) for s, d in got.items()} == {"train": {train}, "val": {val}, "test": {test}}
    assert all(len(d) == 10 for d in got.values())
    assert got["test"].protocol == (f"FERG held-out character, fold {fold} of 3: tests on {test}, selects on {val}, "
                                    "trains on the other 1 characters; no character is in two of train/val/test")


def test_bad_split_arguments(fg):
    root, _ = fg
    with pytest.raises(ValueError, match="unknown split_mode 'subject' for ferg; valid: random, character"):
        load_ferg(root, "test", split_mode="subject")
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.2 \(one per character: aia, bonnie, jules\), got 3"):
        load_ferg(root, "test", split_mode="character", fold=3)


@pytest.mark.parametrize("where", ["FERG_DB_256", "FERG_DB_256/FERG_DB_256", "."])
def test_locate_each_layout(tmp_path, where):
    save_png(tmp_path / where / "ray" / "ray_joy" / "ray_joy_1.png", cartoon(50))
    assert locate_ferg(tmp_path) == tmp_path / where


def test_registry_find_datasets_and_cache(fg, monkeypatch):
    root, _ = fg
    info = DATASETS["ferg"]
    assert info.load is load_ferg and info.locate is locate_ferg and "grail.cs.washington.edu" in info.source
    assert {r["name"]: r for r in find_datasets(root)}["ferg"]["where"] == str(root / "FERG_DB_256")
    first = load_dataset("ferg", root, "val", split_mode="character", fold=1)
    assert list(Path(os.environ["FERCORE_CACHE"]).glob("ferg-*.npz")) and not list(root.rglob("*.npz"))

    def no_decoding(*args):
        raise AssertionError("decoded again despite an up-to-date cache")

    monkeypatch.setattr(ferg, "_read_on_white", no_decoding)
    again = load_dataset("ferg", root, "val", split_mode="character", fold=1)
    assert torch.equal(again.images, first.images) and list(again.meta["file"]) == list(first.meta["file"])


@pytest.mark.parametrize("exists", [False, True])
def test_missing_data_says_where_and_how(tmp_path, exists):
    root = tmp_path / "nowhere"
    if exists:
        (root / "FERG_DB_256" / "aia").mkdir(parents=True)  # a character without emotion folders
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("ferg", root, "train")
    message = str(err.value)
    for part in (str(root / "FERG_DB_256"), str(root / "FERG_DB_256" / "FERG_DB_256"), "<character>_<emotion>",
                 "https://grail.cs.washington.edu/projects/deepexpr/ferg-2d-db.html"):
        assert part in message
    assert ("does not exist" in message) != exists


def test_unknown_emotion_folder_is_named(tmp_path):
    save_png(tmp_path / "aia" / "aia_joy" / "aia_joy_1.png", cartoon(50))
    save_png(tmp_path / "aia" / "aia_bored" / "aia_bored_1.png", cartoon(50))
    with pytest.raises(DatasetFormatError, match="aia_bored: unknown emotion folder; expected aia_<emotion> with "
                                                 "<emotion> one of anger"):
        load_ferg(tmp_path, "all", cache_dir=False)


def test_unreadable_png_is_named(tmp_path):
    save_png(tmp_path / "aia" / "aia_joy" / "aia_joy_1.png", cartoon(50))
    (tmp_path / "aia" / "aia_joy" / "aia_joy_2.png").write_bytes(b"\x89PNG but broken")
    with pytest.raises(DatasetFormatError, match="aia_joy_2.png: cannot decode"):
        load_ferg(tmp_path, "all", cache_dir=False)
