"""Run folders: atomic writes, and which process of a ``torchrun`` job may write.

Every file a run writes (checkpoints, ``metrics.json``, ``history.*``, ``cv.json``) goes
through ``atomic_write``: a temp file in the same folder, then ``os.replace``, so a crash or a
full disk never leaves half a file where a good one was. Under ``torchrun`` only rank 0 writes.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a distributed job: the one process that writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op without an initialised process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` via a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj, indent: int = 2) -> None:
    """``obj`` as JSON at ``path``, written atomically (numbers from numpy/torch become floats)."""
    atomic_write(path, (json.dumps(obj, indent=indent, default=float) + "\n").encode())
