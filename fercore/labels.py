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
