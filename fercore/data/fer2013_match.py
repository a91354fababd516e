"""FER2013's own label for FERPlus faces read from Microsoft's folders, found by their pixels.

Why by pixels: Microsoft's folders (``FER2013Train/fer0000000.png`` ...) carry neither a row of
``fer2013.csv`` nor FER2013's label, and the image-folder copy of FER2013 most users have
(``train/<class>/Training_<id>.jpg``) has lost the row order too: its ids are not row numbers.
What both keep is the face: the PNGs hold FER2013's exact pixels, the JPEGs the same pixels up
to JPEG rounding (mean absolute difference about 1.3 grey levels), a CSV the exact ones.

How, within one Usage (FERPlus train, val, test = FER2013 Training, PublicTest, PrivateTest):

1. FER2013's pixel-identical images (about 1,500 groups in the whole set) are merged into one
   candidate each; a group whose copies carry different labels is *ambiguous*: the pixels
   cannot say which copy, hence which label, a FERPlus face is.
2. Each face's ``KEY_GRID`` x ``KEY_GRID`` block means (64 numbers instead of 2,304) pick its
   ``CANDIDATES`` nearest candidates (Euclidean, ``torch.cdist`` in chunks): cheap, and JPEG
   rounding barely moves block means.
3. The exact mean absolute difference over all 48x48 pixels picks the nearest of those. It is
   the match when at most ``MAX_MAD`` grey levels.

``fer2013_label`` is the match's label (canonical index), or -1 when unmatched or ambiguous
(no majority is taken: a group's copies are different FER2013 rows, and the face is one of them).

Measured on the shared data (FERPlus folders against FER2013's JPEG folders, Kaggle's
image-folder copy), see tests/test_ferplus.py:

- Every one of FER2013Train's 28,558 and FER2013Valid's 3,579 faces is within 0.59-1.56 grey
  levels of a FER2013 image; 96 and 2 of them are ambiguous.
- Those JPEGs are libjpeg quality-95 encodings of the PNGs (re-encoding a PNG gives its JPEG
  exactly), which gives the truth: the nearest image is the face's own for 28,557 of 28,558
  training faces; the miss is a near-duplicate (the same photo, another row) with the same label.
  FER2013 has many such near-duplicates, 1-7 grey levels apart, sometimes with other labels.
- ``MAX_MAD = 4``: re-encoded at quality 95, 90, 85 and 75, 2,000 faces move by at most 1.5,
  3.0, 4.3 and 6.6 grey levels (median 1.3, 2.2, 2.9, 3.9), so copies down to about quality 85
  match. The threshold keeps strangers out, not near-duplicates: against FER2013 *Training*,
  where their own images are absent, 279 of FER2013Valid's faces find a pixel-identical twin,
  15 of the other 3,300 a near-duplicate within 4 (9 of them within 1.7, inside JPEG rounding),
  and 3,206 nothing nearer than 10. So a match names the face's own FER2013 image when the
  copy of FER2013 is complete, as it is here; a copy that lacks faces can give a few
  near-duplicates' labels.
- FER2013's label equals the FERPlus majority for 67.8% (Training) and 66.8% (PublicTest) of the
  majority-labelled faces that have one.
- The first match of FER2013Train takes about 10 s on one core of this 2-core machine (plus
  decoding FER2013 once, about 7 s), a cached one about 1 s (reading both sources' files to
  check the cache).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import fer2013
from .cache import cached_arrays

MAX_MAD = 4.0  # grey levels; see the module doc
KEY_GRID = 8  # block means per side of the coarse key
CANDIDATES = 8  # coarse neighbours checked exactly
STATUSES = ("matched", "ambiguous", "unmatched")
KEYS = ("fer2013_label", "fer2013_match", "fer2013_file", "fer2013_mad")


def nearest(queries: np.ndarray, candidates: np.ndarray, k: int = CANDIDATES,
            chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each query's nearest candidate and their mean absolute pixel difference (uint8 ``(N, 48, 48)`` inputs)."""
    n = len(queries)
    if n == 0 or len(candidates) == 0:
        return np.full(n, -1), np.full(n, np.inf, np.float32)
    q = torch.from_numpy(np.ascontiguousarray(queries)).reshape(n, -1)
    c = torch.from_numpy(np.ascontiguousarray(candidates)).reshape(len(candidates), -1)
    kq, kc = _key(queries), _key(candidates)
    k = min(k, len(candidates))
    best, mad = np.empty(n, np.int64), np.empty(n, np.float32)
    for s in range(0, n, chunk):
        near = torch.cdist(kq[s:s + chunk], kc).topk(k, largest=False).indices  # (b, k)
        a, b = q[s:s + chunk, None], c[near]  # (b, 1, 2304) and (b, k, 2304) uint8
        diff = (torch.maximum(a, b) - torch.minimum(a, b)).sum(-1, dtype=torch.int32)  # |a - b| without widening
        d, j = diff.min(1)
        best[s:s + chunk] = near.gather(1, j[:, None])[:, 0].numpy()
        mad[s:s + chunk] = d.numpy() / q.shape[1]
    return best, mad


