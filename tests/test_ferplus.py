"""FERPlus loader: a 10-row fer2013.csv and a fer2013new.csv with hand-chosen votes, the same
rows written as Microsoft's folders (PNGs + label.csv), a few faces in the folders and in FER2013's
JPEG folders for the pixel match of fer2013_label, and the real folders when present."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from test_fer2013 import make_samples, write_csv, write_folders

from fercore.data import DatasetFormatError, DatasetNotFoundError, fer2013, fer2013_match, ferplus, find_datasets
from fercore.data import load_dataset
from fercore.data.fer2013 import load_fer2013
from fercore.data.ferplus import load_ferplus
from fercore.labels import EMOTIONS
from tests.http_helpers import serve_folder

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# Votes in file column order: neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF
VOTES = [
    [0, 8, 1, 0, 0, 0, 0, 0, 1, 0],   # 0 Training: clear happy majority (ones dropped)
    [4, 0, 0, 4, 2, 0, 0, 0, 0, 0],   # 1 Training: tie neutral/sad, no majority
    [4, 1, 1, 1, 0, 0, 0, 0, 1, 0],   # 2 Training: majority only once the ones are dropped
    [2, 0, 0, 0, 0, 0, 0, 0, 8, 0],   # 3 Training: unknown majority
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # 4 Training: not a face
    [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 5 PublicTest: empty Image name (dropped by FERPlus)
    [3, 0, 0, 0, 0, 0, 0, 7, 0, 0],   # 6 PublicTest: contempt majority
    [0, 0, 6, 0, 0, 0, 4, 0, 0, 0],   # 7 PublicTest: surprise 6 / fear 4
    [5, 0, 0, 0, 3, 0, 0, 0, 2, 0],   # 8 PrivateTest: neutral 5 of 10, no majority
    [0, 0, 0, 4, 3, 3, 0, 0, 0, 0],   # 9 PrivateTest: top share 0.4
]
A, D, F, H, S, U, N, C = range(8)  # canonical indices


def vec(**kw) -> list[float]:
    out = [0.0] * 8
    for name, value in kw.items():
        out[EMOTIONS.index(name)] = value
    return out


def write_labels(path, samples, votes=VOTES, names=None):
    lines = [HEADER]
    for k, (s, v) in enumerate(zip(samples, votes)):
        name = names[k] if names is not None else "" if k == 5 else f"fer{k:07d}.png"
        lines.append(f"{s['usage']},{name}," + ",".join(map(str, v)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def root(tmp_path):
    samples = make_samples()
    write_csv(tmp_path / "fer2013.csv", samples)
    write_labels(tmp_path / "ferplus" / "fer2013new.csv", samples)
    return tmp_path


def test_majority(root):
    train = load_ferplus(root, "train")
    assert train.targets.dtype == torch.long
    assert train.meta["index"].tolist() == [0, 2] and train.targets.tolist() == [H, N]
    val = load_ferplus(root, "val")
    assert val.meta["index"].tolist() == [6, 7] and val.targets.tolist() == [C, U]
    assert val.classes == list(EMOTIONS)
    with pytest.raises(ValueError, match="no images"):
        load_ferplus(root, "test")  # rows 8 and 9 have no majority


def test_majority_meta_and_pixels(root):
    samples = make_samples()
    val = load_ferplus(root, "val")
    assert val.meta["fer2013_label"].tolist() == [samples[6]["label"], samples[7]["label"]]
    assert val.meta["votes"].tolist() == [VOTES[6], VOTES[7]]
    assert list(val.meta["usage"]) == ["PublicTest"] * 2
    assert torch.equal(val.images[0, 0], torch.from_numpy(samples[6]["pixels"]))


@pytest.mark.parametrize("mode", ["probability", "crossentropy"])
def test_soft_modes(root, mode):
    train = load_ferplus(root, "train", label_mode=mode)
    assert train.targets.dtype == torch.float32 and train.targets.shape == (3, 8)
    assert train.meta["index"].tolist() == [0, 1, 2]  # unknown and NF rows dropped
    # row 1: neutral 4 + sad 4 reach 75% of the 10 votes, so anger's 2 are cut (Barsoum's trim)
    expected = [vec(happy=1), vec(neutral=.5, sad=.5), vec(neutral=1)]
    assert torch.allclose(train.targets, torch.tensor(expected))
    val = load_ferplus(root, "val", label_mode=mode)
    assert val.meta["index"].tolist() == [6, 7]  # row 5 has no image name
    assert torch.allclose(val.targets, torch.tensor([vec(neutral=.3, contempt=.7), vec(surprise=.6, fear=.4)]))
    test = load_ferplus(root, "test", label_mode=mode)
    assert torch.allclose(test.targets, torch.tensor([vec(neutral=5 / 8, angry=3 / 8),
                                                      vec(sad=.4, angry=.3, disgust=.3)]))


def test_multi_target(root):
    # every emotion with at least 30% of the cleaned votes is marked
    train = load_ferplus(root, "train", label_mode="multi_target")
    assert train.meta["index"].tolist() == [0, 1, 2]
    assert train.targets.tolist() == [vec(happy=1), vec(neutral=1, sad=1), vec(neutral=1)]
    val = load_ferplus(root, "val", label_mode="multi_target")
    assert val.targets.tolist() == [vec(neutral=1, contempt=1), vec(surprise=1, fear=1)]
    test = load_ferplus(root, "test", label_mode="multi_target")
    assert test.targets.tolist() == [vec(neutral=1, angry=1), vec(sad=1, angry=1, disgust=1)]


# Hand-computed targets under Microsoft's reference rules (microsoft/FERPlus, src/ferplus.py,
# FERPlusReader._process_data + load_folders). Votes in file column order (neutral, happiness,
# surprise, sadness, anger, disgust, fear, contempt, unknown, NF); ones are dropped first and
# "total" is the cleaned sum over all 10 columns. Per row: majority class, soft distribution
# (probability/crossentropy) and multi_target marks; None = image dropped.
RULE_ROWS = [
    # 6 of 10 > half. Soft: neutral 6 < 7.5, next level is unknown -> stop, 6 > 5 kept.
    # Multi: neutral 6 and unknown 4 >= 3, marked 10 > 5, neutral leads.
    ([6, 0, 0, 0, 0, 0, 0, 0, 4, 0], "neutral", {"neutral": 1}, {"neutral"}),
    # Emotion tied with unknown: 5 is not > 5; soft takes neutral, stops at unknown, 5 <= 5 dropped;
    # multi marks both (10 > 5) and the first max is neutral.
    ([5, 0, 0, 0, 0, 0, 0, 0, 5, 0], None, None, {"neutral"}),
    # Soft: neutral 5 < 7.5, the next level is unknown (3) -> stop, 5 <= 5 dropped (anger never reached).
    ([5, 0, 0, 0, 2, 0, 0, 0, 3, 0], None, None, {"neutral"}),
    # Soft: neutral 6, then the tie level 2 takes sadness and stops at unknown: 8 > 5 kept.
    ([6, 0, 0, 2, 0, 0, 0, 0, 2, 0], "neutral", {"neutral": .75, "sad": .25}, {"neutral"}),
    # Soft: 5 < 7.5, +3 = 8 >= 7.5 stops: surprise's 2 are cut. Multi: 5 and 3 >= 3, 2 < 3.
    ([5, 3, 2, 0, 0, 0, 0, 0, 0, 0], None, {"neutral": 5 / 8, "happy": 3 / 8}, {"neutral", "happy"}),
    # Total 9 (the unknown one dropped). Soft: 3, then a tie of three 2s -> 4 classes > 3, dropped.
    # Multi: only neutral >= 2.7, 3 <= 4.5 dropped.
    ([3, 2, 0, 2, 2, 0, 0, 0, 1, 0], None, None, None),
    # Total 8. Soft: 4, then happiness and sadness (3 classes, 8 of 8). Multi: only 4 >= 2.4, 4 <= 4.
    ([4, 2, 0, 2, 0, 0, 0, 0, 1, 1], None, {"neutral": .5, "happy": .25, "sad": .25}, None),
    # Multi threshold is >= 30%: surprise's 3 of 10 is marked.
    ([7, 0, 3, 0, 0, 0, 0, 0, 0, 0], "neutral", {"neutral": .7, "surprise": .3}, {"neutral", "surprise"}),
    # Soft: 4, then three 2s -> 4 classes, dropped. Multi: 4 <= 5, dropped.
    ([4, 0, 0, 2, 2, 2, 0, 0, 0, 0], None, None, None),
    # Fear tied with unknown: soft 4 <= 5 dropped; multi marks fear + unknown, fear leads.
    ([0, 0, 0, 0, 0, 0, 4, 0, 4, 2], None, None, {"fear"}),
    # Fear 6 > 5 (kept although fear is column 6: the reference's "< emotion_count - 2" would drop it).
    ([0, 0, 0, 0, 0, 0, 6, 0, 4, 0], "fear", {"fear": 1}, {"fear"}),
    # Contempt 8 >= 7.5 of 10 stops at once: fear's 2 are cut.
    ([0, 0, 0, 0, 0, 0, 2, 8, 0, 0], "contempt", {"contempt": 1}, {"contempt"}),
    ([6, 0, 0, 0, 0, 0, 0, 4, 0, 0], "neutral", {"neutral": .6, "contempt": .4}, {"neutral", "contempt"}),
    # Unknown leads: dropped everywhere (multi marks unknown 7 + neutral 3, but unknown is the max).
    ([3, 0, 0, 0, 0, 0, 0, 0, 7, 0], None, None, None),
    ([0, 0, 0, 0, 0, 0, 0, 0, 3, 7], None, None, None),  # not a face
    ([1] * 10, None, None, None),  # every vote is an outlier
    # Total 9: a three-way tie at the top takes 3 classes and all 9 votes.
    ([3, 3, 3, 0, 0, 0, 0, 0, 1, 0], None, {"neutral": 1 / 3, "happy": 1 / 3, "surprise": 1 / 3},
     {"neutral", "happy", "surprise"}),
    # A five-way tie overshoots 3 classes: dropped; no class reaches 30%.
    ([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], None, None, None),
    # Multi's 30% is of all votes, unknown included: 2 < 3 (it would pass 30% of the 6 emotion votes).
    ([4, 0, 0, 2, 0, 0, 0, 0, 4, 0], None, None, {"neutral"}),
    # 17 votes (more than a real row), only to pin the 3-class stop: the tie takes 3 classes and 12 of
    # 17 votes (< 75%) and the trim stops there; taking anger too would make 4 classes and drop it.
    ([4, 4, 4, 3, 2, 0, 0, 0, 0, 0], None, {"neutral": 1 / 3, "happy": 1 / 3, "surprise": 1 / 3}, None),
]
RULE_VOTES = [row[0] for row in RULE_ROWS]


def test_majority_rule_table():
    keep, targets = ferplus.ferplus_targets(RULE_VOTES, "majority")
    assert keep.tolist() == [row[1] is not None for row in RULE_ROWS]
    assert [EMOTIONS[t] for t in targets[keep]] == [row[1] for row in RULE_ROWS if row[1] is not None]


@pytest.mark.parametrize("mode", ["probability", "crossentropy"])
def test_soft_rule_table(mode):
    keep, targets = ferplus.ferplus_targets(RULE_VOTES, mode)
    assert keep.tolist() == [row[2] is not None for row in RULE_ROWS]
    expected = [vec(**row[2]) for row in RULE_ROWS if row[2] is not None]
    assert targets.dtype.name == "float32"
    assert torch.allclose(torch.from_numpy(targets[keep]), torch.tensor(expected))


def test_multi_target_rule_table():
    keep, targets = ferplus.ferplus_targets(RULE_VOTES, "multi_target")
    assert keep.tolist() == [row[3] is not None for row in RULE_ROWS]
    expected = [vec(**{name: 1 for name in row[3]}) for row in RULE_ROWS if row[3] is not None]
    assert targets[keep].tolist() == expected


def test_rule_table_seven_classes():
    """classes=7 drops contempt after the 8-class rules: contempt-only images go, others lose the column."""
    rows = [[0, 0, 0, 0, 0, 0, 2, 8, 0, 0], [6, 0, 0, 0, 0, 0, 0, 4, 0, 0]]
    keep, targets = ferplus.ferplus_targets(rows, "majority", classes=7)
    assert keep.tolist() == [False, True] and targets[1] == EMOTIONS.index("neutral")
    for mode in ("crossentropy", "multi_target"):
        keep, targets = ferplus.ferplus_targets(rows, mode, classes=7)
        assert keep.tolist() == [False, True] and targets[1].tolist() == vec(neutral=1)[:7]


def test_seven_classes(root):
    val = load_ferplus(root, "val", classes=7)
    assert val.classes == list(EMOTIONS[:7])
    assert val.meta["index"].tolist() == [7] and val.targets.tolist() == [U]  # contempt image dropped
    soft = load_ferplus(root, "val", label_mode="probability", classes=7)
    assert soft.targets.shape == (2, 7)
    assert torch.allclose(soft.targets, torch.tensor([vec(neutral=1)[:7], vec(surprise=.6, fear=.4)[:7]]))
    multi = load_ferplus(root, "val", label_mode="multi_target", classes=7)
    assert multi.targets.tolist() == [vec(neutral=1)[:7], vec(surprise=1, fear=1)[:7]]
    with pytest.raises(ValueError, match="7 or 8"):
        load_ferplus(root, "val", classes=6)


def test_min_top_probability(root):
    train = load_ferplus(root, "train", label_mode="probability", min_top_probability=0.5)
    assert train.meta["index"].tolist() == [0, 2]  # the 0.4 tie is dropped
    test = load_ferplus(root, "test", label_mode="crossentropy", min_top_probability=0.5)
    assert test.meta["index"].tolist() == [8]  # 5/8 kept, 0.4 dropped


def test_registry(root):
    ds = load_dataset("ferplus", root, "val", label_mode="crossentropy")
    assert ds.name == "ferplus" and ds.split == "val" and ds.targets.shape == (2, 8)
    with pytest.raises(ValueError, match="label_mode"):
        load_dataset("ferplus", root, "val", label_mode="soft")


def test_label_file_in_other_folders(tmp_path):
    samples = make_samples()
    write_csv(tmp_path / "fer2013" / "fer2013.csv", samples)
    write_labels(tmp_path / "FERPlus" / "fer2013new.csv", samples)
    assert len(load_ferplus(tmp_path, "train")) == 2


def test_row_count_mismatch(root):
    write_labels(root / "ferplus" / "fer2013new.csv", make_samples()[:9], VOTES[:9])
    with pytest.raises(DatasetFormatError) as err:
        load_ferplus(root, "train")
    msg = str(err.value)
    assert "fer2013new.csv" in msg and "fer2013.csv" in msg and "9 rows" in msg and "10" in msg


def test_usage_mismatch(root):
    samples = make_samples()
    samples[3]["usage"] = "PublicTest"
    write_labels(root / "ferplus" / "fer2013new.csv", samples)
    with pytest.raises(DatasetFormatError, match="row 4"):
        load_ferplus(root, "train")


def test_bad_vote_is_named(root):
    path = root / "ferplus" / "fer2013new.csv"
    path.write_text(path.read_text().replace("Training,fer0000001.png,4,", "Training,fer0000001.png,x,"))
    with pytest.raises(DatasetFormatError, match=r"row 2"):
        load_ferplus(root, "train")


def test_image_folders_only(tmp_path):
    samples = make_samples()
    write_folders(tmp_path, samples)
    write_labels(tmp_path / "fer2013new.csv", samples)
    with pytest.raises(DatasetNotFoundError, match="row order") as err:
        load_ferplus(tmp_path, "train")
    assert "fer2013.csv" in str(err.value)


def test_missing_label_file(tmp_path):
    write_csv(tmp_path / "fer2013.csv", make_samples())
    with pytest.raises(DatasetNotFoundError) as err:
        load_ferplus(tmp_path, "train")
    msg = str(err.value)
    assert ferplus.FERPLUS_URL in msg and "download=True" in msg and str(tmp_path / "FERPlus") in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013.csv"]  # nothing written


def test_download_label_file(tmp_path, monkeypatch):
    samples = make_samples()
    site = tmp_path / "site"
    write_labels(site / "fer2013new.csv", samples)
    data = tmp_path / "data"
    write_csv(data / "fer2013.csv", samples)
    with serve_folder(site) as url:
        monkeypatch.setattr(ferplus, "FERPLUS_URL", f"{url}/fer2013new.csv")
        ds = load_ferplus(data, "train", download=True)
    assert ds.targets.tolist() == [H, N]
    assert (data / "fer2013new.csv").read_bytes() == (site / "fer2013new.csv").read_bytes()


# --- Microsoft's folders (generate_training_data.py's layout) ---------------------------------

FOLDER_OF = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
# As in the real files, names count only the rows FERPlus kept: row 5 has none, so row 6 is fer0000005.
KEPT_NAMES = [f"fer{n:07d}.png" for n in range(5)] + [""] + [f"fer{n:07d}.png" for n in range(5, 9)]


def write_folders_ms(base, samples, names=KEPT_NAMES, votes=VOTES):
    """What generate_training_data.py leaves: each named row's face as <folder>/<name>, rows in order (so
    a repeated name holds the later row's face), plus the folder's headerless label.csv (name, box, votes)."""
    rows = {}
    for s, name, v in zip(samples, names, votes):
        if name:
            folder = base / FOLDER_OF[s["usage"]]
            folder.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(folder / name), s["pixels"])
            rows.setdefault(folder, {})[name] = v
    for folder, labels in rows.items():
        (folder / "label.csv").write_text("".join(f'{n},"(0, 0, 48, 48)",{",".join(map(str, v))}\n'
                                                  for n, v in sorted(labels.items())))


@pytest.fixture
def ms(tmp_path):
    """Microsoft's folders with fer2013new.csv beside them under ``ms/ferplus``; the CSV join of the same rows under ``join``."""
    samples = make_samples()
    write_folders_ms(tmp_path / "ms" / "ferplus", samples)
    write_labels(tmp_path / "ms" / "ferplus" / "fer2013new.csv", samples, names=KEPT_NAMES)
    write_csv(tmp_path / "join" / "fer2013.csv", samples)
    write_labels(tmp_path / "join" / "fer2013new.csv", samples, names=KEPT_NAMES)
    return tmp_path


