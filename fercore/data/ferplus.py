"""FERPlus (Barsoum et al., 2016, arXiv:1608.01041): FER2013's images relabelled by 10 taggers.

Two layouts are read, as users have them:

- **Microsoft's folders**, as its ``generate_training_data.py`` writes them: ``FER2013Train/``,
  ``FER2013Valid/``, ``FER2013Test/`` (splits train/val/test = FER2013's Training, PublicTest,
  PrivateTest), each holding 48x48 grey PNGs and a headerless ``label.csv`` whose lines are
  ``fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0``: file name, face box (always the whole
  image in Microsoft's files; not used), then the ten vote counts in the order of
  ``fer2013new.csv`` below. Found in ``root``, ``root/ferplus`` or ``root/FERPlus``; when they are
  there they are used, whatever else is.
- **The CSV join**: FER2013 as a CSV (``fer2013.csv``, ``.csv.gz`` or ``icml_face_data.csv``)
  plus Microsoft's ``fer2013new.csv``
  (``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``),
  which has one row per row of ``fer2013.csv``, in the same order; a row with an empty
  ``Image name`` is an image FERPlus dropped (no PNG is written for it). The two files are joined
  row by row; FER2013's image-folder copy has lost the row order and cannot be joined.

Which votes (``votes``). Microsoft's ``label.csv`` files date from 2016; ``fer2013new.csv`` was
revised in March 2017 and its votes differ for about 4% of the images (on the real files,
majority keeps 25,045 / 3,191 Training / PublicTest images with ``label.csv``'s votes and
25,060 / 3,199 ``fer2013new.csv`` rows, which are 25,057 / 3,199 images: see the repeated names
below). ``votes="auto"`` (default) takes the newer
``fer2013new.csv`` when it lies beside the folders (or wherever the CSV join looks for it), else
each folder's ``label.csv``; ``"fer2013new"`` and ``"label_csv"`` insist on one. The CSV join
has only ``fer2013new.csv``. The file used is named in ``meta["vote_file"]`` and in ``protocol``
(which ``metrics.json`` records).

Joining ``fer2013new.csv`` to the folders goes by ``Image name``, restricted to the rows whose
Usage is the folder's, never by the number in the name: names count only the rows FERPlus
kept, so ``ferNNNNNNN`` is not a row of ``fer2013.csv`` once a row has been skipped. Four names
(``fer0006953``, ``fer0008403``, ``fer0011785`` in Training, ``fer0033120`` in PrivateTest) are
given to two rows each (the three Training pairs carry the same votes twice); one row of each
pair sits out of sequence among other numbers. ``generate_training_data.py`` writes the rows in
order, so the later row's face overwrites the earlier one's PNG: in both layouts the *last* row
of a repeated name within a Usage is the image, and the earlier row is dropped (in the CSV join
its pixels are another face, which would carry the copied votes).

Label modes (``label_mode``) follow Microsoft's reference reader (github.com/microsoft/FERPlus,
``src/ferplus.py``, ``FERPlusReader._process_data`` / ``load_folders`` / ``_process_target``).
First, in every mode, a column with a single vote gets 0 votes (outlier removal). ``total``
below is the sum of these cleaned counts over all 10 columns, unknown and NF included; an image
whose processed votes end up led by ``unknown`` or ``NF`` is dropped, and those two columns are
never classes.

- ``"majority"``: keep an image only if its top column has more than half of ``total`` and is
  an emotion; target = that class index, ``(N,)`` long.
- ``"probability"`` and ``"crossentropy"``: Barsoum's trimmed distribution. Take the columns in
  falling vote order, a whole tie at a time, until they hold at least 75% of ``total``, or 3
  classes are taken (checked before each step), or ``unknown``/``NF`` is reached; reaching
  unknown/NF after some emotion was taken stops without taking it, reaching it first leaves it
  the top (the image is dropped). Drop the image if the taken votes are no more than half of
  ``total`` or more than 3 classes were taken (a tie can overshoot). Target = the taken emotion
  votes normalised, ``(N, K)`` float summing to 1 (columns that were not taken are 0). Both modes
  return the same targets; they differ in the loss: *probability* samples one hard label from
  the distribution each time an image is seen, *crossentropy* uses it as a soft target.
- ``"multi_target"``: mark every column with at least 30% of ``total``; drop the image if the
  marked votes are no more than half of ``total`` or if the first column with the most marked
  votes is unknown/NF. Target = ``(N, K)`` float multi-hot of the marked emotions
  (unknown/NF marks are discarded). Train with a loss that accepts any marked class, e.g.
  Barsoum's ``-log max_k(target_k * p_k)``.

Deliberate differences from the reference reader:

- Its latest ``load_folders`` keeps an image only when the arg-max is ``< emotion_count - 2``,
  i.e. below 6 with 8 emotions, which also drops every image led by fear or contempt; its
  comment ("not unknown or non-face") and the earlier version (``< emotion_count``) show the
  intent, which we follow: only unknown/NF-led images are dropped.
- *probability*: the reference reader draws the hard label itself for each mini-batch; we
  return the distribution and leave the draw to the training loop (a dataset holds fixed
  targets).
- *multi_target*: the reference smooths the multi-hot to ``0.999 * hot + 0.001`` so the log in
  its loss stays finite; we return exact 0/1 and leave any epsilon to the loss.
- Splits: the reference always labels PublicTest and PrivateTest with *majority*, whatever the
  training mode. Here ``label_mode`` applies to the split you load, because the loader cannot
  tell training from evaluation; ``eval_label_mode="majority"`` gives ``val`` and ``test``
  majority labels as the reference does, so numbers are comparable with Barsoum's.
- ``classes=7`` and ``min_top_probability`` are fercore additions (the reference always has the
  8 emotions), described below.

``classes=8`` (default) uses fercore's canonical order (angry, disgust, fear, happy, sad,
surprise, neutral, contempt); ``classes=7`` drops contempt after the rules above: majority drops
contempt-labelled images, the soft modes drop the contempt column and renormalise (an image left
with no votes is dropped), multi_target drops the contempt mark (an image left with no mark is
dropped).

``min_top_probability=p`` keeps only images whose top emotion holds more than ``p`` of the
(cleaned, emotion-only, ``classes`` columns) vote distribution, e.g. 0.5 for the subset the
Ohlsen report trained on.

``meta``, both layouts: ``usage``, ``image_name``, ``votes`` (``(N, 10)`` raw counts in file
column order, unknown and NF included) and ``vote_file`` (``fer2013new.csv`` or ``label.csv``).
The CSV join adds ``index`` (0-based row in fer2013.csv) and ``fer2013_label`` (the original
FER2013 label, canonical index). The folders hold neither; ``fer2013_label`` is found for them
by matching pixels when FER2013 (any layout ``load_fer2013`` reads) is at hand: with
``fer2013_root="auto"`` (default) where ``locate_fer2013`` finds it in ``root`` or ``root/fer2013``
(or, when ``root`` itself holds ``FER2013Train/``, in its parent: ``data/fer2013`` beside
``data/ferplus``), and nothing is added when it is not there; an explicit ``fer2013_root`` must
hold it; ``None`` skips the match. The match adds ``fer2013_match`` (matched, ambiguous or
unmatched; the label is -1 for the last two), ``fer2013_file`` and ``fer2013_mad``, and its
counts to ``protocol``: see ``fercore.data.fer2013_match``. A folder's images are in file-name
order.
"""
from __future__ import annotations

