"""Run the numbered notebooks headlessly through papermill (``python -m fercore notebooks``).

Executed copies go to an output folder; the committed notebooks are only rewritten when
asked (``inplace=True``), and then only after a successful run, and only as ``clean_notebook``
leaves them: without papermill's ``injected-parameters`` cell (else the committed notebook
would override its own parameters cell with the scale it was last run at), without run
timestamps, and with the kernelspec JupyterLab writes (else the notebook shows as modified the
moment it opens).
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_NAME = re.compile(r"^\d\d_.+\.ipynb$")
# What JupyterLab's default ipykernel writes into a notebook it saves.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
VOLATILE_CELL_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")


def clean_notebook(nb) -> "nbformat.NotebookNode":
    """``nb`` as it is committed: no injected-parameters cell, no run metadata, the standard kernelspec.

    Cell outputs and the widget state (what a viewer without a kernel shows) are kept.
    """
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if not cell.metadata.get("tags", True):
            del cell.metadata["tags"]
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def clean_file(source: Path | str, dest: Path | str | None = None) -> bool:
    """Write ``source`` cleaned to ``dest`` (default: itself), atomically; True when ``dest`` changed."""
    import nbformat

    from .runs import atomic_write

    dest = Path(dest or source)
    try:
        nb = nbformat.read(str(source), as_version=4)
    except (ValueError, KeyError, AttributeError) as err:  # NotJSONError is a ValueError
        raise ValueError(f"{source} is not a Jupyter notebook ({str(err).splitlines()[0][:120]})") from err
    after = nbformat.writes(clean_notebook(nb)).rstrip("\n") + "\n"
    if dest.exists() and dest.read_text(encoding="utf-8") == after:
        return False
    atomic_write(dest, after.encode("utf-8"))
    return True


def discover(notebooks_dir: Path | str | None = None, only=None) -> list[Path]:
    """The numbered notebooks (``NN_topic.ipynb``) in order, filtered by number or name prefix."""
    folder = Path(notebooks_dir) if notebooks_dir else REPO_NOTEBOOKS
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {folder}")
    found = sorted(p for p in folder.iterdir() if NOTEBOOK_NAME.match(p.name))
    if only:
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
        if not found:
            raise ValueError(f"no notebook in {folder} matches {', '.join(only)}")
    return found


def _use_this_python() -> None:
    # Jupyter's default "python3" kernel starts whatever `python` is first on PATH; put this
    # interpreter's folder first so the kernel sees the same packages (e.g. a .venv).
    bindir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def run_notebooks(scale: str = "smoke", only=None, out: Path | str | None = "build/notebooks", inplace: bool = False,
                  notebooks_dir: Path | str | None = None, data_root: str | None = None,
                  timeout: int = 1800, parameters: dict | None = None) -> list[dict]:
    """Execute each notebook with ``SCALE=scale``; return one dict per notebook (name, status, seconds, output, error)."""
    import papermill as pm

    _use_this_python()
    notebooks = discover(notebooks_dir, only)
    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="fercore-notebooks-"))
    if out_dir.resolve() == notebooks[0].parent.resolve():
        # Executing straight into the committed files would leave a half-run notebook on failure.
        raise ValueError(f"--out {out_dir} is the notebooks folder itself; use another folder (with --inplace to refresh the committed notebooks)")
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"SCALE": scale, **(parameters or {})}
    if data_root is not None:  # notebooks run inside their own folder: pass an absolute path
        params["DATA_ROOT"] = str(Path(data_root).expanduser().resolve())

    results = []
    for nb in notebooks:
        target = out_dir / nb.name
        start = time.perf_counter()
        status, error = "ok", None
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                                progress_bar=False, execution_timeout=timeout)
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
            status, error = "failed", f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        seconds = round(time.perf_counter() - start, 1)
        if inplace and status == "ok":
            clean_file(target, nb)
        results.append({"notebook": nb.name, "status": status, "seconds": seconds, "output": str(target), "error": error})
    return results


def format_table(results: list[dict]) -> str:
    width = max([len("notebook")] + [len(r["notebook"]) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'seconds':>8}", "-" * (width + 19)]
    for r in results:
        lines.append(f"{r['notebook']:<{width}}  {r['status']:<7}  {r['seconds']:>8.1f}")
        if r["error"]:
            lines.append(f"    {r['error']}")
    return "\n".join(lines)