def _load_or_error(root, split, **kw):
    try:
        return load_ferplus(root, split, **kw)
    except ValueError as err:
        return str(err).split(" (")[0]  # "split ... has no images with ...", without the file named


def test_folders_majority(ms):
    train = load_ferplus(ms / "ms", "train")
    assert train.meta["image_name"].tolist() == ["fer0000000.png", "fer0000002.png"] and train.targets.tolist() == [H, N]
    assert torch.equal(train.images[1, 0], torch.from_numpy(make_samples()[2]["pixels"]))
    val = load_ferplus(ms / "ms", "val")
    assert val.meta["image_name"].tolist() == ["fer0000005.png", "fer0000006.png"] and val.targets.tolist() == [C, U]
    assert set(val.meta["usage"]) == {"PublicTest"} and val.meta["votes"].tolist() == [VOTES[6], VOTES[7]]
    assert "index" not in val.meta and "fer2013_label" not in val.meta  # no fer2013.csv row, no FER2013 to match


@pytest.mark.parametrize("mode", ferplus.LABEL_MODES)
def test_folders_give_the_csv_join_targets(ms, mode):
    """Where the votes agree, both vote files of the folders and the CSV join keep the same images with the
    same targets, in every label mode, classes=7|8 and min_top_probability; named by Image name, not row."""
    samples = make_samples()
    for classes in (7, 8):
        for mtp in (None, 0.5):
            for split in ("train", "val", "test"):
                kw = dict(label_mode=mode, classes=classes, min_top_probability=mtp)
                join = _load_or_error(ms / "join", split, **kw)
                for votes in ("label_csv", "fer2013new"):
                    got = _load_or_error(ms / "ms", split, votes=votes, **kw)
                    if isinstance(join, str):
                        assert got == join
                        continue
                    assert got.meta["image_name"].tolist() == join.meta["image_name"].tolist()
                    assert torch.equal(got.targets, join.targets) and torch.equal(got.images, join.images)
                    assert got.meta["votes"].tolist() == join.meta["votes"].tolist()
                    assert got.targets.dtype == join.targets.dtype and got.classes == join.classes
                    assert [samples[k]["usage"] for k in join.meta["index"]] == got.meta["usage"].tolist()