import csv
from pathlib import Path

from tqdm.auto import tqdm

import numpy as np
import torch

from ..labels import EMOTIONS, FERPLUS_COLUMNS, FERPLUS_TO_CANONICAL, classes_for
from . import DatasetFormatError, DatasetNotFoundError, register_dataset
from . import fer2013, fer2013_match
from .base import FERDataset
from .cache import cached_arrays
from .download import download as _download
from .images import list_files, read_gray, resize

LABEL_FILE = "fer2013new.csv"
LABEL_DIRS = ("", "ferplus", "FERPlus", "fer2013")
FERPLUS_URL = "https://raw.githubusercontent.com/microsoft/FERPlus/master/fer2013new.csv"
# No checksum is pinned: the file's published hash is not recorded here. download() checks one
# when this is set.
FERPLUS_SHA256: str | None = None
HEADER = ("Usage", "Image name") + FERPLUS_COLUMNS
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
# Microsoft's generate_training_data.py layout: one folder per Usage, PNGs + a headerless label.csv.
FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
FOLDER_DIRS = ("", "ferplus", "FERPlus")
FOLDER_LABELS = "label.csv"
VOTE_FILES = ("auto", "fer2013new", "label_csv")
_VOTE_NOTES = {LABEL_FILE: "Microsoft's March 2017 revision",  # for the protocol sentence
               FOLDER_LABELS: "Microsoft's 2016 votes, older than fer2013new.csv"}
