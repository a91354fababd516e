"""The first cell of every notebook: the same on a laptop, in JupyterLab and on Colab.

``SETUP_CELL`` is that cell's source (a test checks that every notebook starts with it). It
finds the repository (``ROOT``) from the working directory, cloning it first on Colab, puts
``ROOT`` first on ``sys.path`` and calls ``prepare(ROOT)``. Putting ``ROOT`` first matters on
Colab: the clone is a folder named ``fercore`` in the working directory, and Python would
otherwise import that folder, which has no ``__init__.py``, as an empty namespace package.
It also makes ``import fercore`` work in the running kernel at once, where a fresh
``pip install -e`` is only seen after a restart.

``prepare`` moves the kernel to ``ROOT``, so every path in a notebook (``data/``, ``runs/``,
``notebooks/results/``) means the same wherever the notebook was opened from. On Colab it
pip-installs fercore's requirements, pinned to the torch and torchvision Colab already has, and
stops with one plain message when pip replaced a package this session had already imported:
only a restart loads the new version.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["REPO_URL", "SETUP_CELL", "RestartNeeded", "prepare", "unmet_requirements", "replaced_modules", "in_colab"]

# Where Colab clones the course from (the README's Colab links point there too); a fork sets
# FERCORE_REPO in the runtime, or changes this line and the links.
REPO_URL = "https://github.com/fercore/fercore"
COLAB_URL = "https://colab.research.google.com/github/" + REPO_URL.removeprefix("https://github.com/") + "/blob/main/"

SETUP_CELL = '''\
# Setup, locally or on Colab: find the fercore repository (ROOT), make `import fercore` load it,
# and on Colab install what is missing, keeping Colab's torch. Paths below are relative to ROOT.
import os, subprocess, sys
from pathlib import Path

here = Path.cwd()
ROOT = next((p for p in (here, *here.parents, here / "fercore") if (p / "fercore" / "__init__.py").is_file()), None)
if ROOT is None and "google.colab" in sys.modules:
    repo = os.environ.get("FERCORE_REPO", "@REPO_URL@")
    subprocess.run(["git", "clone", "--quiet", "--depth=1", repo, str(here / "fercore")], check=True)
    ROOT = here / "fercore"
if ROOT is None:
    raise FileNotFoundError(f"no fercore repository in or above {here}: open this notebook from its notebooks/ folder")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the package in ROOT, not a folder named fercore in the working directory
if getattr(sys.modules.get("fercore"), "__file__", "") is None:
    del sys.modules["fercore"]  # an earlier `import fercore` took that folder for a namespace package
from fercore.notebook_setup import prepare
prepare(ROOT)'''.replace("@REPO_URL@", REPO_URL)


class RestartNeeded(RuntimeError):
    """Raised by ``prepare`` when pip replaced a package the running kernel had imported."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [f"RestartNeeded: {self}"]


def in_colab() -> bool:
    return "google.colab" in sys.modules


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_versions() -> dict[str, str]:
    """``{distribution name: version}`` of everything importable in this interpreter."""
    return {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def unmet_requirements(requirements_file: Path | str) -> list[str]:
    """The lines of a requirements file that the installed packages do not satisfy."""
    from packaging.requirements import Requirement

    versions, unmet = installed_versions(), []
    for line in Path(requirements_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        have = versions.get(_canonical(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{line} (installed: {have or 'none'})")
    return unmet


def replaced_modules(before: dict[str, str], after: dict[str, str], modules) -> list[str]:
    """``"dist old -> new"`` for each distribution pip changed whose modules are already in ``modules``."""
    changed = {name for name, version in before.items() if after.get(name, version) != version}
    if not changed:
        return []
    stale = set()
    for module, dists in metadata.packages_distributions().items():
        if module in modules:
            stale.update(_canonical(d) for d in dists if _canonical(d) in changed)
    return [f"{name} {before[name]} -> {after.get(name)}" for name in sorted(stale)]


def _installed_from(root: Path) -> bool:
    # Every fercore distribution on sys.path: ROOT itself comes first and holds the egg-info that
    # setuptools writes beside the source, which records no install.
    urls = [json.loads(d.read_text("direct_url.json") or "{}").get("url", "") for d in metadata.distributions(name="fercore")]
    return root.as_uri() in [u.rstrip("/") for u in urls]


def install(root: Path) -> list[str]:
    """``pip install -e root`` keeping this runtime's torch and torchvision; return the replaced imported packages."""
    before = installed_versions()
    pins = [f"{name}=={before[name]}" for name in ("torch", "torchvision") if name in before]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="fercore-keep-", delete=False) as f:
        f.write("\n".join(pins) + "\n")
    try:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "-c", f.name, "-e", str(root)]
        print("installing fercore:", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    finally:
        os.remove(f.name)
    importlib.invalidate_caches()  # packages new to site-packages import without a restart
    return replaced_modules(before, installed_versions(), sys.modules)


def prepare(root: Path | str, install_missing: bool | None = None) -> None:
    """Move the kernel to ``root``; on Colab (or with ``install_missing=True``) install what is missing.

    Raises ``RestartNeeded`` when the install replaced a package this session already imported.
    Returns nothing, so that the setup cell shows only the line printed here.
    """
    from . import __version__

    root = Path(root).resolve()
    os.chdir(root)
    if install_missing is None:
        install_missing = in_colab()
    unmet = unmet_requirements(root / "requirements.txt")
    if install_missing and (unmet or not _installed_from(root)):
        stale = install(root)
        if stale:
            raise RestartNeeded(
                f"pip replaced {', '.join(stale)}, which this session had already imported; only a restart loads "
                "the new version. Restart the runtime (Colab: Runtime > Restart session), then run the notebook "
                "again from the top: the install is kept and is not repeated.")
    elif unmet:
        print(f"missing or too old: {'; '.join(unmet)}. Install with `make install` (or "
              f"`pip install -c constraints.txt -e .` in {root}).")
    print(f"fercore {__version__} from {root}; the paths in this notebook are relative to it")