def test_vote_file_choice(ms):
    base = ms / "ms" / "ferplus"
    # label.csv predates fer2013new.csv: give image fer0000000 other (older) votes there, unknown-led.
    label = base / "FER2013Train" / "label.csv"
    label.write_text(label.read_text().replace('fer0000000.png,"(0, 0, 48, 48)",0,8,1,0,0,0,0,0,1,0',
                                               'fer0000000.png,"(0, 0, 48, 48)",0,4,0,0,0,0,0,0,6,0'))
    auto = load_ferplus(ms / "ms", "train")
    assert auto.targets.tolist() == [H, N] and set(auto.meta["vote_file"]) == {"fer2013new.csv"}
    assert f"votes from {base / 'fer2013new.csv'}" in auto.protocol
    old = load_ferplus(ms / "ms", "train", votes="label_csv")
    assert old.meta["image_name"].tolist() == ["fer0000002.png"] and old.targets.tolist() == [N]
    assert set(old.meta["vote_file"]) == {"label.csv"} and f"votes from {label}" in old.protocol
    assert torch.equal(old.images[0], auto.images[1])  # same image, same target where the votes agree
    (base / "fer2013new.csv").unlink()
    assert load_ferplus(ms / "ms", "train").meta["vote_file"].tolist() == ["label.csv"]  # auto: what is there
    with pytest.raises(DatasetNotFoundError, match="fer2013new.csv") as err:
        load_ferplus(ms / "ms", "train", votes="fer2013new")
    assert ferplus.FERPLUS_URL in str(err.value)
    with pytest.raises(ValueError, match="unknown votes 'new'; choose one of auto, fer2013new, label_csv"):
        load_ferplus(ms / "ms", "train", votes="new")
    with pytest.raises(DatasetNotFoundError, match="votes='label_csv' reads Microsoft's folders"):
        load_ferplus(ms / "join", "train", votes="label_csv")