PROTOCOL = "train on Training, select on PublicTest (val), report PrivateTest (test) once"
SOURCE = (f"Microsoft's folders {', '.join(FOLDERS.values())}, written from fer2013.csv by "
          f"generate_training_data.py (https://github.com/microsoft/FERPlus); or FER2013 as fer2013.csv "
          f"({fer2013.KAGGLE_CHALLENGE}) plus Microsoft's {LABEL_FILE} ({FERPLUS_URL})")
# Column k of the canonical 8 classes takes FERPlus column ORDER[k].
ORDER = np.array([j for c in range(8) for j, cc in FERPLUS_TO_CANONICAL.items() if cc == c])
# Canonical index of FERPlus emotion column j (the inverse of ORDER).
TO_CANONICAL = np.array([FERPLUS_TO_CANONICAL[j] for j in range(8)])


def _label_candidates(root: Path) -> list[Path]:
    return [(root / d / LABEL_FILE) if d else root / LABEL_FILE for d in LABEL_DIRS]


def locate_label_file(root) -> Path | None:
    """Where ``fer2013new.csv`` is: ``root``, ``root/ferplus``, ``root/FERPlus`` or ``root/fer2013``."""
    if root is None:
        return None
    return next((p for p in _label_candidates(Path(root).expanduser()) if p.is_file()), None)


def locate_folders(root) -> Path | None:
    """The folder holding ``FER2013Train/``, ``FER2013Valid/`` or ``FER2013Test/`` (``root``, ``root/ferplus``, ``root/FERPlus``)."""
    if root is None:
        return None
    root = Path(root).expanduser()
    bases = [root / d if d else root for d in FOLDER_DIRS]
    return next((b for b in bases if any((b / f).is_dir() for f in FOLDERS.values())), None)


def locate_ferplus(root) -> Path | None:
    """The folder holding Microsoft's folders; else the label file, when FER2013 is there as a CSV; else None."""
    folders = locate_folders(root)
    if folders is not None:
        return folders
    labels = locate_label_file(root)
    source = fer2013.locate_fer2013(root)
    return labels if labels is not None and source is not None and source.is_file() else None


def describe_ferplus(root) -> dict:
    """The layout ``load_ferplus`` would read under ``root`` and, with ``votes="auto"``, which vote file."""
    base = locate_folders(root)
    if base is None:
        where = locate_ferplus(root)
        return {"layout": "csv_join", "votes": str(where)} if where else {}
    new = _new_label_file(base, root)
    fer = _fer2013_for_labels(root, base, "auto")
    return {"layout": "folders",
            "folders": {f: len(list_files(base / f, (".png",))) if (base / f).is_dir() else None
                        for f in FOLDERS.values()},
            "votes": str(new) if new else f"each folder's {FOLDER_LABELS}",
            **({"fer2013_label": f"matched by pixels to {fer}"} if fer else {})}


def _new_label_file(base: Path, root: Path) -> Path | None:
    """``fer2013new.csv`` beside the folders, else where the CSV join looks for it."""
    return base / LABEL_FILE if (base / LABEL_FILE).is_file() else locate_label_file(root)


def read_label_file(path: Path) -> dict[str, np.ndarray]:
    """``usage``, ``image_name`` and raw ``votes`` (N, 10) of a ``fer2013new.csv``; bad rows are named."""
    path = Path(path)
    reader = csv.reader(fer2013.read_lines(path))  # read_lines names a line that is not UTF-8
    header = tuple(h.strip() for h in next(reader, []))
    if header != HEADER:
        raise DatasetFormatError(f"{path}: header {','.join(header)!r}; expected {','.join(HEADER)}")
    usages, names, votes = [], [], []
    for row in reader:
        if not row or row == [""]:
            continue
        where = f"{path}, row {len(usages) + 1} (line {reader.line_num})"
        if len(row) != len(HEADER):
            raise DatasetFormatError(f"{where}: {len(row)} fields, expected {len(HEADER)} ({','.join(HEADER)})")
        usage = row[0].strip()
        if usage not in fer2013.USAGES.values():
            raise DatasetFormatError(f"{where}: Usage {usage!r} is not one of {', '.join(fer2013.USAGES.values())}")
        counts = [c.strip() for c in row[2:]]
        if not all(c.isdigit() for c in counts):
            raise DatasetFormatError(f"{where}: vote counts {counts} must be whole numbers >= 0")
        usages.append(usage)
        names.append(row[1].strip())
        votes.append([int(c) for c in counts])
    return {"usage": np.array(usages, dtype=str), "image_name": np.array(names, dtype=str),
            "votes": np.array(votes, np.int64).reshape(-1, len(FERPLUS_COLUMNS))}


