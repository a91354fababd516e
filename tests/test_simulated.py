"""The simulated FER2013 + FERPlus files: real formats, FER2013's imbalance, noisy single labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fercore.data import load_dataset
from fercore.data.simulated import FER2013_TRAIN_COUNTS, rater_votes, write_fer2013_ferplus
from fercore.labels import EMOTIONS, FERPLUS_COLUMNS

SIZES = {"Training": 400, "PublicTest": 80, "PrivateTest": 80}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    write_fer2013_ferplus(root, SIZES, seed=1)
    return root


def test_files_load_through_the_real_loaders(root):
    header = (root / "fer2013new.csv").read_text().splitlines()[0]
    assert header == "Usage,Image name," + ",".join(FERPLUS_COLUMNS)
    assert (root / "fer2013.csv").read_text().splitlines()[0] == "emotion,pixels,Usage"
    offset = 0
    for split, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        fer = load_dataset("fer2013", root, split, cache_dir=False)
        plus = load_dataset("ferplus", root, split, cache_dir=False)
        assert len(fer) == SIZES[usage] and 0 < len(plus) <= len(fer)
        assert fer.images.shape[1:] == (1, 48, 48) and fer.images.float().std() > 10  # faces, not blanks
        # meta["index"] is the row in fer2013.csv: the joined image is that row's image
        rows = np.asarray(plus.meta["index"]) - offset
        assert (fer.images[rows] == plus.images).all()
        assert (fer.targets[rows].numpy() == np.asarray(plus.meta["fer2013_label"])).all()
        offset += SIZES[usage]


def test_classes_follow_fer2013_imbalance_and_votes_are_ten_per_face(root):
    text = (root / "fer2013new.csv").read_text().splitlines()[1:]
    votes = np.array([[int(v) for v in line.split(",")[2:]] for line in text])
    assert (votes.sum(1) == 10).all()
    fer = load_dataset("fer2013", root, "train", cache_dir=False)
    counts = np.array([fer.class_counts()[c] for c in EMOTIONS[:7]])
    # disgust is rare and happy common, as in the real Training split
    assert counts[1] < 0.1 * counts[3]
    share = np.array(FER2013_TRAIN_COUNTS) / sum(FER2013_TRAIN_COUNTS)
    assert np.abs(counts / counts.sum() - share).max() < 0.1


def test_single_fer2013_label_is_noisier_than_the_ferplus_majority(root):
    plus = load_dataset("ferplus", root, "train", cache_dir=False)
    old, new = np.asarray(plus.meta["fer2013_label"]), plus.targets.numpy()
    agree = (old == new).mean()
    assert 0.4 < agree < 0.98  # they mostly agree, but not always: that is FERPlus's point


def test_rater_votes_grow_surer_with_intensity():
    rng = np.random.default_rng(0)
    happy = EMOTIONS.index("happy")
    weak = rater_votes(np.full(300, happy), np.full(300, 0.2), rng)
    strong = rater_votes(np.full(300, happy), np.full(300, 1.0), rng)
    col = FERPLUS_COLUMNS.index("happiness")
    assert weak[:, col].mean() < strong[:, col].mean() and strong[:, col].mean() > 8.5
    assert (weak.sum(1) == 10).all() and weak[:, FERPLUS_COLUMNS.index("unknown")].sum() > 0


def test_never_overwrites_and_rejects_unknown_usage(root, tmp_path):
    before = (root / "fer2013.csv").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="fer2013.csv"):
        write_fer2013_ferplus(root, SIZES)
    assert (root / "fer2013.csv").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="unknown Usage value.*'Test'"):
        write_fer2013_ferplus(tmp_path / "new", {"Test": 10})


def test_registered_loader_writes_once_into_the_cache_never_the_data_root(tmp_path, monkeypatch):
    import fercore.data.simulated as sim

    data_root, cache = tmp_path / "data", tmp_path / "cache"
    data_root.mkdir()
    calls = []
    real_write = sim.write_fer2013_ferplus
    monkeypatch.setattr(sim, "write_fer2013_ferplus", lambda root, seed=0: calls.append(root) or real_write(root, SIZES, seed))
    val = load_dataset("simulated_ferplus", data_root, "val", cache_dir=cache, classes=7)
    test = load_dataset("simulated_ferplus", data_root, "test", cache_dir=cache, classes=7)
    assert len(calls) == 1 and list(data_root.iterdir()) == []
    assert val.name == test.name == "simulated_ferplus" and val.protocol.startswith("SIMULATED")
    assert val.num_classes == 7 and 0 < len(val) <= SIZES["PublicTest"]
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["simulated_ferplus-seed0"]  # no temp folder left
    other = load_dataset("simulated_ferplus", None, "val", cache_dir=cache, seed=1)
    assert len(calls) == 2 and other.num_classes == 8 and not torch.equal(other.images[:5], val.images[:5])


def test_interrupted_write_leaves_no_half_written_folder(tmp_path, monkeypatch):
    import fercore.data.simulated as sim

    def fail(root, seed=0):
        (root / "fer2013.csv").write_text("emotion,pixels,Usage\n")
        raise KeyboardInterrupt
    monkeypatch.setattr(sim, "write_fer2013_ferplus", fail)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("simulated_ferplus", None, "val", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
