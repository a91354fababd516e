"""Subject-independent folds: deterministic, balanced, disjoint, and covering every subject."""
from __future__ import annotations

import numpy as np
import pytest

from fercore.data.folds import fold_mask, fold_protocol, subject_folds

# 13 subjects with 1..4 images each (31 images), in a scrambled order.
SUBJECTS = np.random.default_rng(1).permutation([f"S{k:03d}" for k in range(13) for _ in range(1 + k % 4)])


def test_subject_folds_are_balanced_and_deterministic():
    folds = subject_folds(SUBJECTS, 5, seed=0)
    assert set(folds) == set(SUBJECTS.tolist()) and set(folds.values()) == set(range(5))
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 13
    assert subject_folds(SUBJECTS, 5, seed=0) == folds
    assert subject_folds(SUBJECTS[::-1], 5, seed=0) == folds  # order of images does not matter
    assert subject_folds(SUBJECTS, 5, seed=1) != folds


def test_leave_one_subject_out_when_folds_equal_subjects():
    folds = subject_folds(SUBJECTS, 13)
    assert sorted(folds.values()) == list(range(13))


@pytest.mark.parametrize("n_folds", [3, 5, 13])
def test_splits_are_subject_disjoint_and_each_subject_is_tested_once(n_folds):
    tested = []
    for fold in range(n_folds):
        masks = {s: fold_mask(SUBJECTS, s, fold, n_folds) for s in ("train", "val", "test", "all")}
        assert masks["all"].all()
        total = masks["train"].astype(int) + masks["val"] + masks["test"]
        assert (total == 1).all()  # every image in exactly one of train/val/test
        groups = {s: set(SUBJECTS[masks[s]].tolist()) for s in ("train", "val", "test")}
        assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
        assert not (groups["val"] & groups["test"]) and groups["train"] and groups["val"]
        folds = subject_folds(SUBJECTS, n_folds)
        assert {folds[s] for s in groups["test"]} == {fold}
        assert {folds[s] for s in groups["val"]} == {(fold + 1) % n_folds}
        tested += sorted(groups["test"])
    assert sorted(tested) == sorted(set(SUBJECTS.tolist()))


def test_val_of_last_fold_wraps_around():
    folds = subject_folds(SUBJECTS, 4)
    val = set(SUBJECTS[fold_mask(SUBJECTS, "val", 3, 4)].tolist())
    assert val == {s for s, f in folds.items() if f == 0}


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="13 subjects cannot fill 20 folds; use folds <= 13"):
        subject_folds(SUBJECTS, 20)
    with pytest.raises(ValueError, match="at least 3"):
        subject_folds(SUBJECTS, 2)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.4 for 5 folds, got 5"):
        fold_mask(SUBJECTS, "test", 5, 5)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.4 for 5 folds, got -1"):
        fold_mask(SUBJECTS, "test", -1, 5)
    with pytest.raises(ValueError, match="valid splits: train, val, test, all"):
        fold_mask(SUBJECTS, "validation", 0, 5)


def test_protocol_sentence():
    assert fold_protocol(10, 3) == ("subject-independent 10-fold: fold 3 tests on subjects of fold 3, selects on "
                                    "fold 4, trains on the other 8; no subject is in two of train/val/test")
    assert "over 10 subjects (leave-one-subject-out): fold 9 tests on subjects of fold 9, selects on fold 0" \
        in fold_protocol(10, 9, 10)
    assert "over 118 subjects:" in fold_protocol(10, 0, 118)
