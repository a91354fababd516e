"""Decode once, then load from a cache keyed by where the sources are, the settings and their bytes.

Caches live in ``$FERCORE_CACHE`` (default ``~/.cache/fercore``), never in the user's data
folder. A cache file is a plain ``.npz`` written atomically (temp file, then rename), named
``<tag>-<source>-<content>.npz``:

- ``source`` hashes what identifies the source whatever its content: the resolved paths (or
  the folder ``root``) and the loader's settings (``extra``). Writing a new cache file removes
  the older files with the same tag and source (80-90 MB each for FER2013), and only those.
- ``content`` hashes every file's name and bytes, so a file rewritten with the same size and
  a restored mtime is noticed. blake2b (stdlib) is as fast as crc32 here: the cost of 32k
  small files is the open/read system calls (about 0.4 s warm for FER2013's 32k JPEGs), not
  the hashing, and its 128-bit digest makes a collision of two versions of a dataset moot.

A cache file that cannot be read (truncated, empty, corrupt, or lacking an expected array)
is reported in a warning, deleted and rebuilt from the sources.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

CACHE_VERSION = 2  # 2: content hash and source key in the file name
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # O_BINARY: no newline translation on Windows
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    return Path(os.environ.get("FERCORE_CACHE", Path.home() / ".cache" / "fercore")).expanduser()


def _read_bytes(name: str, dir_fd: int | None) -> bytes:
    # os.open/os.read (relative to an open folder where the OS allows it) cost a third of
    # open().read(): this loop runs once per image file on every cached load.
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd) if dir_fd is not None else os.open(name, _READ_FLAGS)
    try:
        parts = []
        while chunk := os.read(fd, _CHUNK):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def content_digest(files: Iterable, root: Path | str | None = None) -> str:
    """blake2b of each file's name and bytes; ``files`` are relative to ``root`` when it is given."""
    h = hashlib.blake2b(digest_size=16)
    names = sorted(str(f) for f in files) if root is not None else sorted(str(Path(f).resolve()) for f in files)
    dir_fd = None
    if root is not None and os.open in os.supports_dir_fd:
        dir_fd = os.open(root, os.O_RDONLY)
    try:
        for name in names:
            data = _read_bytes(name if dir_fd is not None or root is None else os.path.join(root, name), dir_fd)
            h.update(f"{name}\0{len(data)}\0".encode())
            h.update(data)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return h.hexdigest()


def source_key(files: Iterable, extra: dict | None = None, root: Path | str | None = None) -> str:
    """Hash of where the sources are (``root``, or each file's resolved path) and the settings, not their content."""
    where = str(Path(root).resolve()) if root is not None else sorted(str(Path(f).resolve()) for f in files)
    text = json.dumps({"version": CACHE_VERSION, "extra": extra or {}, "where": where}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


def fingerprint(files: Iterable, extra: dict | None = None, root: Path | str | None = None) -> str:
    """``<source>-<content>``: the part of a cache file's name after its tag (see the module doc)."""
    files = list(files)
    return f"{source_key(files, extra, root)}-{content_digest(files, root)}"


def _read_cache(path: Path, keys: Iterable[str]) -> dict[str, np.ndarray] | None:
    """The arrays in ``path``; None when it is absent, or unreadable (then it is reported and deleted)."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a plain .npy array, not an archive of arrays
            raise ValueError("not an .npz archive")
        with z:
            arrays = {k.removeprefix("a_"): z[k] for k in z.files}  # z[k] reads and CRC-checks each array
    except (FileNotFoundError, NotADirectoryError):  # no such cache file (yet)
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        problem = f"{type(err).__name__}: {err}"
    else:
        missing = [k for k in keys if k not in arrays]
        if not missing:
            return arrays
        problem = f"lacks array(s) {', '.join(missing)}"
    warnings.warn(f"{path}: unreadable cache file ({problem}); deleting it and rebuilding from the sources",
                  stacklevel=3)
    try:
        path.unlink()
    except OSError:
        pass  # gone already, or held open elsewhere (Windows): it is replaced below all the same
    return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write ``arrays`` to ``path`` atomically; a failure (full disk, read-only folder) only warns.

    The arrays are decoded already, so the load goes on without a cache rather than failing.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            # Prefixed keys: np.savez's own parameter is called `file`, a likely meta name.
            np.savez(f, **{f"a_{k}": v for k, v in arrays.items()})
        os.replace(tmp, path)
        return True
    except OSError as err:
        warnings.warn(f"{path}: cannot write this cache file ({err}); loading without a cache", stacklevel=3)
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _remove_superseded(path: Path, tag: str, source: str) -> None:
    """Delete older versions of the same source beside ``path``: ``<tag>-<source>-*.npz``, and the
    ``<tag>-<16 hex>.npz`` files of cache version 1, which no version since can read."""
    legacy = re.compile(re.escape(tag) + r"-[0-9a-f]{16}\.npz")
    for other in path.parent.iterdir():
        name = other.name
        if other != path and ((name.startswith(f"{tag}-{source}-") and name.endswith(".npz")) or legacy.fullmatch(name)):
            try:
                other.unlink()
            except OSError:
                pass  # removed by a concurrent writer, or open elsewhere (Windows)


def cached_arrays(tag: str, files: Iterable, build: Callable[[], dict[str, np.ndarray]],
                  cache_dir: Path | str | None = None, extra: dict | None = None, *,
                  root: Path | str | None = None, keys: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, reading them from the cache when the sources are unchanged.

    ``files`` are the sources (paths, or names relative to the folder ``root``); ``extra`` the
    settings that change what ``build`` returns; ``keys`` the arrays a cache file must hold to
    be used. ``cache_dir=False`` turns caching off.
    """
    if cache_dir is False:
        return build()
    files = list(files)
    source = source_key(files, extra, root)
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    path = directory / f"{tag}-{source}-{content_digest(files, root)}.npz"
    arrays = _read_cache(path, keys)
    if arrays is None:
        arrays = build()
        if _write_cache(path, arrays):
            _remove_superseded(path, tag, source)
    return arrays
