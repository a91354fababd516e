"""FERG-DB (Aneja et al., ACCV 2016): 55,767 rendered faces of 6 cartoon characters, 7 emotions.

The release (https://grail.cs.washington.edu/projects/deepexpr/ferg-2d-db.html, by request)
unpacks to ``FERG_DB_256/<character>/<character>_<emotion>/*.png``: characters aia, bonnie,
jules, malcolm, mery, ray; emotion suffixes anger, disgust, fear, joy, neutral, sadness,
surprise (fercore.labels.FERG_EMOTIONS). Images are 256x256 RGBA or RGB. The transparent
background is composited onto *white* (the faces are drawn with dark outlines, which stay
visible on white), turned grey and resized to 48x48 with cv2.INTER_AREA.

Two protocols (``split_mode``):
- ``"random"``: the papers' 80/10/10 split by image from a seeded permutation. The same
  characters, and near-duplicate renderings, land in train and test, so accuracy is inflated.
- ``"character"``: held-out characters. Fold ``k`` tests on the ``k``-th character (sorted
  names), selects on the next one, trains on the rest: does the model generalise to a face
  it has never seen?
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..labels import EMOTIONS_7, FERG_EMOTIONS
from . import DatasetFormatError, DatasetNotFoundError, not_found_message, register_dataset
from .base import FERDataset
from .cache import cached_arrays
from .images import SIZE, list_files, read_gray, resize, subfolders

SPLITS = ("train", "val", "test", "all")
SPLIT_MODES = ("random", "character")
VAL_FRACTION = TEST_FRACTION = 0.1
KEYS = ("images", "targets", "character", "files")  # what a cache file must hold
SOURCE = "https://grail.cs.washington.edu/projects/deepexpr/ferg-2d-db.html (FERG-DB, Aneja et al. 2016; by request)"


def _candidates(root: Path) -> list[Path]:
    return [root / "FERG_DB_256", root / "FERG_DB_256" / "FERG_DB_256", root]


def _is_character(folder: Path) -> bool:
    """A character folder holds ``<name>_<emotion>`` folders; anything else beside it is ignored."""
    prefix = folder.name.lower() + "_"
    return any(p.name.lower().startswith(prefix) for p in subfolders(folder))


def locate_ferg(root) -> Path | None:
    """The first candidate folder that holds character folders, or None."""
    if root is None:
        return None
    for folder in _candidates(Path(root).expanduser()):
        if folder.is_dir() and any(_is_character(c) for c in subfolders(folder)):
            return folder
    return None


@register_dataset("ferg", splits=SPLITS, locate=locate_ferg, source=SOURCE)
def load_ferg(root, split: str = "train", *, split_mode: str = "random", fold: int = 0, seed: int = 0,
              cache_dir=None, regions_bug=None) -> FERDataset:
    """Load ``split`` (train, val, test or all) under ``split_mode`` "random" (uses ``seed``) or
    "character" (uses ``fold``). ``meta``: ``character`` and ``file`` (path under FERG_DB_256).
    ``regions_bug`` cuts the Prior Attention blocks with the authors' bugs (fercore.faces.regions)."""
    from ..faces.regions import bug_meta, check_bugs

    check_bugs(regions_bug)  # a typo fails before any decoding
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"unknown split_mode {split_mode!r} for ferg; valid: {', '.join(SPLIT_MODES)}")
    base = locate_ferg(root)
    if base is None:
        raise DatasetNotFoundError(_not_found_message(root))
    files = _list_images(base)
    arrays = cached_arrays("ferg", files, lambda: _decode(base, files), cache_dir,
                           extra={"size": SIZE, "background": 255}, root=base, keys=KEYS)
    if split_mode == "random":
        index, protocol = _random_split(len(arrays["targets"]), split, seed)
    else:
        index, protocol = _character_split(arrays["character"], split, fold)
    return FERDataset(
        torch.from_numpy(arrays["images"][index]).unsqueeze(1),
        torch.from_numpy(arrays["targets"][index]).long(),
        EMOTIONS_7,
        {"character": arrays["character"][index], "file": arrays["files"][index]} | bug_meta(len(index), regions_bug),
        name="ferg", split=split, protocol=protocol,
    )


