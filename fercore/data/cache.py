"""Decode once, then load from a cache keyed by the source files' size and mtime.

Caches live in ``$FERCORE_CACHE`` (default ``~/.cache/fercore``), never in the user's data
folder. A cache file is a plain ``.npz`` written atomically (temp file, then rename).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("FERCORE_CACHE", Path.home() / ".cache" / "fercore")).expanduser()


def fingerprint(files: Iterable[Path], extra: dict | None = None) -> str:
    """A short hash of each file's resolved path, size and mtime (plus ``extra`` settings)."""
    h = hashlib.sha1(json.dumps({"version": CACHE_VERSION, "extra": extra or {}}, sort_keys=True).encode())
    for f in sorted(Path(p).resolve() for p in files):
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_arrays(tag: str, files: Iterable[Path], build: Callable[[], dict[str, np.ndarray]],
                  cache_dir: Path | str | None = None, extra: dict | None = None) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, reading them from the cache when the sources are unchanged.

    ``cache_dir=False`` turns caching off.
    """
    if cache_dir is False:
        return build()
    files = list(files)
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    path = directory / f"{tag}-{fingerprint(files, extra)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k.removeprefix("a_"): z[k] for k in z.files}
    arrays = build()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # Prefixed keys: np.savez's own parameter is called `file`, a likely meta name.
            np.savez(f, **{f"a_{k}": v for k, v in arrays.items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return arrays
