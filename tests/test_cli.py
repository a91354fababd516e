"""``python -m fercore``: train -> evaluate on the offline synthetic faces, datasets, errors, help."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from fercore.cli import main
from tests.cli_helpers import cli, one_error_line


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


def test_labels_compares_fer2013_and_ferplus_on_the_same_faces(tmp_path, capsys):
    import numpy as np

    from fercore.data import load_dataset
    from fercore.labels import compare_labels

    code, result, _ = run_cli(capsys, "labels", "--dataset", "simulated_ferplus", "--data-root", str(tmp_path),
                              "--split", "val", "--data-arg", "classes=7")
    assert code == 0 and result["data_args"] == {"classes": 7, "label_mode": "majority"}
    val = load_dataset("simulated_ferplus", tmp_path, "val", classes=7)
    old, new = np.asarray(val.meta["fer2013_label"]), val.targets.numpy()
    table = np.array(result["crosstab"]["counts"])
    assert result["crosstab"]["columns"] == list(val.classes) and table.shape == (7, 7)
    assert table.sum() == result["with_fer2013_label"] == (old >= 0).sum()
    assert result["agreement"] == pytest.approx(np.trace(table) / table.sum())
    assert result["agreement"] == pytest.approx((old == new)[old >= 0].mean()) and 0 < result["agreement"] < 1
    assert table[3, 3] == ((old == 3) & (new == 3)).sum() and table[3].sum() == result["fer2013_counts"]["happy"]
    assert sum(result["ferplus_counts"].values()) == result["faces"] == len(val)
    with pytest.raises(ValueError, match="soft targets; load it with label_mode='majority'"):
        compare_labels(load_dataset("simulated_ferplus", tmp_path, "val", label_mode="crossentropy"))
    with pytest.raises(ValueError, match="holds no FER2013 labels"):
        compare_labels(load_dataset("synthetic", tmp_path, "val"))


def test_missing_data_is_one_clear_line_not_a_traceback(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "simple_cnn", "--dataset", "fer2013", "--data-root",
                           str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: ") and "nowhere" in err and "Traceback" not in err


def test_unknown_model_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "nope", "--dataset", "synthetic", "--out", "x"])
    assert "simple_cnn" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "crossval", "evaluate", "predict", "datasets", "labels", "notebooks"])
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


# ---------------------------------------------------------------- issue 10: run folders, resume, evaluate, errors
TRAIN = ("train", "--model", "simple_cnn", "--dataset", "synthetic", "--epochs", "1", "--quiet")


def copy_run(trained, out, keep=None):
    import shutil
    shutil.copytree(trained, out)
    for p in out.iterdir():
        if keep is not None and p.name not in keep:
            p.unlink()
    return out


def test_a_run_without_last_pt_is_still_refused(trained, tmp_path, capsys):
    """best.pt and metrics.json of an earlier run (no last.pt) are not replaced silently."""
    out = copy_run(trained, tmp_path / "old", keep={"best.pt", "metrics.json"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = cli(capsys, *TRAIN, "--out", str(out))
    assert code == 2 and "already holds a run (best.pt, metrics.json)" in one_error_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_leaves_no_file_of_the_earlier_run(trained, tmp_path, capsys):
    out = copy_run(trained, tmp_path / "old")
    (out / "cv.json").write_text("{}")  # e.g. a crossval that once ran here
    code, _, _ = cli(capsys, *TRAIN, "--out", str(out), "--overwrite")
    assert code == 0 and not (out / "cv.json").exists()
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_a_file_valued_out_is_refused_before_any_data_is_read(tmp_path, capsys, where):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" if where == "file" else tmp_path / "notes.txt" / "run"
    # fer2013 is not under this root: the --out error must come first, before the loader looks for data.
    code, _, err = cli(capsys, "train", "--model", "simple_cnn", "--dataset", "fer2013", "--data-root",
                       str(tmp_path / "nowhere"), "--out", str(out))
    assert code == 2 and "is a file" in one_error_line(err) and str(tmp_path / "notes.txt") in err
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_a_second_train_on_a_folder_in_use_fails_clearly(tmp_path, capsys):
    """One process holds OUT (as a running ``train`` does); a second ``train`` on it exits 2 and writes nothing."""
    from test_runs import HOLDER
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli(capsys, *TRAIN, "--out", str(out))
        assert code == 2 and f"{out} is in use by another run (pid {holder.pid}" in one_error_line(err)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.parametrize("change, named", [
    (("--seed", "1"), "seed: 0 -> 1"),
    (("--recipe-arg", "lr=0.01"), "recipe lr: 0.002 -> 0.01"),
    (("--batch-size", "16"), "recipe batch_size: 64 -> 16"),
    (("--model-arg", "dropout=0.1"), "model_args: {} -> {'dropout': 0.1}"),
    (("--data-arg", "n=100"), "data_args: {} -> {'n': 100}"),
])
def test_resume_refuses_a_changed_setting_and_names_it(trained, tmp_path, capsys, change, named):
    out = copy_run(trained, tmp_path / "run")
    before = (out / "metrics.json").read_bytes()
    code, _, err = cli(capsys, "train", "--model", "simple_cnn", "--dataset", "synthetic", "--scale", "smoke",
                       "--epochs", "3", "--out", str(out), "--resume", "--quiet", *change)
    assert code == 2 and named in one_error_line(err) and "only --epochs may change" in err
    assert (out / "metrics.json").read_bytes() == before and torch.load(out / "last.pt", weights_only=True)["epoch"] == 2


def test_metrics_json_is_replaced_whole_not_rewritten_in_place(trained, tmp_path, capsys):
    """Written atomically (temp file + rename): a reader holding the old file keeps reading the old, whole file."""
    import os
    out = copy_run(trained, tmp_path / "run")
    os.link(out / "metrics.json", tmp_path / "old_metrics.json")  # the old file's inode, as an open reader sees it
    old = (tmp_path / "old_metrics.json").read_text()
    code, _, _ = cli(capsys, "train", "--model", "simple_cnn", "--dataset", "synthetic", "--scale", "smoke",
                     "--epochs", "2", "--out", str(out), "--resume", "--quiet")
    assert code == 0 and (tmp_path / "old_metrics.json").read_text() == old
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()


@pytest.mark.parametrize("args, named", [
    (("--model-arg", "wdth=32"), "model simple_cnn has no argument 'wdth'; it accepts: num_classes, in_chans, width, dropout"),
    (("--model-arg", "width=abc"), "argument width must be int, got 'abc'"),
    (("--model", "deepfer", "--model-arg", "widths=abc"), "model deepfer cannot be built with widths='abc'"),
    (("--recipe-arg", "augment.nonexist=1"), "unknown option(s) 'nonexist'; valid options: crop_padding"),
    (("--recipe-arg", "lr=abc"), "recipe field lr must be float, got 'abc'"),
    (("--batch-size", "0"), "batch_size must be a positive integer, got 0"),
    (("--epochs", "0"), "epochs must be a positive integer, got 0"),
    (("--epochs", "-1"), "epochs must be a positive integer, got -1"),
    (("--epochs", "two"), "argument --epochs: invalid int value: 'two'"),
    (("--device", "tpu"), "unknown device 'tpu'"),
])
def test_a_wrong_train_argument_is_one_line_naming_it_before_anything_runs(tmp_path, capsys, args, named):
    argv = ["train", "--model", "simple_cnn", "--dataset", "synthetic", "--out", str(tmp_path / "run"), "--quiet"]
    if "--model" in args:  # this case names another model
        argv[2] = args[1]
        args = args[2:]
    code, _, err = cli(capsys, *argv, *args)
    assert code == 2 and named in one_error_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_device_cuda_without_cuda_is_one_line(trained, tmp_path, capsys, command):
    argv = {"train": [*TRAIN, "--out", str(tmp_path / "run")],
            "evaluate": ["evaluate", "--checkpoint", str(trained / "best.pt"), "--dataset", "synthetic"],
            "predict": ["predict", str(tmp_path / "photo.jpg"), "--checkpoint", str(trained / "best.pt")]}[command]
    code, _, err = cli(capsys, *argv, "--device", "cuda")
    assert code == 2 and "cuda" in one_error_line(err) and "no usable CUDA" in err


def bad_checkpoints(trained, folder) -> dict:
    """A truncated checkpoint, a foreign file, and one whose weights belong to another architecture."""
    folder.mkdir()
    data = (trained / "best.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "foreign.pt").write_text("not a checkpoint")
    from fercore.models import create_model
    ckpt = torch.load(trained / "last.pt", weights_only=True)
    ckpt["model"] = create_model("simple_cnn", width=8).state_dict()  # the config says width 16
    torch.save(ckpt, folder / "other_arch.pt")
    return {"truncated.pt": "truncated", "foreign.pt": "is not a checkpoint", "other_arch.pt": "shapes differ"}


@pytest.mark.parametrize("command", ["evaluate", "predict", "resume"])
def test_a_bad_checkpoint_is_one_line_naming_the_file(trained, tmp_path, capsys, command):
    for name, says in bad_checkpoints(trained, tmp_path / "ckpts").items():
        path = tmp_path / "ckpts" / name
        if command == "evaluate":
            argv = ["evaluate", "--checkpoint", str(path), "--dataset", "synthetic"]
        elif command == "predict":
            from fercore.predict import SAMPLE_PHOTO
            argv = ["predict", str(SAMPLE_PHOTO), "--checkpoint", str(path)]
        else:
            out = tmp_path / f"run_{name}"
            out.mkdir()
            (out / "last.pt").write_bytes(path.read_bytes())
            argv = [*TRAIN, "--out", str(out), "--resume", "--epochs", "3"]
            path = out / "last.pt"
        code, _, err = cli(capsys, *argv)
        line = one_error_line(err)
        assert code == 2 and str(path) in line and says in line, line


def train_one_epoch(capsys, dataset, root, out, *data_args):
    """``train --model simple_cnn --epochs 1`` on ``dataset`` with ``--data-arg`` for each of ``data_args``."""
    args = [a for d in data_args for a in ("--data-arg", d)]
    code, _, err = cli(capsys, "train", "--model", "simple_cnn", "--dataset", dataset, "--data-root", root, "--epochs", "1",
                       *args, "--out", str(out), "--quiet")
    assert code == 0, err


def test_evaluate_uses_the_checkpoints_fold_and_warns_on_seen_subjects(tmp_path, capsys):
    """A fold-1 model is evaluated on fold 1's test subjects; fold 0's test subjects are its training subjects."""
    from test_jaffe import make_jaffe
    make_jaffe(tmp_path / "data" / "jaffe")
    root, out = str(tmp_path / "data"), tmp_path / "fold1"
    train_one_epoch(capsys, "jaffe", root, out, "fold=1", "folds=3")
    reported = json.loads((out / "metrics.json").read_text())["test"]
    code, stdout, err = cli(capsys, "evaluate", "--checkpoint", str(out / "best.pt"), "--data-root", root)
    result = json.loads(stdout)
    assert code == 0 and err == "" and result["dataset"] == "jaffe" and result["data_args"] == {"fold": 1, "folds": 3}
    assert result["n"] == reported["n"] and result["accuracy"] == pytest.approx(reported["accuracy"])
    assert result["subjects_seen_in_training"] == []
    code, stdout, err = cli(capsys, "evaluate", "--checkpoint", str(out / "best.pt"), "--data-root", root,
                            "--dataset", "jaffe", "--data-arg", "fold=0")
    seen = json.loads(stdout)["subjects_seen_in_training"]
    assert code == 0 and seen and err.startswith("warning: ") and "not subject-independent" in err
    assert all(s in err for s in seen[:5])


def test_evaluate_a_seven_class_ckplus_model(tmp_path, capsys):
    from test_ckplus import make_original
    make_original(tmp_path / "data" / "CK+")
    root, out = str(tmp_path / "data"), tmp_path / "ck7"
    train_one_epoch(capsys, "ckplus", root, out, "classes=7", "folds=3")
    for extra in ((), ("--data-arg", "classes=7")):
        code, stdout, _ = cli(capsys, "evaluate", "--checkpoint", str(out / "best.pt"), "--dataset", "ckplus",
                              "--data-root", root, "--split", "val", *extra)
        assert code == 0 and len(json.loads(stdout)["per_class_recall"]) == 7
    code, _, err = cli(capsys, "evaluate", "--checkpoint", str(out / "best.pt"), "--data-root", root,
                       "--data-arg", "classes=8")
    assert code == 2 and "predicts 7 classes" in one_error_line(err) and "classes=7" in err
