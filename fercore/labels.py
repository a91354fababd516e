"""Canonical label space and each dataset's mapping into it.

Every loader returns targets in FER2013's order, so a model trained on one dataset can
be evaluated on another. FERPlus and CK+ add a 7th class, Contempt.
"""
from __future__ import annotations

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
EMOTIONS_7 = EMOTIONS[:7]
NUM_CLASSES_7 = 7
NUM_CLASSES_8 = 8

# FER2013: its `emotion` codes already are the canonical order.
FER2013_CODES = {i: i for i in range(7)}
# The image-folder copy of FER2013 names class folders in lower case.
FER2013_FOLDERS = {name: i for i, name in enumerate(EMOTIONS_7)}


def label_name(index: int) -> str:
    """Name of a canonical label index, e.g. ``label_name(3) == "happy"``."""
    if not 0 <= int(index) < len(EMOTIONS):
        raise ValueError(f"label index {index} is outside 0..{len(EMOTIONS) - 1}")
    return EMOTIONS[int(index)]


def classes_for(num_classes: int) -> tuple[str, ...]:
    """The canonical class names for a 7- or 8-class problem."""
    if num_classes not in (7, 8):
        raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")
    return EMOTIONS[:num_classes]

# JAFFE: the expression code in a file name such as ``KA.AN1.39.tiff``.
JAFFE_CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}

# CK+: the float code in ``Emotion/.../*_emotion.txt`` (CK+ README: 0 neutral, 1 anger,
# 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise).
CKPLUS_CODES = {0: 6, 1: 0, 2: 7, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}
# The CK+48 copy names one folder per emotion.
CKPLUS_FOLDERS = {"anger": 0, "disgust": 1, "fear": 2, "happy": 3, "sadness": 4, "surprise": 5,
                  "neutral": 6, "contempt": 7}

# FERG-DB: the suffix of ``<character>_<emotion>`` folders.
FERG_EMOTIONS = {"anger": 0, "disgust": 1, "fear": 2, "joy": 3, "sadness": 4, "surprise": 5, "neutral": 6}

# FERPlus: the vote columns of ``fer2013new.csv`` in file order; the first 8 are emotions,
# mapped into the canonical order by FERPLUS_TO_CANONICAL ("unknown" and "NF" = not a face
# are not classes).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF")
FERPLUS_TO_CANONICAL = {0: 6, 1: 3, 2: 5, 3: 4, 4: 0, 5: 1, 6: 2, 7: 7}


def compare_labels(dataset) -> dict:
    """FER2013's one label against FERPlus's majority label on the same faces.

    ``dataset``: a FERPlus split with hard targets (``label_mode="majority"``) whose
    ``meta["fer2013_label"]`` holds FER2013's label (-1 where it is unknown: a face of
    Microsoft's folders that no FER2013 image matches, or several that disagree). Returns the
    class counts under each labelling, the share of faces on which they agree, and the cross
    table (rows: FER2013's label, columns: FERPlus's), all as JSON-ready lists and numbers.
    """
    import numpy as np

    if "fer2013_label" not in dataset.meta:
        raise ValueError(f"{dataset.name} holds no FER2013 labels to compare (meta 'fer2013_label'); "
                         "ferplus and simulated_ferplus do")
    new = np.asarray(dataset.targets)
    if new.ndim != 1:
        raise ValueError(f"{dataset.name} has soft targets; load it with label_mode='majority' to compare labels")
    old, names = np.asarray(dataset.meta["fer2013_label"]), list(dataset.classes)
    known = old >= 0
    table = np.zeros((len(EMOTIONS_7), len(names)), np.int64)
    np.add.at(table, (old[known], new[known]), 1)
    return {"faces": len(new), "with_fer2013_label": int(known.sum()),
            "agreement": float((old[known] == new[known]).mean()) if known.any() else None,
            "fer2013_counts": dict(zip(EMOTIONS_7, table.sum(1).tolist())),
            "ferplus_counts": dict(zip(names, np.bincount(new, minlength=len(names)).tolist())),
            "crosstab": {"rows": list(EMOTIONS_7), "columns": names, "counts": table.tolist()},
            "protocol": dataset.protocol}