def _key(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None]
    return F.adaptive_avg_pool2d(x, KEY_GRID).flatten(1)


def match_fer2013(images: np.ndarray, fer_images: np.ndarray, fer_labels: np.ndarray, fer_files: np.ndarray,
                  max_mad: float = MAX_MAD) -> dict[str, np.ndarray]:
    """Per face of ``images``, against one Usage of FER2013: ``fer2013_label`` (-1: none),
    ``fer2013_match`` (one of ``STATUSES``), ``fer2013_file`` (the nearest FER2013 image, the first
    of its pixel-identical copies; "" when unmatched) and ``fer2013_mad`` (their mean absolute
    difference in grey levels; inf when FER2013 has no image of that Usage)."""
    n = len(images)
    if len(fer_images) == 0:
        return _result(np.full(n, -1), np.full(n, "unmatched"), np.full(n, ""), np.full(n, np.inf))
    groups: dict[bytes, int] = {}
    group = np.array([groups.setdefault(x.tobytes(), len(groups)) for x in fer_images], np.int64)
    first = np.unique(group, return_index=True)[1]  # each group's first copy (groups are numbered in order)
    low, high = np.full(len(first), 99), np.full(len(first), -1)
    np.minimum.at(low, group, fer_labels)
    np.maximum.at(high, group, fer_labels)
    best, mad = nearest(images, fer_images[first])
    found, ambiguous = mad <= max_mad, (low != high)[best]
    status = np.where(~found, "unmatched", np.where(ambiguous, "ambiguous", "matched"))
    return _result(np.where(found & ~ambiguous, low[best], -1), status,
                   np.where(found, fer_files[first][best], ""), mad)


def _result(label, status, file, mad) -> dict[str, np.ndarray]:
    return dict(zip(KEYS, (np.asarray(label, np.int64), np.asarray(status, f"<U{max(map(len, STATUSES))}"),
                           np.asarray(file, str), np.asarray(mad, np.float32))))


def match_folder(images: np.ndarray, names, folder: Path, source: Path, usage: str,
                 cache_dir=None) -> dict[str, np.ndarray]:
    """``match_fer2013`` for the PNGs ``names`` of a FERPlus ``folder`` (decoded as ``images``)
    against ``usage`` of the FER2013 that ``fer2013.locate_fer2013`` found at ``source``.

    Cached, keyed by both sources' files (the PNGs, and the CSV or that Usage's images), so a
    second load neither decodes FER2013 nor searches.
    """
    if source.is_file():
        fer_dir, fer_names = source.parent, [source.name]
    else:
        fer_dir = source
        fer_names = [f for f in fer2013._list_images(source) if f.rsplit("/", 1)[-1].startswith(usage + "_")]
    root, files = _under_one_root([(folder, names), (fer_dir, fer_names)])

    def build():
        fer = fer2013._load_all(source, cache_dir)
        rows = np.flatnonzero(fer["usage"] == usage)
        return match_fer2013(images, fer["images"][rows], fer["targets"][rows], fer["files"][rows], MAX_MAD)

    settings = {"usage": usage, "max_mad": MAX_MAD, "key_grid": KEY_GRID, "candidates": CANDIDATES,
                "sources": [str(Path(folder).resolve()), str(Path(source).resolve())]}  # two copies under one root
    return cached_arrays("ferplus-fer2013-match", files, build, cache_dir, extra=settings, root=root, keys=KEYS)


def _under_one_root(parts) -> tuple[Path | None, list[str]]:
    """Files of several folders as names relative to their common folder (cache.py's ``root``);
    absolute paths when there is none (folders on two Windows drives)."""
    dirs = [Path(d).resolve() for d, _ in parts]
    try:
        root = Path(os.path.commonpath(dirs))
    except ValueError:
        root = None
    return root, [str((d.relative_to(root) if root else d) / f) for d, (_, names) in zip(dirs, parts) for f in names]


def summary(meta: dict, source: Path, usage: str) -> str:
    """The match counts of a loaded dataset, for its ``protocol``."""
    counts = {s: int((meta["fer2013_match"] == s).sum()) for s in STATUSES}
    return (f"fer2013_label matched by pixels to {usage} of {source}: {counts['matched']:,} matched, "
            f"{counts['ambiguous']:,} ambiguous (pixel-identical FER2013 copies disagree), "
            f"{counts['unmatched']:,} unmatched; -1 for both")
