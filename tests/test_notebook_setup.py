"""The notebooks' first cell (fercore.notebook_setup), on this machine and in a simulated Colab.

The simulation is Colab's layout: a working directory ``content/`` in which the setup cell
clones the repository into ``content/fercore``, one kernel that lives across cells, a
``google.colab`` module, and a Python whose site-packages is not fercore's (a venv of its own
that sees this one's packages through a ``.pth`` file, so that pip installs into it and leaves
this environment alone).
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from fercore import notebook_setup
from fercore.notebook_setup import SETUP_CELL, RestartNeeded, prepare, replaced_modules, unmet_requirements

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_code_cell(path: Path) -> str:
    return next(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_starts_with_the_setup_cell(path):
    assert first_code_cell(path) == SETUP_CELL


def test_unmet_requirements_names_missing_and_too_old_packages(tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# a comment\nnumpy>=1\nnumpy<1  # too new here\nno-such-package-fercore>=1\n\n")
    unmet = unmet_requirements(reqs)
    assert [u.split(" ")[0] for u in unmet] == ["numpy<1", "no-such-package-fercore>=1"]
    assert "installed: none" in unmet[1]


def test_replaced_modules_lists_only_changed_packages_already_imported():
    import numpy

    now = numpy.__version__
    assert replaced_modules({"numpy": "0.1"}, {"numpy": now}, {"numpy": numpy}) == [f"numpy 0.1 -> {now}"]
    assert replaced_modules({"numpy": "0.1"}, {"numpy": now}, {}) == []  # not imported: no restart needed
    assert replaced_modules({"numpy": now}, {"numpy": now}, {"numpy": numpy}) == []


def test_prepare_moves_to_the_root_and_stops_when_a_restart_is_needed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert prepare(REPO, install_missing=False) is None and Path.cwd() == REPO
    assert f"from {REPO}" in capsys.readouterr().out
    monkeypatch.setattr(notebook_setup, "install", lambda root: ["numpy 1.0 -> 2.0"])
    monkeypatch.setattr(notebook_setup, "_installed_from", lambda root: False)
    with pytest.raises(RestartNeeded, match=r"numpy 1.0 -> 2.0.*Restart the runtime") as err:
        prepare(REPO, install_missing=True)
    assert err.value._render_traceback_() == [f"RestartNeeded: {err.value}"]  # IPython shows one line


# --------------------------------------------------------------------------- simulated Colab
def working_tree_repo(dest: Path) -> Path:
    """A git repository holding this working tree's files (tracked and new, not ignored), to clone from."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes((REPO / name).read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(git + cmd, cwd=dest, check=True)
    return dest


class Kernel:
    """One long-lived ipykernel, as a Colab runtime keeps between cells."""

    def __init__(self, python: Path, cwd: Path, env: dict):
        from jupyter_client import KernelManager

        self.km = KernelManager()
        self.km.kernel_spec.argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 600) -> tuple[str, str | None]:
        """Run one cell; return its printed text and its error (ename: evalue), if any."""
        text, error = [], None

        def hook(msg):
            nonlocal error
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                text.append(content["text"])
            elif kind == "error":
                error = f'{content["ename"]}: {content["evalue"]}'
            elif kind in ("execute_result", "display_data"):
                text.append(content["data"].get("text/plain", ""))

        try:
            self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"cell timed out after {timeout} s: {code[:80]!r}")
        return "".join(text), error

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_setup_cell_on_a_simulated_colab_clones_installs_and_imports_without_a_restart(tmp_path):
    source = working_tree_repo(tmp_path / "github")
    venv = tmp_path / "colab-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_this_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # Colab's preinstalled packages
    content = tmp_path / "content"
    content.mkdir()
    env = {**os.environ, "FERCORE_REPO": str(source), "PYTHONNOUSERSITE": "1"}
    kernel = Kernel(venv / "bin" / "python", content, env)
    try:
        out, err = kernel.run("import sys, types\nsys.modules['google'] = types.ModuleType('google')\n"
                              "sys.modules['google.colab'] = types.ModuleType('google.colab')")
        assert err is None
        setup = first_code_cell(source / "notebooks" / "00_setup_and_data.ipynb")
        out, err = kernel.run(setup)
        assert err is None, out
        assert "PosixPath" not in out  # the cell shows its one line, not a value
        assert "installing fercore" in out and f"from {content / 'fercore'}" in out
        # The learner's trap: a plain `import fercore` beside the clone once found the folder, not the package.
        out, err = kernel.run("import os, fercore, torch\nprint(fercore.__version__, fercore.__file__, os.getcwd(), torch.__file__)")
        version, file, cwd, torch_file = out.split()
        assert (version, cwd) == ("0.1.0", str(content / "fercore"))
        assert file == str(content / "fercore" / "fercore" / "__init__.py")
        assert not torch_file.startswith(str(venv))  # Colab's own torch, not a pip-installed one
        assert list(site.glob("fercore-*.dist-info")) and not list(site.glob("torch*"))
        # Running the cell again (a second notebook, or Run all) finds the install and does not repeat it.
        out, err = kernel.run(setup)
        assert err is None and "installing" not in out
        # The notebook's next cells, relative to the repository root: parameters, imports, the data.
        cells = [c.source for c in nbformat.read(source / "notebooks" / "00_setup_and_data.ipynb", as_version=4).cells
                 if c.cell_type == "code"]
        for code in cells[1:3]:
            out, err = kernel.run(code)
            assert err is None, (code[:60], err)
        out, err = kernel.run("print(len(load_dataset('synthetic', DATA_ROOT, 'val')))")
        assert err is None and int(out) > 0
    finally:
        kernel.close()


def test_readme_links_every_notebook_to_colab_at_the_repository_the_setup_cell_clones():
    from fercore.notebook_setup import COLAB_URL, REPO_URL

    readme = (REPO / "README.md").read_text()
    assert REPO_URL in SETUP_CELL
    for path in NOTEBOOKS:
        assert f"]({COLAB_URL}notebooks/{path.name})" in readme
