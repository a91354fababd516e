"""The RAN authors' FERPlus test lists: Occlusion-FERPlus and Pose-FERPlus (pose > 30 and > 45 degrees).

Wang et al. ("Region Attention Networks for Pose and Occlusion Robust Facial Expression
Recognition", TIP 2020) picked by hand the FERPlus *test* faces (FER2013Test, PrivateTest) that are
occluded or turned, and published the lists in github.com/kaiwang960112/Challenge-condition-FER-dataset
(``FERplus_dir/``). The lists are their data: fercore pins each file's URL and SHA-256 and reads
it; it never ships them. Two formats, as the files have them:

- ``jianfei_occlusion_list.txt`` (CRLF lines): ``1_fer0034656.png 8 0``: the label, ``_``, the
  FERPlus file name, then two numbers the authors do not explain (the first is always 8, the
  second 0-3); they are kept as ``extra``.
- ``pose_30_ferplus_list.txt``, ``pose_45_ferplus_list.txt``: ``0/fer0032226.jpg``: the label,
  ``/``, the file name with ``.jpg`` (the authors' dlib-cropped copies of the PNGs).

A label is a FERPlus vote column (0 neutral, 1 happiness, ..., 7 contempt; on the authors'
training list it equals the arg-max of ``fer2013new.csv``'s votes for 99.5% of faces), mapped here
to fercore's canonical order. Names are matched to a FERPlus dataset by their stem, so the
``.jpg`` of the pose lists finds ``fer0032226.png``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..labels import FERPLUS_TO_CANONICAL
from . import DatasetFormatError, DatasetNotFoundError
from .base import FERDataset
from .download import download as _download


class ChallengeList(NamedTuple):
    url: str
    sha256: str
    filename: str


_RAW = "https://raw.githubusercontent.com/kaiwang960112/Challenge-condition-FER-dataset/master/FERplus_dir/"
CHALLENGE_LISTS = {  # sha256 of the files at commit e43d7a0 (master)
    "occlusion": ChallengeList(_RAW + "jianfei_occlusion_list.txt",
                               "b9d5c500fe762b1cda4c9fb537e4560fff9d01acabdcebedd57290a9b2f9d903",
                               "jianfei_occlusion_list.txt"),  # 605 faces
    "pose30": ChallengeList(_RAW + "pose_30_ferplus_list.txt",
                            "f744e57c115834069ba0ad61c8f81ab578c91514274fa4c79a2ed83691457371",
                            "pose_30_ferplus_list.txt"),  # 1170 faces
    "pose45": ChallengeList(_RAW + "pose_45_ferplus_list.txt",
                            "89bc5b7bc7243102d05a5d939183ebabb673b1b0fc35f519976bb7686d7877e5",
                            "pose_45_ferplus_list.txt"),  # 633 faces
}
LIST_DIRS = ("", "ferplus")
_LINE = re.compile(r"(\d+)[_/]([^\s/\\]+\.(?:png|jpg))((?:\s+\d+)*)")
_FORMAT = "'<label>_<name>.png <n> <n>' or '<label>/<name>.jpg' (the RAN authors' list format)"


def read_challenge_list(path) -> dict[str, np.ndarray]:
    """A list file's ``image_name`` (as FERPlus names it: ``fer0032226.png``), ``file`` (as written),
    ``label`` (canonical), ``ferplus_label`` (the file's) and ``extra`` (N, k) trailing numbers.
    A malformed line raises ``DatasetFormatError`` (a ValueError) naming the file and line."""
    path = Path(path)
    files, labels, extra = [], [], []
    with open(path, encoding="utf-8") as f:  # universal newlines: the occlusion list has CRLF
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            m = _LINE.fullmatch(line)
            label = int(m.group(1)) if m else -1
            if m is None or label not in FERPLUS_TO_CANONICAL:
                raise DatasetFormatError(f"{path}, line {number}: {line!r} is not {_FORMAT} with a label 0-7")
            numbers = [int(t) for t in m.group(3).split()]
            if extra and len(numbers) != len(extra[0]):
                raise DatasetFormatError(f"{path}, line {number}: {len(numbers)} numbers after the name, "
                                         f"but the first line has {len(extra[0])}")
            files.append(m.group(2))
            labels.append(label)
            extra.append(numbers)
    if not files:
        raise DatasetFormatError(f"{path}: no lines; expected {_FORMAT}")
    ferplus = np.array(labels, np.int64)
    return {"image_name": np.array([Path(f).stem + ".png" for f in files]), "file": np.array(files),
            "label": np.array([FERPLUS_TO_CANONICAL[k] for k in labels], np.int64),
            "ferplus_label": ferplus, "extra": np.array(extra, np.int64).reshape(len(files), -1)}


def challenge_list(name: str, root, download: bool = False) -> dict[str, np.ndarray]:
    """Read the authors' list ``name`` (``CHALLENGE_LISTS``) from ``root`` or ``root/ferplus``.

    ``download=True`` fetches a missing list (checked against its SHA-256) into ``root/ferplus``
    when that folder exists, else into ``root``; without it a missing list raises
    ``DatasetNotFoundError`` (a FileNotFoundError) naming where it looked and the URL.
    """
    if name not in CHALLENGE_LISTS:
        raise ValueError(f"unknown challenge list {name!r}; valid: {', '.join(CHALLENGE_LISTS)}")
    url, sha256, filename = CHALLENGE_LISTS[name]
    if root is None:
        raise DatasetNotFoundError(f"challenge list {name!r} needs root=<folder holding {filename}>; get it from {url}")
    root = Path(root).expanduser()
    candidates = [root / d / filename if d else root / filename for d in LIST_DIRS]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        into = root / "ferplus" if (root / "ferplus").is_dir() else root
        if not download:
            raise DatasetNotFoundError(
                f"challenge list {name!r} not found: looked for {', '.join(map(str, candidates))}. Download {url} "
                f"(sha256 {sha256}) and place it in {into}, or pass download=True.")
        found = _download(url, into / filename, sha256)
    return read_challenge_list(found)


def challenge_subset(dataset: FERDataset, names, *, strict: bool = True, what: str = "a challenge list") -> FERDataset:
    """The faces of a FERPlus ``dataset`` named in ``names`` (a ``read_challenge_list`` result or file
    names), in list order, matched by stem against ``meta["image_name"]``.

    The lists hold FERPlus test faces (``split="test"``, FER2013Test). ``strict=True`` raises a
    ValueError saying how many listed names the dataset lacks (label filtering can drop some);
    ``strict=False`` keeps the ones found and says how many were missing in ``protocol``.
    """
    if isinstance(names, dict):
        names = names["image_name"]
    if "image_name" not in dataset.meta:
        raise ValueError(f"{dataset.name} {dataset.split} has no meta['image_name']; expected a FERPlus dataset")
    stems = [Path(str(n)).stem for n in names]
    where: dict[str, int] = {}
    for i, n in enumerate(dataset.meta["image_name"]):
        where.setdefault(Path(str(n)).stem, i)
    missing = [s for s in stems if s not in where]
    if missing and strict:
        raise ValueError(f"{len(missing)} of {len(stems)} names in {what} are not in {dataset.name} {dataset.split} "
                         f"(first: {missing[0]}); the RAN lists are FERPlus test faces (split='test'), and a "
                         f"label_mode or classes filter drops some: pass strict=False to keep the rest")
    index = [where[s] for s in stems if s in where]
    if not index:
        raise ValueError(f"none of the {len(stems)} names in {what} is in {dataset.name} {dataset.split}")
    sub = dataset.subset(np.array(index, np.int64))
    note = f" Restricted to the {len(index)} faces of {what}"
    sub.protocol = dataset.protocol + note + (f" ({len(missing)} listed faces not in this split)." if missing else ".")
    return sub

