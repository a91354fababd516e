"""``python -m fercore``: train -> evaluate on the offline synthetic faces, datasets, errors, help."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from fercore.cli import main


def run_cli(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    out = json.loads(captured.out) if code == 0 and captured.out.strip() else None
    return code, out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke-scale training run on synthetic faces, shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--model", "simple_cnn", "--dataset", "synthetic", "--scale", "smoke",
                 "--epochs", "2", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_train_writes_metrics_checkpoints_and_history(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("model", "dataset", "scale", "protocol", "epochs_run", "best_epoch", "val", "test", "seconds", "images_per_second"):
        assert key in metrics, key
    assert metrics["model"] == "simple_cnn" and metrics["dataset"] == "synthetic" and metrics["scale"] == "smoke"
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] in (1, 2)
    assert "val" in metrics["protocol"]["selection"]
    assert metrics["test"]["n"] == metrics["n_test"] > 0
    assert 0.0 <= metrics["val"]["accuracy"] <= 1.0
    assert metrics["images_per_second"] > 0
    with open(trained / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(trained / name, weights_only=True)
        assert ckpt["config"]["model_name"] == "simple_cnn"
    assert torch.load(trained / "last.pt", weights_only=True)["epoch"] == 2


def test_evaluate_reproduces_the_reported_test_metrics(trained, capsys):
    code, result, _ = run_cli(capsys, "evaluate", "--checkpoint", str(trained / "best.pt"), "--dataset", "synthetic", "--split", "test")
    assert code == 0
    reported = json.loads((trained / "metrics.json").read_text())["test"]
    assert result["n"] == reported["n"]
    assert result["accuracy"] == pytest.approx(reported["accuracy"])
    assert set(result) >= {"accuracy", "macro_f1", "per_class_recall", "confusion", "n"}
    assert sum(map(sum, result["confusion"])) == result["n"]


@pytest.mark.parametrize("tta", ["flip", "ten_crop"])
def test_evaluate_with_tta(trained, capsys, tta):
    code, result, _ = run_cli(capsys, "evaluate", "--checkpoint", str(trained / "best.pt"), "--dataset", "synthetic",
                              "--split", "val", "--tta", tta)
    assert code == 0 and result["tta"] == tta and 0 <= result["accuracy"] <= 1


def test_resume_continues_to_more_epochs(trained, tmp_path, capsys):
    import shutil
    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    code, metrics, _ = run_cli(capsys, "train", "--model", "simple_cnn", "--dataset", "synthetic", "--scale", "smoke",
                               "--epochs", "3", "--out", str(out), "--resume", "--quiet")
    assert code == 0 and metrics["epochs_run"] == 3
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 3


def test_datasets_reports_what_was_found(tmp_path, capsys):
    code, result, _ = run_cli(capsys, "datasets", "--data-root", str(tmp_path))
    rows = {r["name"]: r for r in result["datasets"]}
    assert code == 0 and rows["synthetic"]["found"] is True
    assert rows["fer2013"]["found"] is False and rows["fer2013"]["looked_in"] == str(tmp_path)


def test_missing_data_is_one_clear_line_not_a_traceback(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "simple_cnn", "--dataset", "fer2013", "--data-root",
                           str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: ") and "nowhere" in err and "Traceback" not in err


def test_unknown_model_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "nope", "--dataset", "synthetic", "--out", "x"])
    assert "simple_cnn" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "crossval", "evaluate", "predict", "datasets", "notebooks"])
def test_help_has_an_example(command):
    result = subprocess.run([sys.executable, "-m", "fercore", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "example:" in result.stdout and "python -m fercore " + command in result.stdout


def test_train_on_fer2013_folders_without_privatetest_reports_no_test(tmp_path, capsys):
    """The common image-folder copy lacks PrivateTest: train and select as usual, say why there is no test figure."""
    from test_fer2013 import make_samples, write_folders
    samples = [s for s in make_samples() if s["usage"] != "PrivateTest"]
    write_folders(tmp_path / "data" / "fer2013", samples)
    code, metrics, _ = run_cli(capsys, "train", "--model", "simple_cnn", "--dataset", "fer2013", "--data-root",
                               str(tmp_path / "data"), "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0 and metrics["test"] is None and metrics["n_train"] == 5 and metrics["val"]["n"] == 3
    assert "no test split" in metrics["protocol"]["report"] and "PrivateTest" in metrics["protocol"]["report"]
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--dataset", "fer2013",
                           "--data-root", str(tmp_path / "data"), "--split", "test")
    assert code == 2 and "found usages: Training (5), PublicTest (3)" in err


def test_existing_run_is_not_overwritten_silently(trained, tmp_path, capsys):
    import shutil
    out = tmp_path / "existing"
    shutil.copytree(trained, out)
    before = (out / "best.pt").read_bytes()
    argv = ["train", "--model", "simple_cnn", "--dataset", "synthetic", "--epochs", "1", "--out", str(out), "--quiet"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert (out / "best.pt").read_bytes() == before
    code, metrics, _ = run_cli(capsys, *argv, "--overwrite")
    assert code == 0 and metrics["epochs_run"] == 1


def test_model_arg_reaches_the_model_and_the_printed_command(tmp_path, capsys):
    out = tmp_path / "run"
    code, metrics, _ = run_cli(capsys, "train", "--model", "deep_emotion", "--dataset", "synthetic", "--epochs", "1",
                               "--model-arg", "fc_l2=0.25", "--out", str(out), "--quiet")
    assert code == 0 and metrics["model_args"] == {"fc_l2": 0.25}
    assert "--model-arg fc_l2=0.25" in metrics["command"]
    assert torch.load(out / "best.pt", weights_only=True)["config"]["model_kwargs"]["fc_l2"] == 0.25


def test_model_arg_without_equals_sign_is_a_clear_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "simple_cnn", "--dataset", "synthetic", "--model-arg", "width",
                           "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2 and "--model-arg expects KEY=VALUE" in err and "'width'" in err
