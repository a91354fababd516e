"""``python -m fercore reproduce``: one table of every paper's experiment, resumable, with reasons for what did not run."""
from __future__ import annotations

import json
import time

import pytest
import torch

from fercore.reproduce import EXPERIMENTS
from tests.cli_helpers import cli, one_error_line

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smoke_runs_writes_the_table_and_reads_a_finished_run_back(tmp_path, capsys):
    out = tmp_path / "rep"
    code, stdout, err = cli(capsys, "reproduce", "--scale", "smoke", "--only", "resnet18_fer", "--out", out)
    assert code == 0, err
    rows = json.loads((out / "table.json").read_text())
    assert [(r["model"], r["dataset"]) for r in rows] == [("resnet18_fer", "synthetic")]
    row = rows[0]
    m = json.loads((out / "resnet18_fer_synthetic" / "metrics.json").read_text())
    assert row["ours %"] == round(100 * m["test"]["accuracy"], 1) and row["measured on"] == "test"
    assert row["ten_crop %"] == round(100 * m["tta"]["ten_crop"]["accuracy"], 1) and m["tta"]["ten_crop"]["n"] == m["n_test"]
    assert row["paper %"] == 72.4 and row["status"] == "trained" and row["command"] == m["command"]
    assert "| resnet18_fer | synthetic | 72.4 |" in (out / "table.md").read_text() and "| resnet18_fer |" in stdout
    assert "[1/1] resnet18_fer on synthetic (smoke)" in err
    # a second call reads the finished run instead of training it again
    before = (out / "resnet18_fer_synthetic" / "best.pt").stat().st_mtime_ns
    code, _, err = cli(capsys, "reproduce", "--scale", "smoke", "--only", "resnet18_fer", "--out", out)
    assert code == 0 and "read from an earlier run" in err
    assert (out / "resnet18_fer_synthetic" / "best.pt").stat().st_mtime_ns == before
    assert json.loads((out / "table.json").read_text())[0]["ours %"] == row["ours %"]
    # a run another call finished in OUT stays in the table when --only names other models
    ran = {**m, "model": "ran", "dataset": "simulated_ferplus", "command": "python -m fercore train --model ran ..."}
    (out / "ran_simulated_ferplus").mkdir()
    (out / "ran_simulated_ferplus" / "metrics.json").write_text(json.dumps(ran))
    code, _, err = cli(capsys, "reproduce", "--scale", "smoke", "--only", "resnet18_fer", "--out", out)
    rows = json.loads((out / "table.json").read_text())
    assert [(r["model"], r["status"]) for r in rows] == [("resnet18_fer", "read from an earlier run"),
                                                         ("ran", "read from an earlier run")]
    assert "[1/1] resnet18_fer" in err and "ran" not in err  # no progress line for a row only read


def test_rows_that_cannot_run_say_why(tmp_path, capsys):
    out = tmp_path / "rep"
    code, stdout, err = cli(capsys, "reproduce", "--scale", "standard", "--only", "ran", "deep_emotion",
                            "--data-root", tmp_path / "nothing", "--out", out)
    assert code == 2  # nothing could run
    rows = {(r["model"], r["dataset"]): r for r in json.loads((out / "table.json").read_text())}
    assert set(rows) == {("ran", "ferplus"), ("deep_emotion", "fer2013"), ("deep_emotion", "ckplus")}
    for r in rows.values():
        assert r["ours %"] == "not run" and r["status"].startswith("not run: ") and str(tmp_path / "nothing") in r["status"]
    assert rows[("ran", "ferplus")]["paper %"] == 86.0
    # smoke skips the cross-validated rows and the duplicates of a model's smoke run, and says why
    assert all("standard and full only" in e.skip_reason("smoke") for e in EXPERIMENTS if e.folds)
    assert [e.dataset for e in EXPERIMENTS if e.skip_reason("smoke") and not e.folds] == ["ferg"]
    assert not any(e.skip_reason("standard") for e in EXPERIMENTS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal of full")
def test_full_without_a_gpu_is_a_row_not_a_crash(tmp_path, capsys):
    code, _, err = cli(capsys, "reproduce", "--scale", "full", "--only", "ran", "--out", tmp_path / "f")
    rows = json.loads((tmp_path / "f" / "table.json").read_text())
    assert code == 2 and len(rows) == 1 and "needs a GPU" in rows[0]["status"]


def test_unknown_model_is_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "reproduce", "--only", "alexnet", "--out", tmp_path / "x")
    line = one_error_line(err)
    assert code == 2 and "'alexnet'" in line and "resnet18_fer" in line and not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("mine")
    code, _, err = cli(capsys, "reproduce", "--only", "ran", "--out", tmp_path / "file")
    assert code == 2 and "is a file" in one_error_line(err) and (tmp_path / "file").read_text() == "mine"


