"""Shared fixtures: where real data lives (skip when absent), a temp cache for every test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    """``$FERCORE_DATA`` or ``../shared/data`` beside the repository, if it exists."""
    for candidate in (os.environ.get("FERCORE_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def real_data() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found: set FERCORE_DATA or place ../shared/data")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Tests never write into the user's ~/.cache; each session gets its own cache folder.
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path_factory.getbasetemp() / "fercore-cache"))
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """torch on one thread for the test: the machine's cores are shared, and one thread is also
    the fastest for tiny batches. Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
