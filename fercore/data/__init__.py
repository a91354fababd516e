"""Datasets: one entry point, ``load_dataset(name, root, split, **kw)``.

Each dataset module registers a loader with ``@register_dataset``. A loader is a function
``load(root, split, cache_dir=None, **kw) -> FERDataset``; it may also give ``locate(root)``,
which returns where it found the data (or None) for ``python -m fercore datasets``, and
``describe(root)``, a dict of more keys for that listing (FERPlus: the layout and vote file).
``load_dataset`` checks ``split`` against the registered splits before it calls the loader, so
loaders do not check it again. Image-folder loaders share ``images`` (listing, decoding) and
``cache`` (decode once, keyed by the files' bytes).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import FERDataset


class DatasetNotFoundError(FileNotFoundError):
    """The data is not where the loader looked; the message says where and how to get it."""


class DatasetFormatError(ValueError):
    """A file, row or image does not match the dataset's format; the message names it."""


def not_found_message(title: str, root, candidates, expected: str, how: str) -> str:
    """The not-found message of a loader: where it looked (``candidates(root)``), what it expected, how to get it."""
    how += "; `python -m fercore datasets --data-root <folder>` shows what fercore finds there."
    if root is None:
        return f"{title} needs root=<folder holding {expected}>. {how}"
    root = Path(root).expanduser()
    state = "" if root.exists() else " (that folder does not exist)"
    looked = ", ".join(str(p) for p in candidates(root))
    return f"{title} not found: looked in {looked}{state} for {expected}. {how}"


@dataclass
class DatasetInfo:
    name: str
    load: Callable[..., FERDataset]
    splits: tuple[str, ...]
    locate: Callable[[Path | None], Path | None] | None = None
    needs_root: bool = True
    source: str = ""
    describe: Callable[[Path], dict] | None = None  # more about what was found (ferplus: which layout, which votes)


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, splits=("train", "val", "test"), locate=None, needs_root=True, source="",
                     describe=None):
    """Decorator that adds a loader to ``DATASETS`` under ``name``."""

    def wrap(fn):
        DATASETS[name] = DatasetInfo(name, fn, tuple(splits), locate, needs_root, source, describe)
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return DATASETS[name]


def load_dataset(name: str, root=None, split: str = "train", *, transform=None, target_transform=None, **kw) -> FERDataset:
    """Load ``split`` of dataset ``name`` from ``root`` as a ``FERDataset``.

    Splits are ``train``, ``val`` and ``test``; for FER2013 these are Training, PublicTest
    and PrivateTest. Extra keyword arguments go to the dataset's loader (``cache_dir``, ...).
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"unknown split {split!r} for {name}; valid splits: {', '.join(info.splits)}")
    accepted = loader_arguments(name)
    unknown = [k for k in kw if accepted is not None and k not in accepted]
    if unknown:  # e.g. --data-arg classes=7 on a dataset without a classes option: say so, not a TypeError
        raise ValueError(f"dataset {name} has no loader argument {', '.join(map(repr, unknown))}; "
                         f"it accepts: {', '.join(accepted) or 'none'}")
    dataset = info.load(Path(root).expanduser() if root is not None else None, split, **kw)
    dataset.transform, dataset.target_transform = transform, target_transform
    return dataset


def loader_arguments(name: str) -> list[str] | None:
    """The keyword arguments ``name``'s loader accepts (None when it takes any ``**kw``)."""
    params = list(inspect.signature(dataset_info(name).load).parameters.values())[2:]  # after root, split
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def find_datasets(root) -> list[dict]:
    """For each dataset: whether it was found under ``root`` and where (``python -m fercore datasets``).
    ``root=None``: only the datasets generated offline are found."""
    root = Path(root).expanduser() if root is not None else None
    rows = []
    for name, info in sorted(DATASETS.items()):
        if not info.needs_root:
            rows.append({"name": name, "found": True, "where": info.source or "generated offline", "splits": list(info.splits)})
            continue
        where = info.locate(root) if info.locate and root is not None else None
        rows.append({"name": name, "found": where is not None, "where": str(where) if where else None,
                     "looked_in": str(root), "splits": list(info.splits), "source": info.source,
                     **(info.describe(root) if where is not None and info.describe else {})})
    return rows


def split_summary(name: str, root=None) -> list[dict]:
    """Per split of ``name``: its size and class counts, or why it cannot be loaded (e.g. no PrivateTest)."""
    rows = []
    for split in dataset_info(name).splits:
        try:
            ds = load_dataset(name, root, split)
            rows.append({"split": split, "images": len(ds), **ds.class_counts(), "note": ""})
        except (FileNotFoundError, ValueError) as err:
            rows.append({"split": split, "images": 0, "note": str(err)})
    return rows


# Import the dataset modules so that they register themselves.
from . import ckplus, fer2013, ferg, ferplus, jaffe, simulated, synthetic  # noqa: E402,F401

__all__ = ["FERDataset", "DatasetNotFoundError", "DatasetFormatError", "not_found_message", "DATASETS", "register_dataset", "list_datasets", "load_dataset", "find_datasets", "split_summary"]