def test_repeated_image_names(tmp_path):
    """fer2013new.csv names fer0006953 etc. twice: the later row is the face generate_training_data.py left
    on disk, in the folders and in the CSV join; the earlier row (another face, copied votes) is dropped."""
    samples, names, votes = make_samples(), list(KEPT_NAMES), [list(v) for v in VOTES]
    names[0], votes[0] = names[2], VOTES[2]  # a Training row out of sequence, a copy of row 2
    names[8], votes[8] = names[9], VOTES[9]  # and a PrivateTest pair, as fer0033120
    write_folders_ms(tmp_path / "ms", samples, names, votes)
    write_labels(tmp_path / "ms" / "fer2013new.csv", samples, votes, names)
    write_csv(tmp_path / "join" / "fer2013.csv", samples)
    write_labels(tmp_path / "join" / "fer2013new.csv", samples, votes, names)
    join = load_ferplus(tmp_path / "join", "train")
    assert join.meta["index"].tolist() == [2] and join.targets.tolist() == [N]
    for vote_file in ("fer2013new", "label_csv"):
        train = load_ferplus(tmp_path / "ms", "train", votes=vote_file)
        assert train.meta["image_name"].tolist() == [names[2]] and torch.equal(train.images, join.images)
        test = load_ferplus(tmp_path / "ms", "test", votes=vote_file, label_mode="probability")
        assert test.meta["image_name"].tolist() == [names[9]]
        assert torch.equal(test.images[0, 0], torch.from_numpy(samples[9]["pixels"]))
    assert load_ferplus(tmp_path / "join", "test", label_mode="probability").meta["index"].tolist() == [9]