def test_every_experiment_names_a_registered_model_and_a_known_dataset():
    from fercore.data import list_datasets
    from fercore.models import list_models

    for e in EXPERIMENTS:
        assert e.model in list_models() and e.dataset in list_datasets()
        assert e.smoke_dataset is None or e.smoke_dataset in list_datasets()
    assert len({(e.model, e.dataset) for e in EXPERIMENTS}) == len(EXPERIMENTS)


def test_stored_table_reads_each_experiments_reference_run(tmp_path):
    from fercore.reproduce import stored_table

    m = {"model": "ran", "dataset": "ferplus", "command": "python -m fercore train --model ran ...", "scale": "standard",
         "val": {"accuracy": 0.8437}, "test": None, "history": [], "epochs_run": 12, "best_epoch": 11, "seconds": 60.0}
    (tmp_path / "05_ran_ferplus_standard.json").write_text(json.dumps(m))
    (tmp_path / "05_ran_ferplus_standard_rb0.json").write_text(json.dumps(m))  # a variant: not the experiment's run
    rows = stored_table(tmp_path)
    assert len(rows) == len(EXPERIMENTS)
    ran = [r for r in rows if r["model"] == "ran"][0]
    assert ran["ours %"] == 84.4 and ran["measured on"] == "val (FER2013Valid)" and ran["epochs (best)"] == "12 (11)"
    assert ran["status"].startswith("stored: ") and ran["command"] == m["command"] and ran["paper %"] == 86.0
    assert all(r["status"] == "not run: no stored reference run" for r in rows if r["model"] != "ran")


def test_stored_runs_find_each_experiments_reference_file(tmp_path):
    import json

    from fercore.reproduce import stored_runs, stored_table

    m = {"model": "ran", "dataset": "ferplus", "command": "python -m fercore train --model ran ...", "history": [],
         "val": {"accuracy": 0.5}, "test": None, "epochs_run": 3, "best_epoch": 2, "seconds": 9.0}
    (tmp_path / "05_ran_ferplus_standard.json").write_text(json.dumps(m))
    (tmp_path / "05_ran_ferplus_standard_rb0.json").write_text(json.dumps(m))  # a variant, not the reference run
    assert list(stored_runs(tmp_path)) == [("ran", "ferplus")]
    row = next(r for r in stored_table(tmp_path) if r["model"] == "ran")
    assert row["ours %"] == 50.0 and row["status"].startswith("stored")
    # a kept `reproduce --scale standard` run of the experiment comes before the notebook's reference run
    (tmp_path / "reproduce_standard" / "ran_ferplus").mkdir(parents=True)
    (tmp_path / "reproduce_standard" / "ran_ferplus" / "metrics.json").write_text(json.dumps({**m, "val": {"accuracy": 0.6}}))
    (source, run), = stored_runs(tmp_path).values()
    assert source.endswith("reproduce_standard/ran_ferplus/metrics.json") and run["val"]["accuracy"] == 0.6


def test_the_time_left_counts_only_runs_whose_data_is_there(tmp_path, monkeypatch):
    """FER2013 here, CK+ and FERG not: after the last FER2013 run nothing is left to wait for."""
    import io

    import fercore.reproduce as rep

    (tmp_path / "data" / "fer2013").mkdir(parents=True)
    (tmp_path / "data" / "fer2013" / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    real_run = rep._run

    def quick(exp, dataset, *args):  # a finished FER2013 run at once; the others fail as they would
        if dataset != "fer2013":
            return real_run(exp, dataset, *args)
        time.sleep(0.05)
        return {"model": exp.model, "dataset": dataset, "command": f"python -m fercore train --model {exp.model} ...",
                "scale": "standard", "val": {"accuracy": 0.5}, "test": None, "history": [], "epochs_run": 1,
                "best_epoch": 1, "seconds": 0.05}, "trained"

    monkeypatch.setattr(rep, "_run", quick)
    log = io.StringIO()
    rows = rep.reproduce("standard", only=["deep_emotion", "prior_attention"], data_root=tmp_path / "data",
                         out=tmp_path / "rep", log=log)
    lines = {line.split(":")[0]: line for line in log.getvalue().splitlines() if "% on " in line}
    assert "min left" in lines["[1/5] deep_emotion on fer2013 (standard)"]  # prior_attention's FER2013 run is to come
    assert "min left" not in lines["[3/5] prior_attention on fer2013 (standard)"]  # only CK+ and FERG, both absent
    assert [r["status"].split(":")[0] for r in rows] == ["trained", "not run", "trained", "not run", "not run"]