def _check_join(labels: dict, pixels: dict, label_path: Path, csv_path: Path) -> None:
    n_l, n_p = len(labels["usage"]), len(pixels["usage"])
    if n_l != n_p:
        raise DatasetFormatError(
            f"{label_path} has {n_l} rows but {csv_path} has {n_p}; FERPlus rows must match fer2013.csv "
            f"row for row (first row without a partner: {min(n_l, n_p) + 1}). Use the original fer2013.csv.")
    bad = np.flatnonzero(labels["usage"] != pixels["usage"])
    if len(bad):
        k = bad[0]
        raise DatasetFormatError(
            f"{label_path} and {csv_path} disagree at row {k + 1}: Usage {labels['usage'][k]!r} vs "
            f"{pixels['usage'][k]!r} ({len(bad)} rows disagree); the files must be in the same row order.")


N_EMOTIONS = 8  # the first 8 columns of fer2013new.csv; then unknown and NF


def _trimmed_distribution(v: np.ndarray) -> np.ndarray | None:
    """Barsoum's probability/crossentropy votes for one image's cleaned 10 counts, or None (dropped).

    Columns are taken in falling vote order, a whole tie at a time, while the taken votes are
    under 75% of the total, fewer than 3 classes are taken and unknown/NF has not been reached.
    """
    total = v.sum()
    left = v.copy()
    taken = np.zeros_like(v)
    covered, count = 0.0, 0
    while covered < 0.75 * total and count < 3:
        level = left.max()
        hit_non_emotion = False
        for j in np.flatnonzero(left == level):
            if j >= N_EMOTIONS:
                hit_non_emotion = True
                if taken.sum() == 0:  # unknown/NF leads: the image is dropped below
                    taken[j] = level
                break
            taken[j], left[j] = level, 0
            covered += level
            count += 1
        if hit_non_emotion:
            break
    if taken.sum() <= 0.5 * total or count > 3 or taken.argmax() >= N_EMOTIONS:
        return None
    return taken[:N_EMOTIONS]


def ferplus_targets(votes: np.ndarray, label_mode: str = "majority", classes: int = 8,
                    min_top_probability: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, targets)`` from raw ``votes`` (N, 10) in file column order; see the module doc.

    ``targets`` has a row for every image (rows of dropped images are meaningless).
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown label_mode {label_mode!r}; choose one of {', '.join(LABEL_MODES)}")
    classes_for(classes)  # validates 7 or 8
    v = np.asarray(votes, np.float64).reshape(-1, len(FERPLUS_COLUMNS)).copy()
    v[v <= 1] = 0  # Barsoum: a single vote is an outlier
    total = v.sum(1)
    keep = total > 0
    if label_mode == "majority":
        top = v.argmax(1)
        keep &= (v.max(1) > 0.5 * total) & (top < N_EMOTIONS)
        targets = np.full(len(v), -1, np.int64)
        targets[keep] = TO_CANONICAL[top[keep]]
        if classes == 7:
            keep &= targets != 7
    else:
        if label_mode == "multi_target":
            marked = np.where(v >= 0.3 * total[:, None], v, 0.0)
            keep &= (marked.sum(1) > 0.5 * total) & (marked.argmax(1) < N_EMOTIONS)
            emotions = (marked[:, :N_EMOTIONS] > 0).astype(np.float64)
        else:
            rows, inverse = np.unique(v, axis=0, return_inverse=True)  # many images share a vote row
            trimmed = [_trimmed_distribution(r) for r in rows]
            row_kept = np.array([t is not None for t in trimmed], bool)
            row_dist = np.array([np.zeros(N_EMOTIONS) if t is None else t for t in trimmed]).reshape(-1, N_EMOTIONS)
            inverse = inverse.reshape(-1)
            keep &= row_kept[inverse]
            emotions = row_dist[inverse]
        emotions = emotions[:, ORDER][:, :classes]  # canonical order; classes=7 drops contempt
        sums = emotions.sum(1)
        keep &= sums > 0
        if label_mode == "multi_target":
            targets = emotions.astype(np.float32)
        else:
            targets = (emotions / np.where(sums > 0, sums, 1)[:, None]).astype(np.float32)
    if min_top_probability is not None:
        dist = v[:, ORDER][:, :classes]
        s = dist.sum(1)
        share = dist.max(1) / np.where(s > 0, s, 1)
        keep &= share > float(min_top_probability)
    return keep, targets


