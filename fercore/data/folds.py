"""Subject-independent folds for the small posed datasets (CK+, JAFFE).

A model that has seen a person's face in training recognises that person's expressions far
more easily, so CK+ and JAFFE are evaluated with folds of *subjects*: every image of one
person lies in exactly one fold. For fold ``k`` of ``n``:

- ``test`` is fold ``k``;
- ``val`` is fold ``(k + 1) % n``: checkpoints are chosen on held-out subjects, never on test;
- ``train`` is the other ``n - 2`` folds.

Running ``k = 0 .. n-1`` tests every subject exactly once. With as many folds as subjects
(JAFFE: 10) this is leave-one-subject-out.
"""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test", "all")


def subject_folds(subjects, n_folds: int, seed: int = 0) -> dict:
    """Map each subject to a fold ``0 .. n_folds-1``; fold sizes differ by at most one subject.

    Deterministic: the sorted unique subjects are shuffled by ``seed`` and dealt round-robin.
    """
    unique = sorted(set(np.asarray(subjects).tolist()))
    if n_folds < 3:
        raise ValueError(f"n_folds must be at least 3 (one fold to test, one to select on, the rest to train), "
                         f"got {n_folds}")
    if len(unique) < n_folds:
        raise ValueError(f"{len(unique)} subjects cannot fill {n_folds} folds; use folds <= {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[j]: i % n_folds for i, j in enumerate(order)}


def fold_mask(subjects, split: str, fold: int, n_folds: int, seed: int = 0) -> np.ndarray:
    """Boolean mask over images: which belong to ``split`` of fold ``fold`` (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1} for {n_folds} folds, got {fold}")
    subjects = np.asarray(subjects)
    folds = subject_folds(subjects, n_folds, seed)
    of_image = np.array([folds[s] for s in subjects.tolist()], dtype=np.int64)
    if split == "all":
        return np.ones(len(subjects), dtype=bool)
    if split == "test":
        return of_image == fold
    if split == "val":
        return of_image == (fold + 1) % n_folds
    return (of_image != fold) & (of_image != (fold + 1) % n_folds)


def fold_protocol(n_folds: int, fold: int, n_subjects: int | None = None, split: str | None = None) -> str:
    """One sentence saying how fold ``fold`` splits the subjects, for ``FERDataset.protocol``
    (split ``"all"``: that no fold is held out)."""
    if split == "all":
        whose = f"all {n_subjects} subjects" if n_subjects is not None else "every subject"
        return f"every face of {whose}, no fold held out (split 'all': for a model trained on other data)"
    over = ""
    if n_subjects is not None:
        over = f" over {n_subjects} subjects" + (" (leave-one-subject-out)" if n_subjects == n_folds else "")
    return (f"subject-independent {n_folds}-fold{over}: fold {fold} tests on subjects of fold {fold}, "
            f"selects on fold {(fold + 1) % n_folds}, trains on the other {n_folds - 2}; "
            "no subject is in two of train/val/test")
