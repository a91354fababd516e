"""A FER2013 + FERPlus look-alike for offline lessons: synthetic faces, simulated annotators.

FERPlus exists because FER2013's single label per face is noisy: Barsoum et al. had ten
people tag every image again. To teach that story without the real files, this module writes
the two files in their real formats, ``fer2013.csv`` (``emotion,pixels,Usage``) and
``fer2013new.csv`` (``Usage,Image name,neutral,...,contempt,unknown,NF``), from synthetic
faces, so ``load_dataset("ferplus", root)`` and ``load_dataset("fer2013", root)`` read them
exactly as they read the real ones.

Everything about the labels is **simulated**, and figures computed from them say nothing
about the real datasets:

- Classes are drawn in FER2013's training proportions (``FER2013_TRAIN_COUNTS``), so the
  imbalance (Disgust 436 vs Happy 7,215) is there to study.
- Each of ``RATERS`` simulated taggers votes the drawn expression with a probability that
  grows with the face's intensity, else a look-alike expression (``LOOK_ALIKES``), else
  ``unknown``. The FER2013 label is one more such tagger: a single noisy vote.

``load_dataset("simulated_ferplus", None, split, **ferplus_options)`` writes the files once
into the cache folder (never into a data folder) and reads them with the FERPlus loader; its
datasets are named ``simulated_ferplus`` so that no table mistakes them for the real one.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..labels import EMOTIONS, FERPLUS_COLUMNS, FERPLUS_TO_CANONICAL
from . import register_dataset
from .cache import default_cache_dir
from .ferplus import load_ferplus
from .synthetic import render_faces

# Training images per class in the real FER2013 (canonical order angry..neutral).
FER2013_TRAIN_COUNTS = (3995, 436, 4097, 7215, 4830, 3171, 4965)
RATERS = 10
# Which expressions a tagger mistakes each one for (canonical names, FERPlus has contempt too).
LOOK_ALIKES = {"angry": ("disgust", "sad"), "disgust": ("angry", "contempt"), "fear": ("surprise", "sad"),
               "happy": ("neutral", "contempt"), "sad": ("neutral", "fear"), "surprise": ("fear", "happy"),
               "neutral": ("sad", "contempt")}
UNKNOWN_RATE = 0.04
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def rater_votes(targets: np.ndarray, intensity: np.ndarray, rng: np.random.Generator, raters: int = RATERS) -> np.ndarray:
    """``(N, len(FERPLUS_COLUMNS))`` vote counts of ``raters`` simulated taggers per face.

    A tagger gets the expression right with probability ``0.35 + 0.6 * intensity`` (0.8 for
    neutral faces, whose intensity is 0), says ``unknown`` with probability ``UNKNOWN_RATE``,
    and otherwise picks one of the expression's look-alikes.
    """
    n = len(targets)
    votes = np.zeros((n, len(FERPLUS_COLUMNS)), np.int64)
    p_right = np.where(intensity > 0, 0.35 + 0.6 * intensity, 0.8)
    for i, (t, p) in enumerate(zip(targets, p_right)):
        name = EMOTIONS[t]
        for _ in range(raters):
            u = rng.random()
            if u < p:
                pick = name
            elif u < p + UNKNOWN_RATE:
                pick = "unknown"
            else:
                pick = LOOK_ALIKES[name][rng.integers(2)]
            votes[i, COLUMN_OF[pick]] += 1
    return votes


# canonical name -> its fer2013new.csv column index
COLUMN_OF = {EMOTIONS[c]: col for col, c in FERPLUS_TO_CANONICAL.items()} | {"unknown": 8}


def write_fer2013_ferplus(root, sizes=None, seed: int = 0) -> dict[str, Path]:
    """Write ``root/fer2013.csv`` and ``root/fer2013new.csv`` (simulated, see the module doc).

    ``sizes`` maps FER2013's ``Usage`` values to image counts (default Training 2000,
    PublicTest 500, PrivateTest 500); every split follows FER2013's class proportions.
    Existing files are never overwritten: an error names them.
    """
    root = Path(root)
    paths = {"fer2013": root / "fer2013.csv", "ferplus": root / "fer2013new.csv"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"not overwriting {', '.join(existing)}; choose an empty folder")
    sizes = sizes or {"Training": 2000, "PublicTest": 500, "PrivateTest": 500}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown Usage value(s) {sorted(unknown)}; valid: {', '.join(SPLITS)}")
    rng = np.random.default_rng(seed)
    share = np.array(FER2013_TRAIN_COUNTS) / sum(FER2013_TRAIN_COUNTS)
    pixel_rows, label_rows = ["emotion,pixels,Usage"], ["Usage,Image name," + ",".join(FERPLUS_COLUMNS)]
    for s, (usage, n) in enumerate(sizes.items()):
        counts = rng.multinomial(n, share)
        faces = [render_faces(int(k), expressions=[c], seed=(seed, s, c)) for c, k in enumerate(counts) if k]
        order = rng.permutation(n)  # FER2013's rows are not grouped by class
        images, targets, intensity = (np.concatenate([f[key] for f in faces])[order]
                                      for key in ("images", "targets", "intensity"))
        votes = rater_votes(targets, intensity, rng)
        single = rater_votes(targets, intensity, rng, raters=1)  # FER2013: one tagger per face
        for img, target, one, v in zip(images[:, 0], targets, single, votes):
            said = FERPLUS_TO_CANONICAL.get(int(one.argmax()), 7)
            # FER2013 has the 7 classes only: a face whose tagger said contempt or unknown keeps its drawn expression.
            fer_label = said if said < 7 else int(target)
            pixel_rows.append(f"{fer_label},{' '.join(map(str, img.ravel()))},{usage}")
            label_rows.append(f"{usage},fer{len(label_rows) - 1:07d}.png," + ",".join(map(str, v)))
    root.mkdir(parents=True, exist_ok=True)
    paths["fer2013"].write_text("\n".join(pixel_rows) + "\n")
    paths["ferplus"].write_text("\n".join(label_rows) + "\n")
    return paths



@register_dataset("simulated_ferplus", needs_root=False, source="synthetic faces with simulated taggers (offline)")
def load_simulated_ferplus(root, split, *, seed: int = 0, cache_dir=None, **ferplus_options):
    """The simulated files read by the FERPlus loader (``label_mode``, ``classes``, ... as for ``ferplus``).

    ``root`` is ignored: the files live in ``cache_dir`` (default ``$FERCORE_CACHE``), written
    on first use into a temporary folder and then renamed, so an interrupted write leaves nothing.
    """
    base = Path(cache_dir) if cache_dir not in (None, False) else default_cache_dir()
    folder = base / f"simulated_ferplus-seed{seed}"
    if not (folder / "fer2013new.csv").exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".simulated-"))
        try:
            write_fer2013_ferplus(tmp, seed=seed)
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "fer2013new.csv").exists():  # not a concurrent writer that got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    dataset = load_ferplus(folder, split, cache_dir=cache_dir, **ferplus_options)
    dataset.name = "simulated_ferplus"
    dataset.protocol = ("SIMULATED labels on synthetic faces (fercore.data.simulated), split like FER2013: "
                        + dataset.protocol)
    return dataset