@register_dataset("ferplus", splits=tuple(fer2013.USAGES), locate=locate_ferplus, source=SOURCE,
                  describe=describe_ferplus)
def load_ferplus(root, split: str, *, label_mode: str = "majority", classes: int = 8,
                 min_top_probability: float | None = None, votes: str = "auto", eval_label_mode: str | None = None,
                 fer2013_root="auto", download: bool = False, cache_dir=None) -> FERDataset:
    """Load ``split`` of FERPlus (``train``/``val``/``test`` = Training/PublicTest/PrivateTest).

    Reads Microsoft's folders when they are under ``root``, else joins ``fer2013.csv`` with
    ``fer2013new.csv``; ``votes`` (``"auto"``, ``"fer2013new"``, ``"label_csv"``) picks the vote
    file, see the module doc. ``download=True`` fetches ``fer2013new.csv`` from ``FERPLUS_URL`` when
    it is wanted and absent (no checksum is pinned: ``FERPLUS_SHA256`` is None, so the file is
    not verified). FER2013's pixels are never downloaded. See the module doc for the label modes.

    ``eval_label_mode`` replaces ``label_mode`` for the ``val`` and ``test`` splits, as Barsoum's
    reference does with ``"majority"``: train on the votes, select and report on hard labels.

    ``fer2013_root`` (folders only; the CSV join has its fer2013.csv's labels): where FER2013 is, to
    give ``meta["fer2013_label"]`` by matching pixels (module doc); ``"auto"`` looks from ``root``
    and adds nothing if FER2013 is not there, ``None`` skips it. Matching FER2013Train takes about
    10 s the first time (plus decoding FER2013 once) and 1 s once cached.
    """
    if eval_label_mode is not None and split != "train":
        label_mode = eval_label_mode
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown label_mode {label_mode!r}; choose one of {', '.join(LABEL_MODES)}")
    if votes not in VOTE_FILES:
        raise ValueError(f"unknown votes {votes!r}; choose one of {', '.join(VOTE_FILES)}")
    classes_for(classes)
    if root is None:
        raise DatasetNotFoundError(f"FERPlus needs root=<folder holding {', '.join(FOLDERS.values())}, or "
                                   f"fer2013.csv and {LABEL_FILE}>. {SOURCE}.")
    root = Path(root).expanduser()
    base = locate_folders(root)
    if base is not None:
        arrays, vote_file = _load_folder(base, root, split, votes, download, cache_dir)
        fer_source = _fer2013_for_labels(root, base, fer2013_root)
        if fer_source is not None:
            arrays.update(fer2013_match.match_folder(arrays["images"], arrays["image_name"], base / FOLDERS[split],
                                                     fer_source, fer2013.USAGES[split], cache_dir))
    elif votes == "label_csv":
        raise DatasetNotFoundError(
            f"FERPlus: votes='label_csv' reads Microsoft's folders, but none of {', '.join(FOLDERS.values())} "
            f"is in {', '.join(str(root / d) if d else str(root) for d in FOLDER_DIRS)}.")
    else:
        arrays, vote_file, fer_source = *_load_join(root, split, download, cache_dir), None
    keep, targets = ferplus_targets(arrays["votes"], label_mode, classes, min_top_probability)
    keep &= arrays.pop("usable")
    index = np.flatnonzero(keep)
    if len(index) == 0:
        raise ValueError(f"split {split!r} of FERPlus has no images with label_mode={label_mode!r}, "
                         f"classes={classes}, min_top_probability={min_top_probability} ({vote_file})")
    images = arrays.pop("images")
    target = torch.from_numpy(targets[index])
    meta = {k: v[index] for k, v in arrays.items()}
    meta["vote_file"] = np.full(len(index), vote_file.name)
    where = f"images from {base / FOLDERS[split]}" if base is not None else "images joined row by row from fer2013.csv"
    if fer_source is not None:
        where += "; " + fer2013_match.summary(meta, fer_source, fer2013.USAGES[split])
    return FERDataset(
        torch.from_numpy(images[index]).unsqueeze(1),
        target.long() if target.ndim == 1 else target.float(),
        EMOTIONS[:classes], meta, name="ferplus", split=split, label_mode=label_mode,
        protocol=f"{PROTOCOL}; votes from {vote_file} ({_VOTE_NOTES[vote_file.name]}), {where}",
    )



