"""Run folders: one writer at a time, an earlier run never replaced silently, JSON written atomically."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fercore.runs import RunFolderInUse, run_folder, write_json

# A second process that holds OUT's lock until its stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    from fercore.runs import run_folder
    with run_folder(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")


@pytest.fixture
def holder(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_second_process_on_a_locked_folder_fails_at_once_and_names_the_holder(holder):
    out, proc = holder
    with pytest.raises(RunFolderInUse, match=rf"in use by another run \(pid {proc.pid}"):
        with run_folder(out):
            pass
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert not (out / ".lock").exists()  # released and cleaned up
    with run_folder(out):  # free again
        assert (out / ".lock").read_text().strip() == str(os.getpid())


def test_a_killed_holder_leaves_no_stale_lock(holder):
    out, proc = holder
    proc.kill()
    proc.wait(timeout=30)
    assert (out / ".lock").exists()  # the file stays, but the OS released the lock with the process
    with run_folder(out):
        pass
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("name", ["best.pt", "metrics.json", "history.csv", "cv.json", "fold_3"])
def test_any_earlier_run_file_is_refused_without_resume_or_overwrite(tmp_path, name):
    out = tmp_path / "run"
    (out / "fold_3" if name == "fold_3" else out).mkdir(parents=True)
    if name != "fold_3":
        (out / name).write_text("earlier run")
    with pytest.raises(FileExistsError, match=rf"already holds a run \({name}\).*--resume.*--overwrite"):
        with run_folder(out):
            pass
    assert (out / name).exists()
    with pytest.raises(FileExistsError, match="no last.pt to resume from"):
        with run_folder(out, resume=True):
            pass


def test_overwrite_removes_only_the_earlier_runs_files(tmp_path):
    out = tmp_path / "run"
    (out / "fold_0").mkdir(parents=True)
    for name in ("best.pt", "last.pt", "metrics.json", "fold_0/metrics.json", "notes.txt"):
        (out / name).write_text("x")
    with run_folder(out, overwrite=True):
        assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]


def test_resume_keeps_the_run_and_an_empty_folder_is_fine(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "last.pt").write_text("x")
    with run_folder(tmp_path / "a", resume=True):
        assert (tmp_path / "a" / "last.pt").exists()
    with run_folder(tmp_path / "b"):
        assert (tmp_path / "b").is_dir()
    assert not (tmp_path / "b").exists()  # created, nothing written: removed again
    with pytest.raises(ValueError, match="pass one of them"):
        with run_folder(tmp_path / "a", resume=True, overwrite=True):
            pass


def test_a_file_valued_or_unwritable_out_is_refused(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for out in (tmp_path / "file.txt", tmp_path / "file.txt" / "run"):
        with pytest.raises(ValueError, match="is a file .*not a folder"):
            with run_folder(out):
                pass
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ValueError, match="cannot write to --out"):
        with run_folder(tmp_path / "ro" / "run"):
            pass


def test_write_json_leaves_the_old_file_whole_when_the_disk_fills(tmp_path):
    """A full disk (here a 4 KiB file-size limit) fails the write but never truncates the good file."""
    path = tmp_path / "metrics.json"
    write_json(path, {"accuracy": 0.5})
    script = textwrap.dedent(f"""
        import resource, signal
        from fercore.runs import write_json
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_json({str(path)!r}, {{"history": list(range(10000))}})
        except OSError as e:
            print("failed:", e.errno)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("failed:"), result.stderr
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def test_atomic_write_keeps_permissions_and_gives_new_files_the_usual_ones(tmp_path):
    import os

    from fercore.runs import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.json", b"{}")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        shared = tmp_path / "shared.ipynb"
        shared.write_text("{}")
        shared.chmod(0o664)
        atomic_write(shared, b"{ }")
        assert shared.stat().st_mode & 0o777 == 0o664 and shared.read_bytes() == b"{ }"
    finally:
        os.umask(old)
