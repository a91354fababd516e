"""FERPlus loader: a 10-row fer2013.csv and a fer2013new.csv with hand-chosen votes."""
from __future__ import annotations

import http.server
import threading
from functools import partial

import pytest
import torch

from test_fer2013 import make_samples, write_csv, write_folders

from fercore.data import DatasetFormatError, DatasetNotFoundError, ferplus, load_dataset
from fercore.data.ferplus import load_ferplus
from fercore.labels import EMOTIONS

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


def write_labels(path, samples, votes=VOTES):
    lines = [HEADER]
    for k, (s, v) in enumerate(zip(samples, votes)):
        name = "" if k == 5 else f"fer{k:07d}.png"
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
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(ferplus, "FERPLUS_URL", f"http://127.0.0.1:{httpd.server_address[1]}/fer2013new.csv")
        ds = load_ferplus(data, "train", download=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert ds.targets.tolist() == [H, N]
    assert (data / "fer2013new.csv").read_bytes() == (site / "fer2013new.csv").read_bytes()
