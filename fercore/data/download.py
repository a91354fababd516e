"""Download one file, safely: stream to a temp file beside ``dest``, check it, rename it into place.

Only called when the user asked for a download (``download=True``); loaders never fetch on
their own. A failed or interrupted download leaves nothing at ``dest`` and no temp file.
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 16


class DownloadError(OSError):
    """A download failed; the message names the URL, why, and where to place the file by hand."""


def download(url: str, dest, sha256: str | None = None, *, timeout: float = 30, overwrite: bool = False) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``.

    The body is streamed to a temp file in ``dest``'s folder, its SHA-256 is checked when
    ``sha256`` is given, and it is renamed onto ``dest`` atomically. An existing ``dest`` is
    kept (returned unchanged) unless ``overwrite=True``. Errors raise ``DownloadError`` with
    the URL and, when the network is unreachable, a hint to download the file by hand.
    """
    dest = Path(dest).expanduser()
    if dest.exists() and not overwrite:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as err:
                raise DownloadError(f"could not download {url}: the server answered HTTP {err.code} "
                                    f"({err.reason}); download it by hand and place it at {dest}") from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
                reason = getattr(err, "reason", err)
                raise DownloadError(f"could not download {url} ({reason}); you appear to be offline: "
                                    f"download it by hand and place it at {dest}") from None
        got = digest.hexdigest()
        if sha256 is not None and got.lower() != sha256.lower():
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
                                f"nothing was written to {dest}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest
