"""CK+, the extended Cohn-Kanade dataset (Lucey et al., CVPR workshops 2010).

593 posed sequences of 123 subjects, each from a neutral face to the peak of an expression;
327 sequences carry an emotion label. Two layouts are read as users have them:

- the original release (https://www.jeffcohn.net/Resources/, by request):
  ``cohn-kanade-images/S005/001/S005_001_00000001.png ...`` and
  ``Emotion/S005/001/S005_001_00000011_emotion.txt``, one float such as ``   3.0000000e+00``
  (0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise;
  fercore.labels.CKPLUS_CODES). As in most papers, only labelled sequences are used: their
  last three frames take the sequence's emotion and, with ``neutral=True``, their first frame
  is a neutral face. Frames are 640x490 (a few 640x480 or RGB), turned grey, cut with the
  *fixed box* ``CROP`` (not a face detector; the faces pipeline, a later issue, may replace
  it) and resized to 48x48 with cv2.INTER_AREA.
- the common ``CK+48/<emotion>/S010_004_00000017.png`` copy, already cropped to 48x48, with
  folders anger, contempt, disgust, fear, happy, sadness, surprise (and neutral if present).

Either may sit in ``root``, ``root/CK+``, ``root/ckplus`` or ``root/ckplus48``, or in a
``CK+48/`` folder inside any of them (``root/CK+48/``, ``root/ckplus48/CK+48/``).

``classes=8`` keeps the canonical order with contempt at index 7; 7-class runs drop the
contempt sequences (all their frames, the neutral first frame too). Folds are over subjects
(fercore.data.folds) and do not depend on ``classes`` or ``neutral``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..labels import CKPLUS_CODES, CKPLUS_FOLDERS, EMOTIONS, classes_for
from . import DatasetFormatError, DatasetNotFoundError, not_found_message, register_dataset
from .base import FERDataset
from .cache import cached_arrays
from .folds import SPLITS, fold_mask, fold_protocol
from .images import SIZE, crop_resize, list_files, read_gray, subfolders

# (left, top, right, bottom) as fractions: on 640x490 frames x 160..480, y 78..397, a
# 320-pixel square around the centred face, forehead to chin, most of the background cut.
CROP = (0.25, 0.16, 0.75, 0.81)
FRAME = re.compile(r"^(?P<subject>S\d+)_(?P<seq>\d+)_(?P<frame>\d+)\.png$", re.IGNORECASE)
PEAK_FRAMES = 3
CONTEMPT = EMOTIONS.index("contempt")
NEUTRAL = EMOTIONS.index("neutral")
CODES_TEXT = "0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise"
KEYS = ("images", "targets", "onset", "files", "subject", "sequence", "frame")  # what a cache file must hold
SOURCE = "https://www.jeffcohn.net/Resources/ (CK+, Lucey et al. 2010; by request)"


def _candidates(root: Path) -> list[Path]:
    # Each of these may hold either layout itself or a CK+48/ folder (e.g. ROOT/ckplus48/CK+48/).
    return [folder for base in (root / "CK+", root / "ckplus", root / "ckplus48", root)
            for folder in (base, base / "CK+48")]


def _layout(folder: Path) -> str | None:
    if (folder / "cohn-kanade-images").is_dir() and (folder / "Emotion").is_dir():
        return "original"
    if folder.is_dir() and any((folder / name).is_dir() for name in CKPLUS_FOLDERS):
        return "ck48"
    return None


def locate_ckplus(root) -> Path | None:
    """The first candidate folder holding either layout (the original wins), or None."""
    if root is None:
        return None
    return next((f for f in _candidates(Path(root).expanduser()) if _layout(f)), None)


@register_dataset("ckplus", splits=SPLITS, locate=locate_ckplus, source=SOURCE)
def load_ckplus(root, split: str = "train", *, fold: int = 0, folds: int = 10, seed: int = 0, classes: int = 8,
                neutral: bool = True, folds_by: str = "subject", cache_dir=None) -> FERDataset:
    """Load ``split`` (train, val, test or all) of subject-independent fold ``fold`` of ``folds``.

    ``meta``: ``subject`` ("S005"), ``sequence`` ("S005_001"), ``file`` (path under the CK+
    folder) and ``frame`` (the frame number in the file name).

    ``folds_by="image"`` deals single images into the folds at random instead, the protocol of
    many CK+ papers: one person's frames (the three peak frames of a sequence, nearly identical)
    then land in train and test. It exists to measure that leak; never report it as a result.
    """
    if classes not in (7, 8):
        raise ValueError(f"classes must be 7 or 8 for ckplus, got {classes}")
    if folds_by not in ("subject", "image"):
        raise ValueError(f"folds_by must be 'subject' or 'image', got {folds_by!r}")
    base = locate_ckplus(root)
    if base is None:
        raise DatasetNotFoundError(_not_found_message(root))
    layout = _layout(base)
    items, label_files = _list_original(base) if layout == "original" else _list_ck48(base)
    files = [item[0] for item in items] + label_files
    arrays = cached_arrays(f"ckplus-{layout}", files, lambda: _decode(base, items, layout), cache_dir,
                           extra={"crop": CROP if layout == "original" else None, "size": SIZE}, root=base, keys=KEYS)
    keep = np.ones(len(arrays["targets"]), dtype=bool)
    if classes == 7:
        keep &= ~np.isin(arrays["sequence"], arrays["sequence"][arrays["targets"] == CONTEMPT])
    if not neutral:
        keep &= ~arrays["onset"]
    # Folds over every subject, before any filtering: the same folds for every setting.
    groups = arrays["subject"] if folds_by == "subject" else np.arange(len(arrays["subject"]))
    mask = keep & fold_mask(groups, split, fold, folds, seed)
    protocol = fold_protocol(folds, fold, len(set(arrays["subject"].tolist())), split)
    if folds_by == "image" and split != "all":
        protocol = (f"LEAKY image-level {folds}-fold (random images, so one subject's frames are in train and "
                    f"test): fold {fold} tests, fold {(fold + 1) % folds} selects, the rest train")
    if classes == 7:
        protocol += "; 7 classes: contempt sequences dropped"
    return FERDataset(
        torch.from_numpy(arrays["images"][mask]).unsqueeze(1),
        torch.from_numpy(arrays["targets"][mask]).long(),
        classes_for(classes),
        {k: arrays[k][mask] for k in ("subject", "sequence", "frame")} | {"file": arrays["files"][mask]},
        name="ckplus", split=split, protocol=protocol,
    )


# An item is (path relative to base, canonical label, is a neutral onset frame).

def _list_original(base: Path) -> tuple[list[tuple[str, int, bool]], list[str]]:
    """Items of every labelled sequence, plus the emotion files read (paths relative to ``base``)."""
    items, label_files = [], []
    for seq_dir in (s for subject in subfolders(base / "Emotion") for s in subfolders(subject)):
        texts = list_files(seq_dir, (".txt",))
        if not texts:
            continue  # an unlabelled sequence
        if len(texts) > 1:
            raise DatasetFormatError(f"{seq_dir}: {len(texts)} emotion files; expected one per sequence")
        label = _read_emotion(seq_dir / texts[0])
        rel_dir = seq_dir.relative_to(base / "Emotion").as_posix()
        image_dir = base / "cohn-kanade-images" / rel_dir
        frames = list_files(image_dir, (".png",)) if image_dir.is_dir() else []
        if not frames:
            raise DatasetFormatError(f"{seq_dir / texts[0]}: labels a sequence with no images; "
                                     f"expected PNG frames in {image_dir}")
        rel = [f"cohn-kanade-images/{rel_dir}/{name}" for name in frames]
        items += [(r, label, False) for r in rel[-PEAK_FRAMES:]]
        if len(frames) > PEAK_FRAMES:  # a shorter sequence has no frame left to call neutral
            items.append((rel[0], NEUTRAL, True))
        label_files.append(f"Emotion/{rel_dir}/{texts[0]}")
    return items, label_files


def _read_emotion(path: Path) -> int:
    text = path.read_text(errors="replace").strip()
    try:
        value = float(text)
        code = int(value) if value == int(value) else -1
    except (ValueError, OverflowError):  # not a number, nan or inf
        code = -1
    if code not in CKPLUS_CODES:
        raise DatasetFormatError(f"{path}: {text[:40]!r} is not a CK+ emotion code; expected one number "
                                 f"such as '   3.0000000e+00' ({CODES_TEXT})")
    return CKPLUS_CODES[code]


def _list_ck48(base: Path) -> tuple[list[tuple[str, int, bool]], list[str]]:
    items = []
    for folder in subfolders(base):
        label = CKPLUS_FOLDERS.get(folder.name.lower())
        if label is None:
            raise DatasetFormatError(f"{folder}: unknown emotion folder; expected one of {', '.join(CKPLUS_FOLDERS)}")
        items += [(f"{folder.name}/{name}", label, label == NEUTRAL) for name in list_files(folder, (".png",))]
    return items, []


def _decode(base: Path, items, layout: str) -> dict[str, np.ndarray]:
    images = np.empty((len(items), SIZE, SIZE), np.uint8)
    subject, sequence, frame = [], [], []
    for i, (rel, _, _) in enumerate(tqdm(items, desc="decoding CK+ images", unit="img", leave=False)):
        path = base / rel
        match = FRAME.match(path.name)
        if match is None:
            raise DatasetFormatError(f"{path}: not a CK+ frame name; expected S<subject>_<sequence>_<frame>.png, "
                                     "e.g. S010_004_00000017.png")
        image = read_gray(path, "a grayscale or RGB PNG frame")
        # The original frames need the face cut out; CK+48 images are faces already.
        images[i] = crop_resize(image, CROP if layout == "original" else (0, 0, 1, 1))
        subject.append(match["subject"].upper())
        sequence.append(f"{match['subject'].upper()}_{match['seq']}")
        frame.append(int(match["frame"]))
    return {"images": images, "targets": np.array([t for _, t, _ in items], np.int64),
            "onset": np.array([o for _, _, o in items], bool), "files": np.array([r for r, _, _ in items], dtype=str),
            "subject": np.array(subject, dtype=str), "sequence": np.array(sequence, dtype=str),
            "frame": np.array(frame, np.int64)}


def _not_found_message(root) -> str:
    expected = ("cohn-kanade-images/<subject>/<sequence>/*.png with Emotion/<subject>/<sequence>/*_emotion.txt, "
                f"or CK+48/<emotion>/*.png (emotion folders {', '.join(CKPLUS_FOLDERS)})")
    return not_found_message("CK+", root, _candidates, expected, f"Request CK+ at {SOURCE} and place it there")
