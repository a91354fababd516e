"""download(): a local HTTP server stands in for the internet."""
from __future__ import annotations

import hashlib

import pytest

from fercore.data.download import DownloadError, download
from tests.http_helpers import serve_folder

BODY = b"Usage,Image name\nTraining,fer0000000.png\n" * 50


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "file.csv").write_bytes(BODY)
    with serve_folder(site) as url:
        yield url


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_good_download_with_checksum(server, tmp_path):
    dest = tmp_path / "out" / "file.csv"
    got = download(f"{server}/file.csv", dest, hashlib.sha256(BODY).hexdigest())
    assert got == dest and dest.read_bytes() == BODY
    assert leftovers(dest.parent) == ["file.csv"]  # no temp file left


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    dest = tmp_path / "file.csv"
    with pytest.raises(DownloadError) as err:
        download(f"{server}/file.csv", dest, "0" * 64)
    msg = str(err.value)
    assert f"{server}/file.csv" in msg and "0" * 64 in msg and hashlib.sha256(BODY).hexdigest() in msg
    assert not dest.exists() and leftovers(tmp_path) == ["site"]


def test_404_is_a_clear_error(server, tmp_path):
    dest = tmp_path / "missing.csv"
    with pytest.raises(DownloadError, match="404") as err:
        download(f"{server}/missing.csv", dest)
    assert str(dest) in str(err.value)
    assert not dest.exists() and leftovers(tmp_path) == ["site"]


def test_unreachable_says_offline(tmp_path):
    dest = tmp_path / "file.csv"
    with pytest.raises(DownloadError) as err:
        download("http://127.0.0.1:1/file.csv", dest, timeout=5)
    msg = str(err.value)
    assert "could not download http://127.0.0.1:1/file.csv" in msg
    assert "offline" in msg and f"place it at {dest}" in msg
    assert leftovers(tmp_path) == []


def test_existing_file_is_not_overwritten(server, tmp_path):
    dest = tmp_path / "file.csv"
    dest.write_bytes(b"mine")
    assert download(f"{server}/file.csv", dest) == dest
    assert dest.read_bytes() == b"mine"
    download(f"{server}/file.csv", dest, overwrite=True)
    assert dest.read_bytes() == BODY