@pytest.mark.parametrize("where", ["", "ferplus", "FERPlus"])
def test_folders_found_in_each_place(tmp_path, where):
    base = tmp_path / where if where else tmp_path
    write_folders_ms(base, make_samples())
    assert ferplus.locate_ferplus(tmp_path) == base
    assert load_ferplus(tmp_path, "val").meta["vote_file"].tolist() == ["label.csv"] * 2


def test_datasets_command_reports_the_layout(ms, capsys):
    from fercore.cli import main
    for root, expected in ((ms / "ms", {"layout": "folders", "votes": str(ms / "ms" / "ferplus" / "fer2013new.csv"),
                                        "folders": {"FER2013Train": 5, "FER2013Valid": 2, "FER2013Test": 2}}),
                           (ms / "join", {"layout": "csv_join", "votes": str(ms / "join" / "fer2013new.csv")})):
        assert main(["datasets", "--data-root", str(root)]) == 0
        row = {r["name"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}["ferplus"]
        assert row["found"] and {k: row.get(k) for k in expected} == expected
    (ms / "ms" / "ferplus" / "fer2013new.csv").unlink()
    row = {r["name"]: r for r in find_datasets(ms / "ms")}["ferplus"]
    assert row["votes"] == "each folder's label.csv"


def test_second_folder_load_decodes_nothing(ms, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_ferplus(ms / "ms", "train", cache_dir=cache)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded again despite an up-to-date cache"))
    for votes in ("fer2013new", "label_csv"):  # one cache of the pixels, whichever votes
        assert torch.equal(load_ferplus(ms / "ms", "train", cache_dir=cache, votes=votes).images, first.images)
    assert len(list(cache.glob("ferplus-folder-*.npz"))) == 1 and not list((ms / "ms").rglob("*.npz"))


# Bad input: each a one-line error naming the file and, where there is one, the row.

def _one_line_error(exc, root, **kw):
    with pytest.raises(exc) as err:
        load_ferplus(root, "train", **kw)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_label_csv_rows(ms):
    label = ms / "ms" / "ferplus" / "FER2013Train" / "label.csv"
    lines = label.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0]  # 9 votes
    label.write_text("\n".join(lines) + "\n")
    msg = _one_line_error(DatasetFormatError, ms / "ms", votes="label_csv")
    assert f"{label}, row 2: 9 vote counts, expected 10" in msg
    lines[1] = lines[1] + ",x"
    label.write_text("\n".join(lines) + "\n")
    assert f"{label}, row 2: vote counts" in _one_line_error(DatasetFormatError, ms / "ms", votes="label_csv")
    lines[1] = lines[0]
    label.write_text("\n".join(lines) + "\n")
    msg = _one_line_error(DatasetFormatError, ms / "ms", votes="label_csv")
    assert f"{label}, row 2: fer0000000.png is already on row 1" in msg


def test_png_named_but_missing(ms):
    base = ms / "ms" / "ferplus"
    (base / "FER2013Train" / "fer0000001.png").unlink()
    msg = _one_line_error(DatasetFormatError, ms / "ms", votes="label_csv")
    assert msg.startswith(f"{base / 'FER2013Train' / 'label.csv'}, row 2: fer0000001.png is not in {base / 'FER2013Train'}")
    msg = _one_line_error(DatasetFormatError, ms / "ms")  # fer2013new.csv's data row 2 names it too
    assert msg.startswith(f"{base / 'fer2013new.csv'}, row 2: fer0000001.png is not in") and "votes='label_csv'" in msg


def test_png_without_a_row(ms):
    base = ms / "ms" / "ferplus"
    extra = base / "FER2013Train" / "fer0099999.png"
    assert cv2.imwrite(str(extra), np.zeros((48, 48), np.uint8))
    for votes, file in (("label_csv", base / "FER2013Train" / "label.csv"), ("fer2013new", base / "fer2013new.csv")):
        assert _one_line_error(DatasetFormatError, ms / "ms", votes=votes).startswith(
            f"{extra}: no row of {file} names this image (1 PNG(s) without a row)")


def test_folder_without_label_csv(ms):
    base = ms / "ms" / "ferplus"
    (base / "FER2013Train" / "label.csv").unlink()
    assert len(load_ferplus(ms / "ms", "train")) == 2  # the votes of fer2013new.csv need no label.csv
    msg = _one_line_error(DatasetNotFoundError, ms / "ms", votes="label_csv")
    assert msg.startswith(f"FERPlus: {base / 'FER2013Train' / 'label.csv'} not found")
    (base / "fer2013new.csv").unlink()
    assert str(base / "FER2013Train" / "label.csv") in _one_line_error(DatasetNotFoundError, ms / "ms")


def test_missing_split_folder_and_bad_png(ms):
    base = ms / "ms" / "ferplus"
    for png in (base / "FER2013Test").iterdir():
        png.unlink()
    (base / "FER2013Test").rmdir()
    with pytest.raises(DatasetNotFoundError, match=r"FER2013Test not found \(split 'test' = PrivateTest\)"):
        load_ferplus(ms / "ms", "test")
    bad = base / "FER2013Train" / "fer0000002.png"
    bad.write_bytes(b"not a png")
    assert str(bad) in _one_line_error(DatasetFormatError, ms / "ms")


# --- fer2013_label for the folders, found by pixels (fercore.data.fer2013_match) -------------

def smooth_faces(n: int, seed: int = 1) -> list[np.ndarray]:
    """Distinct smooth 48x48 images with a little grain: JPEG rounds them by about a grey level, as real faces."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(30, 226, (n, 6, 6)).astype(np.float32)
    return [np.clip(cv2.resize(c, (48, 48), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 6, (48, 48)), 0, 255)
            .astype(np.uint8) for c in coarse]


FACE_A, FACE_B, FACE_C, FACE_D, FACE_E, STRANGER = smooth_faces(6)
# FER2013's image folders, ids that are not row numbers: face C twice with one label (still a match), face D
# twice with two labels (ambiguous), face E only in PublicTest.
FER_JPEGS = [("Training", "happy", 907, FACE_A), ("Training", "sad", 15, FACE_B), ("Training", "angry", 300, FACE_C),
             ("Training", "angry", 301, FACE_C), ("Training", "fear", 52, FACE_D), ("Training", "surprise", 8, FACE_D),
             ("PublicTest", "neutral", 77, FACE_E)]
# The FERPlus folders, in another order: name, Usage, face, then the fer2013_label and fer2013_match expected.
PLUS_PNGS = [("fer0000000.png", "Training", FACE_D, -1, "ambiguous"),
             ("fer0000001.png", "Training", FACE_A, H, "matched"),
             ("fer0000002.png", "Training", STRANGER, -1, "unmatched"),
             ("fer0000003.png", "Training", FACE_C, A, "matched"),
             ("fer0000004.png", "Training", FACE_B, S, "matched"),
             ("fer0000005.png", "Training", FACE_E, -1, "unmatched"),  # E is PublicTest in FER2013: never across Usages
             ("fer0000006.png", "PublicTest", FACE_E, N, "matched")]


@pytest.fixture
def px(tmp_path):
    """``data/ferplus/`` (Microsoft's folders) beside ``data/fer2013/`` (FER2013's JPEG folders, quality 95 as
    the real copy)."""
    data = tmp_path / "data"
    samples = [{"usage": usage, "pixels": face} for _, usage, face, _, _ in PLUS_PNGS]
    write_folders_ms(data / "ferplus", samples, [name for name, *_ in PLUS_PNGS], [[0, 10] + [0] * 8] * len(samples))
    for usage, label, image_id, face in FER_JPEGS:
        path = data / "fer2013" / ("train" if usage == "Training" else "test") / label / f"{usage}_{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), face, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return data


def _expected(usage):
    rows = [row for row in PLUS_PNGS if row[1] == usage]
    return [r[0] for r in rows], [r[3] for r in rows], [r[4] for r in rows]


def test_folders_get_fer2013_label_by_pixels(px):
    train = load_ferplus(px, "train")  # auto: px/fer2013 beside px/ferplus
    names, labels, statuses = _expected("Training")
    assert train.meta["image_name"].tolist() == names
    assert train.meta["fer2013_label"].tolist() == labels and train.meta["fer2013_match"].tolist() == statuses
    matched = train.meta["fer2013_match"] == "matched"
    assert train.meta["fer2013_file"][matched].tolist() == ["train/happy/Training_907.jpg",
                                                            "train/angry/Training_300.jpg", "train/sad/Training_15.jpg"]
    mad = train.meta["fer2013_mad"]
    assert (0.5 < mad[matched]).all() and (mad[matched] < 2).all(), mad  # JPEG rounding, not an exact copy
    assert (mad[train.meta["fer2013_match"] == "unmatched"] > 4 * fer2013_match.MAX_MAD).all()
    assert (f"fer2013_label matched by pixels to Training of {px / 'fer2013'}: 3 matched, 1 ambiguous "
            "(pixel-identical FER2013 copies disagree), 2 unmatched") in train.protocol
    val = load_ferplus(px, "val")
    assert val.meta["fer2013_label"].tolist() == [N]
    assert val.meta["fer2013_file"].tolist() == ["test/neutral/PublicTest_77.jpg"]
    assert "1 matched, 0 ambiguous" in val.protocol
    row = {r["name"]: r for r in find_datasets(px)}["ferplus"]
    assert row["fer2013_label"] == f"matched by pixels to {px / 'fer2013'}"


def test_where_fer2013_is_looked_for(px, tmp_path):
    _, labels, _ = _expected("Training")
    # root = the folder holding FER2013Train/: auto looks beside it; an explicit fer2013_root, folder or CSV file.
    assert load_ferplus(px / "ferplus", "train").meta["fer2013_label"].tolist() == labels
    fer_csv = [{"label": EMOTIONS.index(label), "usage": usage, "pixels": face} for usage, label, _, face in FER_JPEGS]
    write_csv(tmp_path / "kaggle" / "fer2013.csv", fer_csv)
    exact = load_ferplus(px, "train", fer2013_root=tmp_path / "kaggle" / "fer2013.csv")
    assert exact.meta["fer2013_label"].tolist() == labels
    assert (exact.meta["fer2013_mad"][exact.meta["fer2013_match"] != "unmatched"] == 0).all()  # the CSV's exact pixels
    assert exact.meta["fer2013_file"][1] == "fer2013.csv:row1"
    # None: no match; nothing found by auto: no key, as before; an explicit folder without FER2013: an error.
    assert "fer2013_label" not in load_ferplus(px, "train", fer2013_root=None).meta
    alone = tmp_path / "alone"
    (px / "ferplus").rename(alone)
    assert "fer2013_label" not in load_ferplus(alone, "train").meta
    assert "fer2013_label" not in {r["name"]: r for r in find_datasets(alone)}["ferplus"]
    assert load_ferplus(alone, "train", fer2013_root=px).meta["fer2013_label"].tolist() == labels
    with pytest.raises(DatasetNotFoundError, match=r"fer2013_root='.*nowhere': FER2013 not found"):
        load_ferplus(alone, "train", fer2013_root=tmp_path / "nowhere")


def test_match_is_cached_and_keyed_by_both_sources(px, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_ferplus(px, "train", cache_dir=cache).meta
    with monkeypatch.context() as m:
        m.setattr(fer2013_match, "nearest", lambda *a: pytest.fail("matched again despite an up-to-date cache"))
        m.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded again despite an up-to-date cache"))
        again = load_ferplus(px, "train", cache_dir=cache).meta
    assert all(np.array_equal(first[k], again[k]) for k in fer2013_match.KEYS)
    # A FER2013 image moved to another class folder is another source: matched again, with its new label.
    fer = px / "fer2013" / "train"
    (fer / "neutral").mkdir()
    (fer / "happy" / "Training_907.jpg").rename(fer / "neutral" / "Training_907.jpg")
    assert load_ferplus(px, "train", cache_dir=cache).meta["fer2013_label"].tolist()[1] == N
    assert len(list(cache.glob("ferplus-fer2013-match-*.npz"))) == 1  # the stale match was replaced


def test_match_without_candidates():
    """A FER2013 copy without that Usage (the folders' test/ often lacks PrivateTest): every face unmatched."""
    got = fer2013_match.match_fer2013(np.stack([FACE_A, FACE_B]), np.empty((0, 48, 48), np.uint8),
                                      np.empty(0, np.int64), np.empty(0, str))
    assert got["fer2013_label"].tolist() == [-1, -1] and got["fer2013_match"].tolist() == ["unmatched"] * 2
    assert got["fer2013_file"].tolist() == ["", ""] and np.isinf(got["fer2013_mad"]).all()


# --- the real folders (../shared/data/ferplus or $FERCORE_DATA/ferplus) -------------------------------

# Images each label mode keeps, measured on the real FER2013Train / FER2013Valid with each vote file.
# fer2013new.csv's majority keeps 25,060 Training *rows*; three of them repeat a name (one image each),
# so the folder holds 25,057 such images.
REAL_KEPT = {
    ("fer2013new", "train"): {"majority": 25_057, "probability": 27_953, "crossentropy": 27_953, "multi_target": 27_668},
    ("fer2013new", "val"): {"majority": 3_199, "probability": 3_505, "crossentropy": 3_505, "multi_target": 3_472},
    ("label_csv", "train"): {"majority": 25_045, "probability": 27_947, "crossentropy": 27_947, "multi_target": 27_667},
    ("label_csv", "val"): {"majority": 3_191, "probability": 3_508, "crossentropy": 3_508, "multi_target": 3_472},
}


@pytest.fixture
def real_ferplus(real_data):
    if ferplus.locate_folders(real_data) is None:
        pytest.skip(f"no FERPlus folders (FER2013Train/, FER2013Valid/) under {real_data}")
    return real_data


@pytest.mark.realdata
def test_real_ferplus_folders(real_ferplus):
    base = ferplus.locate_folders(real_ferplus)
    row = {r["name"]: r for r in find_datasets(real_ferplus)}["ferplus"]
    assert row["layout"] == "folders" and row["votes"] == str(base / "fer2013new.csv")
    assert row["folders"] == {"FER2013Train": 28_558, "FER2013Valid": 3_579, "FER2013Test": None}
    for folder, n in (("FER2013Train", 28_558), ("FER2013Valid", 3_579)):
        names, votes, _ = ferplus.read_folder_labels(base / folder / "label.csv")
        assert len(names) == len(votes) == n
    new = ferplus.read_label_file(base / "fer2013new.csv")
    named = new["image_name"] != ""
    counts = {u: int(((new["usage"] == u) & named).sum()) for u in ("Training", "PublicTest", "PrivateTest")}
    assert counts == {"Training": 28_561, "PublicTest": 3_579, "PrivateTest": 0}  # PrivateTest cut on purpose
    names, repeats = np.unique(new["image_name"][named], return_counts=True)
    assert names[repeats > 1].tolist() == ["fer0006953.png", "fer0008403.png", "fer0011785.png"]
    # The figures quoted for fer2013new.csv count its rows: 25,060 Training, 3,199 PublicTest.
    for usage, n in (("Training", 25_060), ("PublicTest", 3_199)):
        keep, _ = ferplus.ferplus_targets(new["votes"][(new["usage"] == usage) & named], "majority")
        assert keep.sum() == n


@pytest.mark.realdata
@pytest.mark.parametrize("votes", ["fer2013new", "label_csv"])
def test_real_ferplus_label_modes(real_ferplus, votes):
    for split in ("train", "val"):
        kept = {mode: load_ferplus(real_ferplus, split, votes=votes, label_mode=mode, fer2013_root=None)
                for mode in ferplus.LABEL_MODES}  # fer2013_root=None: the FER2013 match is tested below
        assert {m: len(ds) for m, ds in kept.items()} == REAL_KEPT[votes, split], split
        majority = kept["majority"]
        assert set(majority.meta["vote_file"]) == {"fer2013new.csv" if votes == "fer2013new" else "label.csv"}
        assert majority.images.shape[1:] == (1, 48, 48) and set(majority.meta["usage"]) == {fer2013_usage(split)}
    with pytest.raises(DatasetNotFoundError, match="FER2013Test not found"):
        load_ferplus(real_ferplus, "test", votes=votes)


def fer2013_usage(split: str) -> str:
    return {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}[split]


# FERPlus folders matched by pixels to the shared FER2013 JPEG folders (measured; see fercore.data.fer2013_match).
REAL_MATCH = {"train": {"matched": 28_462, "ambiguous": 96, "unmatched": 0},
              "val": {"matched": 3_577, "ambiguous": 2, "unmatched": 0}}
# Majority-labelled faces with a fer2013_label, and how many of those FER2013's label agrees with.
REAL_AGREE = {"train": (25_057, 24_993, 16_942), "val": (3_199, 3_197, 2_136)}


@pytest.mark.realdata
def test_real_fer2013_label_by_pixels(real_ferplus):
    source = fer2013.locate_fer2013(real_ferplus)
    if source is None or source.is_file():
        pytest.skip(f"no FER2013 image folders under {real_ferplus}")
    base = ferplus.locate_folders(real_ferplus)
    jpegs = load_fer2013(real_ferplus, "train")
    by_file = {f: k for k, f in enumerate(jpegs.meta["file"])}
    for split in ("train", "val"):
        folder, _ = ferplus._load_folder(base, real_ferplus, split, "auto", False, None)
        got = fer2013_match.match_folder(folder["images"], folder["image_name"], base / ferplus.FOLDERS[split],
                                         source, fer2013_usage(split))
        assert {s: int((got["fer2013_match"] == s).sum()) for s in fer2013_match.STATUSES} == REAL_MATCH[split]
        assert got["fer2013_mad"].max() < 1.6  # quality-95 JPEG rounding; MAX_MAD is 4
        if split == "train":
            # The shared JPEGs are libjpeg quality-95 encodings of the PNGs, so re-encoding a PNG gives its own
            # FER2013 image: the nearest is that one for all faces but one, a near-duplicate with the same label.
            own = {x.tobytes(): k for k, x in enumerate(jpegs.images[:, 0].numpy())}
            own = [own[cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], 0).tobytes()]
                   for face in folder["images"]]
            wrong = [k for k, f in enumerate(got["fer2013_file"]) if not torch.equal(jpegs.images[by_file[f]],
                                                                                      jpegs.images[own[k]])]
            assert len(wrong) == 1 and got["fer2013_label"][wrong[0]] == jpegs.targets[own[wrong[0]]]
        ds = load_ferplus(real_ferplus, split)
        labelled = ds.meta["fer2013_label"] >= 0
        agree = int((ds.meta["fer2013_label"][labelled] == ds.targets.numpy()[labelled]).sum())
        assert (len(ds), int(labelled.sum()), agree) == REAL_AGREE[split]  # 67.8%, 66.8%: the taggers moved a third
        assert f"{labelled.sum():,} matched, {len(ds) - labelled.sum():,} ambiguous" in ds.protocol
