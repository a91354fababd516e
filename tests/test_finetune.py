"""Fine-tuning, ``--init CHECKPOINT``: a run that starts from another run's weights (issue 14).

A tiny ResNet (width 0.0625: 4-8-16-32 channels) trained for one epoch on the synthetic faces is
the checkpoint; it is fine-tuned on the same 7 classes (every tensor loaded) and on a fake CK+
with 8 (a new head that keeps the 7 shared rows, contempt's fresh).
"""
from __future__ import annotations

import json
import shlex

import pytest
import torch

from fercore.cli import main
from tests.cli_helpers import cli, one_error_line
from fercore.experiment import run_experiment
from fercore.labels import EMOTIONS, EMOTIONS_7
from fercore.models import create_model, list_models
from fercore.pretrained import sha256_of
from fercore.train import class_axes, init_weights, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH = 0.0625  # not the smoke recipe's 0.125: a fine-tuned run must take the checkpoint's width
HEAD = ["head.bias", "head.weight"]
CK_ARGS = ("--data-arg", "folds=3")


def train(out, *args, model="resnet18_fer", dataset="synthetic"):
    code = main(["train", "--model", model, "--dataset", dataset, "--epochs", "1", "--out", str(out), "--quiet",
                 *map(str, args)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """best.pt of resnet18_fer at width 0.0625 after one epoch on 128 synthetic faces per split."""
    return train(tmp_path_factory.mktemp("source"), "--model-arg", f"width={WIDTH}", "--data-arg", "n=128") / "best.pt"


@pytest.fixture(scope="module")
def ck_root(tmp_path_factory):
    from test_ckplus import make_original
    root = tmp_path_factory.mktemp("data")
    make_original(root / "CK+")
    return root


@pytest.fixture(scope="module")
def ck_finetuned(source, ck_root, tmp_path_factory):
    """The checkpoint fine-tuned on CK+ fold 0 of 3 (8 classes) with lr 0: its weights stay as --init set them."""
    return train(tmp_path_factory.mktemp("ck") / "run", "--data-root", ck_root, *CK_ARGS, "--init", source,
                 "--recipe-arg", "lr=0", dataset="ckplus")


def parameters(path) -> dict:
    return read_checkpoint(path)["model"]


# ---------------------------------------------------------------- init_weights, class_axes
def test_every_tensor_is_loaded_when_the_classes_match(source):
    ckpt = read_checkpoint(source)
    model = create_model("resnet18_fer", num_classes=7, in_chans=1, width=WIDTH)
    report = init_weights(model, ckpt, source, EMOTIONS_7)
    state = model.state_dict()
    assert report == {"loaded": len(state), "reinitialised": 0, "reinitialised_tensors": [], "class_rows": None}
    for k, v in state.items():  # parameters and buffers (batch-norm statistics, num_batches_tracked)
        assert torch.equal(v, ckpt["model"][k]), k


def test_other_classes_get_a_new_head_that_keeps_the_shared_rows(source):
    ckpt = read_checkpoint(source)
    old = ckpt["model"]
    model = create_model("resnet18_fer", num_classes=8, in_chans=1, width=WIDTH)  # CK+'s 8: FER2013's 7 + contempt
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_weights(model, ckpt, source, EMOTIONS)
    state = model.state_dict()
    assert report["reinitialised_tensors"] == HEAD and report["loaded"] == len(state) - 2
    assert report["class_rows"] == {"kept": list(EMOTIONS_7), "new": ["contempt"], "dropped": []}
    for k in set(state) - set(HEAD):
        assert torch.equal(state[k], old[k]), k
    for k in HEAD:
        assert torch.equal(state[k][:7], old[k]) and torch.equal(state[k][7], fresh[k][7]), k
    # Another order of the same names: every row is kept, each under its class's new index.
    model = create_model("resnet18_fer", num_classes=7, in_chans=1, width=WIDTH)
    report = init_weights(model, ckpt, source, EMOTIONS_7[::-1])
    assert report["class_rows"]["new"] == [] and torch.equal(model.head.weight, old["head.weight"].flip(0))
    # No class in common: the head stays as initialised.
    model = create_model("resnet18_fer", num_classes=2, in_chans=1, width=WIDTH)
    fresh = model.head.weight.clone()
    report = init_weights(model, ckpt, source, ["yes", "no"])
    assert report["class_rows"] == {"kept": [], "new": ["yes", "no"], "dropped": list(EMOTIONS_7)}
    assert torch.equal(model.head.weight, fresh) and torch.equal(model.stem[0].weight, old["stem.0.weight"])


@pytest.mark.parametrize("name", list_models())
def test_class_axes_finds_each_models_head_only(name):
    """The tensors whose shape follows num_classes, found by building the model with one class more."""
    with torch.device("meta"):
        model = create_model(name, num_classes=8, width=0.125) if name.startswith("resnet") else create_model(name, num_classes=8)
    axes = class_axes(model)
    state = model.state_dict()
    assert axes and all(state[k].shape[a] == 8 for k, a in axes.items())
    if name.startswith("resnet"):  # width 0.125 gives 8-channel stages: not mistaken for 8 classes
        assert sorted(axes) == (["head.weight"] if "asoftmax" in name else HEAD)
        assert state["stem.1.weight"].shape == (8,)


# ---------------------------------------------------------------- train --init
def test_fine_tuning_on_ckplus_records_the_init_and_a_new_contempt_row(source, ck_finetuned):
    metrics = json.loads((ck_finetuned / "metrics.json").read_text())
    init = metrics["init"]
    assert init["checkpoint"] == str(source) and init["sha256"] == sha256_of(source)
    assert (init["model"], init["dataset"], init["model_args"]) == ("resnet18_fer", "synthetic", {"width": WIDTH})
    src = read_checkpoint(source)
    assert init["best_metric"] == src["best_metric"] and init["monitor"] == "val_accuracy" and init["epoch"] == 1
    assert init["reinitialised_tensors"] == HEAD and init["reinitialised"] == 2
    assert init["loaded"] == len(src["model"]) - 2 and init["class_rows"]["new"] == ["contempt"]
    assert metrics["model_args"] == {"width": WIDTH}  # the checkpoint's width, not the smoke recipe's 0.125
    assert f"--init {source}" in metrics["command"] and "--model-arg" not in metrics["command"]
    assert "fine-tuned from" in metrics["protocol"]["init"] and "contempt" in metrics["protocol"]["init"]
    assert read_checkpoint(ck_finetuned / "best.pt")["config"]["init"] == init
    # lr 0: the parameters are those init_weights set (batch-norm statistics still move in training).
    old, new = src["model"], parameters(ck_finetuned / "best.pt")
    names = [k for k, _ in create_model("resnet18_fer", num_classes=8, width=WIDTH).named_parameters()]
    for k in set(names) - set(HEAD):
        assert torch.equal(new[k], old[k]), k
    for k in HEAD:
        assert torch.equal(new[k][:7], old[k]) and not torch.equal(new[k][7], old[k][0])


def test_the_recorded_command_reproduces_the_run(source, tmp_path, capsys):
    code, out, _ = cli(capsys, "train", "--model", "resnet18_fer", "--dataset", "synthetic", "--data-arg", "n=64",
                       "--epochs", "1", "--init", source, "--out", tmp_path / "a", "--quiet")
    metrics = json.loads(out)
    assert code == 0 and metrics["init"]["loaded"] == len(read_checkpoint(source)["model"])
    assert metrics["init"]["class_rows"] is None and "every tensor loaded" in metrics["protocol"]["init"]
    argv = shlex.split(metrics["command"])[3:]
    argv[argv.index("--out") + 1] = str(tmp_path / "b")
    code, out, _ = cli(capsys, *argv, "--quiet")
    again = json.loads(out)
    assert code == 0 and again["val"] == metrics["val"] and again["test"] == metrics["test"]
    a, b = parameters(tmp_path / "a" / "best.pt"), parameters(tmp_path / "b" / "best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], read_checkpoint(source)["model"][k]) for k in a)  # it did train


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    return train(tmp_path_factory.mktemp("cnn"), "--data-arg", "n=32", model="simple_cnn") / "best.pt"


@pytest.mark.parametrize("case", ["missing", "truncated", "other_model", "other_width"])
def test_a_bad_init_is_one_line_naming_the_checkpoint_before_anything_runs(source, other_model, tmp_path, capsys, case):
    path, extra = {"missing": tmp_path / "nope.pt", "truncated": tmp_path / "half.pt", "other_model": other_model,
                   "other_width": source}[case], ()
    if case == "truncated":
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    if case == "other_width":
        extra = ("--model-arg", "width=0.125")
    code, _, err = cli(capsys, "train", "--model", "resnet18_fer", "--dataset", "synthetic", "--init", path, *extra,
                       "--out", tmp_path / "run", "--quiet")
    line = one_error_line(err)
    says = {"missing": "does not exist", "truncated": "truncated", "other_model": "holds a simple_cnn model, not resnet18_fer",
            "other_width": f"width={WIDTH} in the file, 0.125 here"}[case]
    assert code == 2 and str(path) in line and says in line, line
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- crossval --init, resume, leakage
def test_crossval_passes_the_init_to_every_fold(source, ck_root, tmp_path, capsys):
    out = tmp_path / "cv"
    argv = ["crossval", "--model", "resnet18_fer", "--dataset", "ckplus", "--data-root", ck_root, "--folds", "3",
            "--epochs", "1", "--out", out, "--quiet"]
    code, stdout, _ = cli(capsys, *argv, "--init", source)
    summary = json.loads(stdout)
    assert code == 0 and f"--init {source}" in summary["command"]
    assert summary["init"]["checkpoint"] == str(source) and summary["init"]["sha256"] == sha256_of(source)
    for k in range(3):
        metrics = json.loads((out / f"fold_{k}" / "metrics.json").read_text())
        assert metrics["init"]["checkpoint"] == str(source) and metrics["init"]["reinitialised_tensors"] == HEAD
        assert metrics["data_args"] == {"fold": k, "folds": 3} and metrics["model_args"] == {"width": WIDTH}
    # Resuming with the same --init continues (here: nothing left to train); without it, it is refused.
    code, stdout, _ = cli(capsys, *argv, "--init", source, "--resume")
    assert code == 0 and json.loads(stdout)["test_accuracy_mean"] == summary["test_accuracy_mean"]
    code, _, err = cli(capsys, *argv, "--resume")
    assert code == 2 and f"init: {str(source)!r} -> None" in one_error_line(err)


def test_init_from_another_fold_of_the_same_dataset_warns_of_seen_subjects(ck_finetuned, ck_root, tmp_path, capsys):
    """Fold 0's model trained on fold 2's subjects: fine-tuning it on fold 2 tests on faces it has seen."""
    init = ck_finetuned / "best.pt"
    metrics = run_experiment("resnet18_fer", "ckplus", ck_root, epochs=1, out=tmp_path / "leak", progress=False,
                             data_args={"fold": 2, "folds": 3}, init=init)
    seen = metrics["init"]["test_subjects_seen"]
    err = capsys.readouterr().err
    assert seen and err.startswith("warning: ") and "not subject-independent" in err and all(s in err for s in seen)
    assert metrics["init"]["class_rows"] is None  # CK+ to CK+: the same 8 classes, every tensor loaded
    metrics = run_experiment("resnet18_fer", "ckplus", ck_root, epochs=1, out=tmp_path / "ok", progress=False,
                             data_args={"fold": 1, "folds": 3}, init=init)  # fold 1 only selected fold 0's checkpoint
    assert metrics["init"]["test_subjects_seen"] == [] and "warning" not in capsys.readouterr().err