def _fer2013_for_labels(root: Path, base: Path, fer2013_root) -> Path | None:
    """The FER2013 source whose pixels give the folders their ``fer2013_label``; see ``load_ferplus``."""
    if fer2013_root is None:
        return None
    root = Path(root).expanduser()
    if fer2013_root == "auto":  # data/ferplus/FER2013Train/ often has data/fer2013/ beside it
        return fer2013.locate_fer2013(root) or (fer2013.locate_fer2013(root.parent) if base == root else None)
    source = fer2013.locate_fer2013(fer2013_root)
    if source is None:
        raise DatasetNotFoundError(f"fer2013_root={str(fer2013_root)!r}: " + fer2013._not_found_message(fer2013_root))
    return source


def _superseded(usage: np.ndarray, names: np.ndarray) -> np.ndarray:
    """True for every row of ``fer2013new.csv`` whose (Usage, Image name) comes again on a later row.

    generate_training_data.py writes the rows in order, so the later row's face is the PNG that
    bears the name; the earlier row's votes are a copy. Empty names are never superseded.
    """
    keys = np.char.add(np.char.add(usage, "/"), names)
    _, last = np.unique(keys[::-1], return_index=True)
    out = np.ones(len(keys), bool)
    out[len(keys) - 1 - last] = False
    return out & (names != "")


def _load_join(root: Path, split: str, download: bool, cache_dir) -> tuple[dict, Path]:
    """Every row of fer2013.csv joined with fer2013new.csv (``usable``: named rows of ``split``), and the label file."""
    source = fer2013.locate_fer2013(root)
    if source is None:
        raise DatasetNotFoundError(fer2013._not_found_message(root) + f" FERPlus needs fer2013.csv beside "
                                   f"{LABEL_FILE}, or Microsoft's folders {', '.join(FOLDERS.values())}.")
    if not source.is_file():
        raise DatasetNotFoundError(
            f"FERPlus: found only FER2013's image folders at {source}; they have no row order, so "
            f"{LABEL_FILE} cannot be joined to them. Place fer2013.csv (or icml_face_data.csv) from "
            f"{fer2013.KAGGLE_CHALLENGE} in {root}, or Microsoft's folders {', '.join(FOLDERS.values())}.")
    label_path = locate_label_file(root) or _fetch_label_file(root, root, download)
    labels = read_label_file(label_path)
    pixels = fer2013._load_all(source, cache_dir)
    _check_join(labels, pixels, label_path, source)
    usable = ((labels["usage"] == fer2013.USAGES[split]) & (labels["image_name"] != "")
              & ~_superseded(labels["usage"], labels["image_name"]))
    return {"images": pixels["images"], "usable": usable,
            "usage": labels["usage"], "index": np.arange(len(usable)), "fer2013_label": pixels["targets"],
            "votes": labels["votes"], "image_name": labels["image_name"]}, label_path


def _fetch_label_file(root: Path, into: Path, download: bool) -> Path:
    """``download=True``: fetch fer2013new.csv into ``into``; else say where it was looked for."""
    if not download:
        looked = ", ".join(str(p) for p in _label_candidates(root))
        raise DatasetNotFoundError(
            f"FERPlus label file not found: looked for {looked}. Download {FERPLUS_URL} and place it "
            f"in {into}, or pass download=True to fetch it there.")
    return _download(FERPLUS_URL, into / LABEL_FILE, FERPLUS_SHA256)


# --- Microsoft's folders -------------------------------------------------------------------