def _random_split(n: int, split: str, seed: int) -> tuple[np.ndarray, str]:
    n_val, n_test = round(n * VAL_FRACTION), round(n * TEST_FRACTION)
    order = np.random.default_rng(seed).permutation(n)
    parts = {"train": order[:n - n_val - n_test], "val": order[n - n_val - n_test:n - n_test],
             "test": order[n - n_test:], "all": order}
    protocol = (f"FERG random 80/10/10 split by image (seed {seed}), as in Aneja et al. 2016: it puts the same "
                "characters and near-duplicate frames in train and test, which inflates accuracy")
    return np.sort(parts[split]), protocol


def _character_split(characters: np.ndarray, split: str, fold: int) -> tuple[np.ndarray, str]:
    names = sorted(set(characters.tolist()))
    if len(names) < 3:
        raise ValueError(f"split_mode='character' needs at least 3 characters, found {len(names)}: {', '.join(names)}")
    if not 0 <= fold < len(names):
        raise ValueError(f"fold must be in 0..{len(names) - 1} (one per character: {', '.join(names)}), got {fold}")
    test, val = names[fold], names[(fold + 1) % len(names)]
    masks = {"test": characters == test, "val": characters == val, "all": np.ones(len(characters), bool)}
    masks["train"] = ~masks["test"] & ~masks["val"]
    protocol = (f"FERG held-out character, fold {fold} of {len(names)}: tests on {test}, selects on {val}, "
                f"trains on the other {len(names) - 2} characters; no character is in two of train/val/test")
    return np.flatnonzero(masks[split]), protocol


def _list_images(base: Path) -> list[str]:
    """The path under ``base`` of every PNG in ``<character>/<character>_<emotion>/``, sorted."""
    files = []
    for character in filter(_is_character, subfolders(base)):
        for folder in subfolders(character):
            _emotion_of(folder)  # an unknown folder stops here, before any decoding
            files += [f"{character.name}/{folder.name}/{name}" for name in list_files(folder, (".png",))]
    return sorted(files)


def _emotion_of(folder: Path) -> int:
    prefix, _, emotion = folder.name.lower().partition("_")
    if prefix != folder.parent.name.lower() or emotion not in FERG_EMOTIONS:
        raise DatasetFormatError(f"{folder}: unknown emotion folder; expected {folder.parent.name}_<emotion> "
                                 f"with <emotion> one of {', '.join(FERG_EMOTIONS)}")
    return FERG_EMOTIONS[emotion]


def _read_on_white(path: Path) -> np.ndarray:
    """The image as 48x48 grey, with any transparency composited onto white."""
    return resize(read_gray(path, "a 256x256 RGBA or RGB PNG", on_white=True))


def _decode(base: Path, files: list[str]) -> dict[str, np.ndarray]:
    images = np.empty((len(files), SIZE, SIZE), np.uint8)
    for i, rel in enumerate(tqdm(files, desc="decoding FERG images", unit="img", leave=False)):
        images[i] = _read_on_white(base / rel)
    return {"images": images,
            "targets": np.array([_emotion_of((base / rel).parent) for rel in files], np.int64),
            "character": np.array([rel.split("/", 1)[0] for rel in files], dtype=str),
            "files": np.array(files, dtype=str)}


def _not_found_message(root) -> str:
    expected = f"FERG_DB_256/<character>/<character>_<emotion>/*.png (emotions {', '.join(FERG_EMOTIONS)})"
    return not_found_message("FERG", root, _candidates, expected, f"Request FERG-DB at {SOURCE} and unpack it there")
