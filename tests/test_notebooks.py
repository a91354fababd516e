"""The notebook runner (``python -m fercore notebooks``) on small notebooks written here.

The real notebooks are executed and checked by nbval (``pytest --nbval-lax notebooks``).
"""
from __future__ import annotations

import json

import nbformat
import pytest

from pathlib import Path

from fercore.cli import main
from fercore.notebooks import KERNELSPEC, clean_notebook, discover, run_notebooks

COMMITTED = discover()


def write_notebook(path, *cells, parameters='SCALE = "standard"'):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}  # as papermill finds it
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_ok.ipynb", "print('scale is', SCALE)")
    write_notebook(folder / "01_fails.ipynb", "raise RuntimeError('broken on purpose')")
    (folder / "notes.ipynb").write_text("{}")  # not numbered: ignored
    return folder


def outputs(path):
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_discover_orders_and_filters(notebooks):
    assert [p.name for p in discover(notebooks)] == ["00_ok.ipynb", "01_fails.ipynb"]
    assert [p.name for p in discover(notebooks, only=["01"])] == ["01_fails.ipynb"]
    with pytest.raises(ValueError, match="no notebook .* matches 07"):
        discover(notebooks, only=["07"])


def test_runs_with_injected_scale_and_reports_failures(notebooks, tmp_path):
    before = {p.name: p.read_bytes() for p in notebooks.iterdir()}
    results = run_notebooks(scale="smoke", out=tmp_path / "out", notebooks_dir=notebooks)
    assert [(r["notebook"], r["status"]) for r in results] == [("00_ok.ipynb", "ok"), ("01_fails.ipynb", "failed")]
    assert "scale is smoke" in outputs(tmp_path / "out" / "00_ok.ipynb")
    assert "broken on purpose" in results[1]["error"]
    assert all(r["seconds"] > 0 for r in results)
    # The committed notebooks are untouched.
    assert {p.name: p.read_bytes() for p in notebooks.iterdir()} == before


def test_inplace_rewrites_only_successful_notebooks(notebooks, tmp_path):
    failing_before = (notebooks / "01_fails.ipynb").read_bytes()
    run_notebooks(scale="smoke", out=tmp_path / "out", inplace=True, notebooks_dir=notebooks)
    assert "scale is smoke" in outputs(notebooks / "00_ok.ipynb")
    assert (notebooks / "01_fails.ipynb").read_bytes() == failing_before


def test_inplace_commits_no_injected_parameters_and_no_run_metadata(notebooks, tmp_path):
    run_notebooks(scale="smoke", out=tmp_path / "out", inplace=True, notebooks_dir=notebooks)
    executed = nbformat.read(tmp_path / "out" / "00_ok.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)  # papermill's copy
    nb = nbformat.read(notebooks / "00_ok.ipynb", as_version=4)
    # A learner who sets SCALE in the parameters cell and runs all gets that scale: nothing overrides it.
    assert [c.source for c in nb.cells if c.cell_type == "code"] == ['SCALE = "standard"', "print('scale is', SCALE)"]
    assert nb.metadata["kernelspec"] == KERNELSPEC and "papermill" not in nb.metadata
    assert all(not {"papermill", "execution"} & set(c.metadata) for c in nb.cells)
    assert nb.cells[0].metadata["tags"] == ["parameters"]


def test_clean_flag_cleans_the_committed_notebooks_and_runs_nothing(notebooks, tmp_path, capsys):
    run_notebooks(scale="smoke", out=tmp_path / "out", notebooks_dir=notebooks)
    executed = tmp_path / "out" / "00_ok.ipynb"
    (notebooks / "00_ok.ipynb").write_bytes(executed.read_bytes())  # as a save from papermill's copy leaves it
    assert main(["notebooks", "--clean", "--notebooks-dir", str(notebooks), "--only", "00"]) == 0
    assert "00_ok.ipynb: cleaned" in capsys.readouterr().out
    nb = nbformat.read(notebooks / "00_ok.ipynb", as_version=4)
    assert len(nb.cells) == 2 and "scale is smoke" in outputs(notebooks / "00_ok.ipynb")  # outputs kept
    assert main(["notebooks", "--clean", "--notebooks-dir", str(notebooks), "--only", "00"]) == 0
    assert "already clean" in capsys.readouterr().out


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_notebooks_are_clean_small_and_honest_about_their_figures(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"] == KERNELSPEC  # JupyterLab rewrites any other, marking the notebook modified
    assert clean_notebook(nbformat.read(path, as_version=4)) == nb  # no injected parameters, no run metadata
    assert path.stat().st_size < 2_000_000
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "deterministic" not in text and "threads" in text  # the smoke figures vary with the thread count
    outputs_ = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs_ if o.get("output_type") == "error"]
    assert not [o for o in outputs_ if "image/png" in o.get("data", {})]  # figures are SVG, sharp at any density


def test_refuses_to_execute_into_the_notebooks_folder(notebooks):
    with pytest.raises(ValueError, match="notebooks folder itself"):
        run_notebooks(out=notebooks, notebooks_dir=notebooks)


def test_cli_prints_table_and_json_and_exit_status(notebooks, tmp_path, capsys):
    code = main(["notebooks", "--notebooks-dir", str(notebooks), "--out", str(tmp_path / "o"), "--only", "00"])
    table = capsys.readouterr().out
    assert code == 0 and "00_ok.ipynb" in table and "ok" in table and "seconds" in table
    code = main(["notebooks", "--notebooks-dir", str(notebooks), "--out", str(tmp_path / "o"), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1 and [r["status"] for r in rows] == ["ok", "failed"]


def test_data_root_reaches_the_notebook_as_an_absolute_path(tmp_path, monkeypatch):
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "00_root.ipynb", "print('root is', DATA_ROOT)", parameters='DATA_ROOT = "../data"')
    monkeypatch.chdir(tmp_path)
    run_notebooks(out=tmp_path / "out", notebooks_dir=folder, data_root="mydata")
    assert f"root is {tmp_path / 'mydata'}" in outputs(tmp_path / "out" / "00_root.ipynb")


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_nbval_checks_no_output_that_depends_on_training(path):
    # nbval compares only the cells marked NBVAL_CHECK_OUTPUT. A trained model's figures change with
    # the thread count and the CPU, so a learner could not reproduce them: only data, code and
    # parameter counts are checked.
    checked = [c.source for c in nbformat.read(path, as_version=4).cells
               if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked
    for source in checked:
        assert not any(word in source for word in ("run_experiment", "sweep(", "metrics", "Trainer", "predict", "load_model"))


def test_clean_names_a_file_that_is_not_a_notebook(tmp_path, capsys):
    (tmp_path / "00_broken.ipynb").write_text("not json")
    assert main(["notebooks", "--clean", "--notebooks-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "00_broken.ipynb is not a Jupyter notebook" in err
    assert (tmp_path / "00_broken.ipynb").read_text() == "not json"  # left as it was