def _load_folder(base: Path, root: Path, split: str, votes: str, download: bool, cache_dir) -> tuple[dict, Path]:
    """One folder's PNGs (decoded once, then cached) with their votes, and the vote file's path."""
    folder = base / FOLDERS[split]
    if not folder.is_dir():
        found = [f for f in FOLDERS.values() if (base / f).is_dir()]
        raise DatasetNotFoundError(
            f"FERPlus: {folder} not found (split {split!r} = {fer2013.USAGES[split]}); {base} holds "
            f"{', '.join(found)}. Microsoft's generate_training_data.py writes it from fer2013.csv.")
    new = _new_label_file(base, root)
    if votes == "fer2013new" or (votes == "auto" and (new is not None or download)):
        vote_path = new or _fetch_label_file(root, base, download)
        names, counts, rows = _new_votes(vote_path, fer2013.USAGES[split])
        hint = " (pass votes='label_csv' to use the folder's label.csv)"
    else:
        vote_path = folder / FOLDER_LABELS
        if not vote_path.is_file():
            raise DatasetNotFoundError(
                f"FERPlus: {vote_path} not found; Microsoft's folders hold their votes there (or place "
                f"{LABEL_FILE} from {FERPLUS_URL} beside {folder.name}/).")
        names, counts, rows = read_folder_labels(vote_path)
        hint = ""
    # Match the vote rows to the PNGs by file name before decoding anything, so that a mismatch is
    # reported at once, naming the file and row, not after 28k decodes.
    pngs = list_files(folder, (".png",))
    where = {name: k for k, name in enumerate(names)}
    on_disk = set(pngs)
    missing = [k for k, name in enumerate(names) if name not in on_disk]
    if missing:
        k = missing[0]
        raise DatasetFormatError(f"{vote_path}, row {rows[k]}: {names[k]} is not in {folder} "
                                 f"({len(missing)} named image(s) missing){hint}")
    unnamed = [name for name in pngs if name not in where]
    if unnamed:
        raise DatasetFormatError(f"{folder / unnamed[0]}: no row of {vote_path} names this image "
                                 f"({len(unnamed)} PNG(s) without a row){hint}")
    # Keyed by the PNGs alone: both vote files share one cache of the pixels.
    images = cached_arrays("ferplus-folder", pngs, lambda: _decode_folder(folder, pngs), cache_dir,
                           root=folder, keys=("images",))["images"]
    order = [where[name] for name in pngs]
    return {"images": images, "usable": np.ones(len(pngs), bool),
            "usage": np.full(len(pngs), fer2013.USAGES[split]), "votes": counts[order],
            "image_name": np.array(pngs, dtype=str)}, vote_path


def read_folder_labels(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    """File names, raw votes ``(N, 10)`` and row numbers of a headerless ``label.csv``; a bad row is named."""
    names, votes, rows = [], [], []
    seen: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if not row or row == [""]:
                    continue
                where = f"{path}, row {reader.line_num}"
                counts = [c.strip() for c in row[2:]]
                if len(counts) != len(FERPLUS_COLUMNS):
                    raise DatasetFormatError(f"{where}: {len(counts)} vote counts, expected {len(FERPLUS_COLUMNS)} "
                                             f"after the file name and face box ({','.join(FERPLUS_COLUMNS)})")
                if not all(c.isdigit() for c in counts):
                    raise DatasetFormatError(f"{where}: vote counts {counts} must be whole numbers >= 0")
                name = row[0].strip()
                if name in seen:
                    raise DatasetFormatError(f"{where}: {name} is already on row {seen[name]}")
                seen[name] = reader.line_num
                names.append(name)
                votes.append([int(c) for c in counts])
                rows.append(reader.line_num)
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({err}); expected Microsoft's label.csv") from None
    return names, np.array(votes, np.int64).reshape(-1, len(FERPLUS_COLUMNS)), rows


def _new_votes(path: Path, usage: str) -> tuple[list[str], np.ndarray, list[int]]:
    """The names, votes and row numbers of ``fer2013new.csv``'s images of ``usage``, a repeated name's last row only."""
    labels = read_label_file(path)
    rows = np.flatnonzero((labels["usage"] == usage) & (labels["image_name"] != "")
                          & ~_superseded(labels["usage"], labels["image_name"]))
    return labels["image_name"][rows].tolist(), labels["votes"][rows], (rows + 1).tolist()


def _decode_folder(folder: Path, pngs: list[str]) -> dict[str, np.ndarray]:
    images = np.empty((len(pngs), fer2013.SIZE, fer2013.SIZE), np.uint8)
    for i, name in enumerate(tqdm(pngs, desc=f"decoding {folder.name}", unit="img", leave=False)):
        images[i] = resize(read_gray(folder / name, "a 48x48 grey PNG"))
    return {"images": images}
