"""CK+ loader on fakes of both layouts: the original ``cohn-kanade-images/`` + ``Emotion/`` and ``CK+48/``."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fercore.data import DATASETS, DatasetFormatError, DatasetNotFoundError, ckplus, find_datasets, load_dataset
from fercore.data.ckplus import load_ckplus, locate_ckplus
from fercore.data.folds import fold_protocol
from fercore.labels import EMOTIONS, EMOTIONS_7

# The documented crop box (0.25, 0.16, 0.75, 0.81) in pixels: x0, y0, x1, y1 for 640x490 and 640x480 frames.
BOX = {490: (160, 78, 480, 397), 480: (160, 77, 480, 389)}
# (subject, sequence, frames, CK+ code or None for an unlabelled sequence, frame height, RGB?)
SEQUENCES = [
    ("S005", "001", 4, 3, 490, False),     # disgust
    ("S010", "002", 5, 2, 490, False),     # contempt
    ("S010", "004", 4, 5, 490, False),     # happy
    ("S011", "001", 4, 1, 490, False),     # anger
    ("S011", "002", 3, None, 490, False),  # no emotion file: not used
    ("S022", "001", 4, 7, 480, True),      # surprise, 640x480 RGB frames
    ("S026", "001", 4, 4, 490, False),     # fear
    ("S026", "003", 3, 6, 490, False),     # sadness, too short for a separate neutral frame
]
CANONICAL = {0: "neutral", 1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}


def frame_image(value: int, height: int, rgb: bool) -> np.ndarray:
    """0 outside the crop box, ``value`` inside it."""
    image = np.zeros((height, 640), np.uint8)
    x0, y0, x1, y1 = BOX[height]
    image[y0:y1, x0:x1] = value
    return np.stack([image] * 3, -1) if rgb else image


def write_sequence(base: Path, subject, seq, frames, code, height=490, rgb=False, first_value=10, image=None) -> list[dict]:
    """Frames ``S005_001_0000000k.png`` and, if ``code`` is not None, the emotion file of the last frame."""
    folder = base / "cohn-kanade-images" / subject / seq
    folder.mkdir(parents=True, exist_ok=True)
    (base / "Emotion" / subject / seq).mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(1, frames + 1):
        name = f"{subject}_{seq}_{k:08d}.png"
        value = first_value + k
        assert cv2.imwrite(str(folder / name), frame_image(value, height, rgb) if image is None else image)
        written.append({"file": f"cohn-kanade-images/{subject}/{seq}/{name}", "value": value, "frame": k,
                        "subject": subject, "sequence": f"{subject}_{seq}"})
    if code is not None:
        emotion = base / "Emotion" / subject / seq / f"{subject}_{seq}_{frames:08d}_emotion.txt"
        emotion.write_text(f"   {float(code):.7e}\n")  # the real files: '   3.0000000e+00'
    return written


def make_original(base: Path) -> dict[str, dict]:
    """The fake CK+; returns, per image the loader should use, what it should give."""
    expected = {}
    for i, (subject, seq, frames, code, height, rgb) in enumerate(SEQUENCES):
        written = write_sequence(base, subject, seq, frames, code, height, rgb, first_value=10 * i)
        if code is None:
            continue
        label = EMOTIONS.index(CANONICAL[code])
        for w in written[-3:]:
            expected[w["file"]] = {**w, "label": label, "onset": False, "seq_label": label}
        if frames > 3:
            expected[written[0]["file"]] = {**written[0], "label": EMOTIONS.index("neutral"), "onset": True, "seq_label": label}
    (base / "cohn-kanade-images" / ".DS_Store").write_bytes(b"\x00")
    return expected


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, make_original(root / "CK+")


def check(ds, expected):
    for i, file in enumerate(ds.meta["file"]):
        e = expected[file]
        assert (ds.images[i] == e["value"]).all(), file  # the fixed box holds exactly the painted face
        assert int(ds.targets[i]) == e["label"], file
        assert (ds.meta["subject"][i], ds.meta["sequence"][i], ds.meta["frame"][i]) == (e["subject"], e["sequence"], e["frame"])


def test_all_labelled_frames_with_neutral_onsets(ck):
    root, expected = ck
    ds = load_ckplus(root, "all", folds=5)
    assert len(ds) == 27 == len(expected)  # 7 labelled sequences x 3 peak frames + 6 neutral first frames
    assert ds.images.shape == (27, 1, 48, 48) and ds.images.dtype == torch.uint8 and ds.targets.dtype == torch.long
    assert ds.classes == list(EMOTIONS) and ds.classes[7] == "contempt" and ds.name == "ckplus"
    assert sorted(ds.meta["file"]) == sorted(expected)
    check(ds, expected)
    counts = ds.class_counts()
    assert counts["neutral"] == 6 and counts["contempt"] == 3 and counts["surprise"] == 3
    assert "S011_002" not in set(ds.meta["sequence"])  # unlabelled sequence left out


def test_seven_classes_drop_the_contempt_sequences(ck):
    root, expected = ck
    ds = load_ckplus(root, "all", folds=5, classes=7)
    assert len(ds) == 23 and ds.classes == list(EMOTIONS_7) and int(ds.targets.max()) < 7
    assert "S010_002" not in set(ds.meta["sequence"]) and "S010_004" in set(ds.meta["sequence"])
    assert sorted(ds.meta["file"]) == sorted(f for f, e in expected.items() if e["seq_label"] != 7)
    assert "contempt sequences dropped" in ds.protocol
    check(ds, expected)


def test_without_neutral_frames(ck):
    root, expected = ck
    ds = load_ckplus(root, "all", folds=5, neutral=False)
    assert len(ds) == 21 and ds.class_counts()["neutral"] == 0
    assert sorted(ds.meta["file"]) == sorted(f for f, e in expected.items() if not e["onset"])


def test_folds_are_subject_disjoint_and_the_same_for_every_setting(ck):
    root, _ = ck
    tested = []
    for fold in range(5):
        parts = {s: load_ckplus(root, s, fold=fold, folds=5) for s in ("train", "val", "test")}
        subjects = {s: set(d.meta["subject"].tolist()) for s, d in parts.items()}
        assert len(subjects["test"]) == len(subjects["val"]) == 1 and len(subjects["train"]) == 3
        assert not (subjects["train"] & (subjects["val"] | subjects["test"])) and subjects["val"] != subjects["test"]
        assert sum(len(d) for d in parts.values()) == 27
        assert parts["test"].protocol == fold_protocol(5, fold, 5)
        seven = load_ckplus(root, "test", fold=fold, folds=5, classes=7, neutral=False)
        assert set(seven.meta["subject"].tolist()) <= subjects["test"]
        tested += subjects["test"]
    assert sorted(tested) == ["S005", "S010", "S011", "S022", "S026"]
    everyone = load_ckplus(root, "all", folds=5)
    assert len(everyone) == 27 and everyone.protocol.startswith("every face of all 5 subjects, no fold held out")
    with pytest.raises(ValueError, match="5 subjects cannot fill 10 folds"):
        load_ckplus(root, "test")


@pytest.mark.parametrize("height, rgb", [(490, False), (480, True)])
def test_crop_is_exactly_the_documented_box(tmp_path, height, rgb):
    grey = np.random.default_rng(0).integers(0, 256, (height, 640), dtype=np.uint8)
    for subject in ("S001", "S002", "S003"):
        write_sequence(tmp_path, subject, "001", 3, 5, image=np.stack([grey] * 3, -1) if rgb else grey)
    got = load_ckplus(tmp_path, "all", folds=3, cache_dir=False).images[0, 0].numpy()
    x0, y0, x1, y1 = BOX[height]
    assert np.array_equal(got, cv2.resize(grey[y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA))


def make_ck48(base: Path) -> dict[str, tuple[int, int]]:
    """``CK+48/<emotion>/S010_004_00000017.png`` 48x48 images; returns file -> (value, label)."""
    files = {"anger/S010_004_00000017.png": 0, "anger/S010_004_00000018.png": 0, "contempt/S022_003_00000020.png": 7,
             "happy/S011_006_00000010.png": 3, "surprise/S022_001_00000030.png": 5, "neutral/S010_004_00000001.png": 6,
             "sadness/S011_002_00000015.png": 4}
    expected = {}
    for k, (rel, label) in enumerate(sorted(files.items())):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        image = np.random.default_rng(k).integers(0, 256, (48, 48), dtype=np.uint8)
        assert cv2.imwrite(str(base / rel), image)
        expected[rel] = (image, label)
    return expected


def test_ck48_layout(tmp_path):
    expected = make_ck48(tmp_path / "CK+48")
    assert locate_ckplus(tmp_path) == tmp_path / "CK+48"
    ds = load_ckplus(tmp_path, "all", folds=3)
    assert sorted(ds.meta["file"]) == sorted(expected)
    for i, file in enumerate(ds.meta["file"]):
        image, label = expected[file]
        assert np.array_equal(ds.images[i, 0].numpy(), image) and int(ds.targets[i]) == label
    row = list(ds.meta["file"]).index("anger/S010_004_00000017.png")
    assert (ds.meta["subject"][row], ds.meta["sequence"][row], ds.meta["frame"][row]) == ("S010", "S010_004", 17)
    assert len(load_ckplus(tmp_path, "all", folds=3, classes=7)) == 6
    assert len(load_ckplus(tmp_path, "all", folds=3, neutral=False)) == 6
    tests = [set(load_ckplus(tmp_path, "test", fold=f, folds=3).meta["subject"]) for f in range(3)]
    assert sorted(s for t in tests for s in t) == ["S010", "S011", "S022"]


@pytest.mark.parametrize("where, layout", [("CK+", "original"), ("ckplus", "original"), (".", "original"), (".", "ck48"),
                                           ("CK+48", "ck48"), ("ckplus48/CK+48", "ck48"), ("ckplus/CK+48", "ck48")])
def test_locate_each_layout(tmp_path, where, layout):
    if layout == "original":
        write_sequence(tmp_path / where, "S005", "001", 1, 3)
    else:
        make_ck48(tmp_path / where)
    assert locate_ckplus(tmp_path) == tmp_path / where
    assert {r["name"]: r for r in find_datasets(tmp_path)}["ckplus"]["where"] == str(tmp_path / where)


def test_ck48_inside_a_ckplus48_folder_loads(tmp_path):
    """``datasets`` and the loader find ROOT/ckplus48/CK+48/, the layout of the shared real copy."""
    expected = make_ck48(tmp_path / "ckplus48" / "CK+48")
    ds = load_dataset("ckplus", tmp_path, "all", folds=3)
    assert sorted(ds.meta["file"]) == sorted(expected)


def test_registry_find_datasets_and_cache(ck, monkeypatch):
    root, _ = ck
    info = DATASETS["ckplus"]
    assert info.load is load_ckplus and info.locate is locate_ckplus and "jeffcohn.net/Resources" in info.source
    assert {r["name"]: r for r in find_datasets(root)}["ckplus"]["where"] == str(root / "CK+")
    first = load_dataset("ckplus", root, "test", fold=2, folds=5)
    assert list(Path(os.environ["FERCORE_CACHE"]).glob("ckplus-original-*.npz")) and not list(root.rglob("*.npz"))

    def no_decoding(*args):
        raise AssertionError("decoded again despite an up-to-date cache")

    monkeypatch.setattr(ckplus, "read_gray", no_decoding)
    again = load_dataset("ckplus", root, "test", fold=2, folds=5)
    assert torch.equal(again.images, first.images) and list(again.meta["file"]) == list(first.meta["file"])
    assert len(load_dataset("ckplus", root, "train", fold=2, folds=5, classes=7)) > 0  # same cache, other settings


@pytest.mark.parametrize("exists", [False, True])
def test_missing_data_says_where_and_how(tmp_path, exists):
    root = tmp_path / "nowhere"
    if exists:
        (root / "CK+" / "cohn-kanade-images").mkdir(parents=True)  # no Emotion/ beside it
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("ckplus", root, "train")
    message = str(err.value)
    for part in (str(root / "CK+"), str(root / "ckplus"), str(root / "CK+48"), "cohn-kanade-images/", "Emotion/",
                 "CK+48/<emotion>/", "https://www.jeffcohn.net/Resources/"):
        assert part in message
    assert ("does not exist" in message) != exists


@pytest.mark.parametrize("text", ["happy", "   9.0000000e+00", "2.5", "", "nan"])
def test_bad_emotion_file_is_named(tmp_path, text):
    write_sequence(tmp_path, "S005", "001", 4, 3)
    emotion = tmp_path / "Emotion" / "S005" / "001" / "S005_001_00000004_emotion.txt"
    emotion.write_text(text)
    with pytest.raises(DatasetFormatError, match=f"{emotion}: .* is not a CK\\+ emotion code"):
        load_ckplus(tmp_path, "all", folds=3)


def test_emotion_file_without_images(tmp_path):
    write_sequence(tmp_path, "S005", "001", 4, 3)
    orphan = tmp_path / "Emotion" / "S005" / "002" / "S005_002_00000009_emotion.txt"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("   1.0000000e+00\n")
    with pytest.raises(DatasetFormatError, match=f"{orphan}: labels a sequence with no images; expected PNG frames in "
                                                 f".*cohn-kanade-images.S005.002"):
        load_ckplus(tmp_path, "all", folds=3)


def test_ck48_bad_names_and_folders(tmp_path):
    make_ck48(tmp_path / "CK+48")
    cv2.imwrite(str(tmp_path / "CK+48" / "happy" / "img01.png"), np.zeros((48, 48), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"img01.png: not a CK\+ frame name; expected S<subject>_<sequence>_<frame>.png"):
        load_ckplus(tmp_path, "all", folds=3, cache_dir=False)
    (tmp_path / "CK+48" / "happy" / "img01.png").unlink()
    (tmp_path / "CK+48" / "bored").mkdir()
    with pytest.raises(DatasetFormatError, match="bored: unknown emotion folder; expected one of anger"):
        load_ckplus(tmp_path, "all", folds=3, cache_dir=False)


def test_image_level_folds_put_one_subjects_frames_in_train_and_test(ck):
    """folds_by='image' (the leaky protocol of many papers) splits images, not people, and says so."""
    root, _ = ck
    parts = {s: load_ckplus(root, s, fold=0, folds=5, folds_by="image") for s in ("train", "val", "test")}
    files = {s: set(d.meta["file"].tolist()) for s, d in parts.items()}
    assert sum(len(f) for f in files.values()) == 27 and not (files["train"] & (files["val"] | files["test"]))
    subjects = {s: set(d.meta["subject"].tolist()) for s, d in parts.items()}
    assert subjects["train"] & subjects["test"]  # the leak: the same people on both sides
    assert parts["test"].protocol.startswith("LEAKY image-level 5-fold")
    tested = [f for k in range(5) for f in load_ckplus(root, "test", fold=k, folds=5, folds_by="image").meta["file"]]
    assert sorted(tested) == sorted(load_ckplus(root, "all", folds=5).meta["file"])  # every image tested once
    with pytest.raises(ValueError, match="folds_by must be 'subject' or 'image'"):
        load_ckplus(root, "test", folds=5, folds_by="sequence")


def test_bad_arguments(ck):
    root, _ = ck
    with pytest.raises(ValueError, match="classes must be 7 or 8"):
        load_ckplus(root, "all", folds=5, classes=6)
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        load_ckplus(root, "test", fold=5, folds=5)


@pytest.mark.realdata
def test_real_ck48(real_data):
    """The shared copy (ckplus48/CK+48/, see its README): 981 images of 118 subjects, no neutral."""
    row = {r["name"]: r for r in find_datasets(real_data)}["ckplus"]
    if not row["found"]:
        pytest.skip(f"no CK+ under {real_data}")
    ds = load_dataset("ckplus", real_data, "all")
    if Path(row["where"]).name != "CK+48":
        pytest.skip(f"CK+ at {row['where']} is not the CK+48 copy")
    assert len(ds) == 981 and len(set(ds.meta["subject"].tolist())) == 118
    assert ds.class_counts()["neutral"] == 0 and ds.images.shape[1:] == (1, 48, 48)
