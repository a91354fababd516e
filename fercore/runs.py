"""Run folders: atomic writes, and which process of a ``torchrun`` job may write.

Every file a run writes (checkpoints, ``metrics.json``, ``history.*``, ``cv.json``) goes
through ``atomic_write``: a temp file in the same folder, then ``os.replace``, so a crash or a
full disk never leaves half a file where a good one was. Under ``torchrun`` only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import torch.distributed as dist

try:
    import fcntl  # run-folder locks (POSIX)
except ImportError:  # Windows
    fcntl = None


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
    try:  # keep a replaced file's permissions; a new file gets what open() would give it
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600 files
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


# ---------------------------------------------------------------- run folders: one writer, nothing replaced silently
RUN_FILES = ("best.pt", "last.pt", "metrics.json", "history.json", "history.csv", "cv.json")


class RunFolderInUse(FileExistsError):
    """Another process holds the run folder's lock."""


def run_files(out) -> list[str]:
    """What an earlier run left in ``out``: its checkpoints, metrics, history, ``cv.json`` and ``fold_K/`` folders."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name in RUN_FILES or (p.is_dir() and p.name.startswith("fold_")))


def remove_run(out) -> None:
    """Delete an earlier run's files from ``out`` (and from its ``fold_K/``), and nothing else, for ``--overwrite``."""
    out = Path(out)
    for name in run_files(out):
        path = out / name
        if path.is_dir():
            remove_run(path)
            if not any(path.iterdir()):
                path.rmdir()  # a fold folder with other files in it is left alone
        else:
            path.unlink()


def _lock(path: Path) -> int:
    """An open descriptor of ``path`` holding an exclusive ``flock``; ``RunFolderInUse`` if another process has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderInUse(f"{path.parent} is in use by another run (pid {holder}, {path.name}); "
                                 "wait for it to end or choose another --out") from None
        try:  # the holder before us may have deleted the file as we opened it: lock the file now at ``path``
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_folder(out, *, resume: bool = False, overwrite: bool = False, resume_from: str | None = "last.pt"):
    """Hold ``out`` for one run: create it, lock it, and refuse an earlier run's files unless told what to do.

    ``resume`` continues a run (it needs ``out/resume_from`` when ``out`` holds anything);
    ``overwrite`` deletes the earlier run's files first, so old and new never mix. A second
    process on the same folder gets ``RunFolderInUse`` at once. The lock is ``flock`` on
    ``out/.lock``: the OS releases it when the process ends, however it ends, so a crashed run
    leaves no stale lock; the file is removed on exit. Under ``torchrun`` rank 0 alone does this
    (the other ranks write nothing). Without ``fcntl`` (Windows) the folder is checked but not locked.
    """
    out = Path(out)
    if not is_main_process():
        yield out
        return
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".lock").touch()
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"--out {out} is a file (or lies under one), not a folder") from None
    except PermissionError as err:
        raise ValueError(f"cannot write to --out {out}: {err.strerror}") from None
    fd = _lock(out / ".lock") if fcntl is not None else None
    try:
        found = run_files(out)
        if found and not (resume or overwrite):
            raise FileExistsError(f"{out} already holds a run ({', '.join(found)}); pass --resume to continue it "
                                  "or --overwrite to replace it, or choose another --out")
        if found and resume and resume_from and not (out / resume_from).exists():
            raise FileExistsError(f"{out} holds an earlier run ({', '.join(found)}) but no {resume_from} to resume "
                                  "from; pass --overwrite to replace it, or choose another --out")
        if overwrite:
            remove_run(out)
        yield out
    finally:
        (out / ".lock").unlink()  # before unlocking: a process that opened this file then retries (see _lock)
        if fd is not None:
            os.close(fd)
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no empty folder behind


# ---------------------------------------------------------------- joining a torchrun job
def local_rank() -> int:
    """This process's index on its machine under torchrun (``LOCAL_RANK``), else 0: which GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device=None) -> int:
    """Join the torchrun job once (NCCL for a CUDA ``device``, else gloo); return the world size.

    Outside torchrun (``WORLD_SIZE`` unset or 1) it does nothing and returns 1; a second call
    finds the group already joined. The Trainer calls it in ``fit`` and ``evaluate``, never on
    construction, so building a Trainer only to evaluate starts no process group.
    """
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and dist.is_available() and not dist.is_initialized():
        import torch

        device = torch.device(device or "cpu")
        cuda = device.type == "cuda"
        if cuda:  # each process drives its own GPU
            torch.cuda.set_device(local_rank() if device.index is None else device.index)
        dist.init_process_group("nccl" if cuda else "gloo")
    return world_size()
