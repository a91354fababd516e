"""Experiments above one run: subject-independent cross-validation and a hyper-parameter sweep."""
from __future__ import annotations

import json
import os

import pytest

from fercore.cli import main
from fercore.experiment import cross_validate, sweep


def test_crossval_tests_every_subject_once_and_summarises(tmp_path, capsys):
    from test_jaffe import make_jaffe
    make_jaffe(tmp_path / "data" / "jaffe")
    out = tmp_path / "cv"
    code = main(["crossval", "--model", "simple_cnn", "--dataset", "jaffe", "--data-root", str(tmp_path / "data"),
                 "--folds", "3", "--epochs", "1", "--out", str(out), "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary == json.loads((out / "cv.json").read_text())
    assert [f["fold"] for f in summary["per_fold"]] == [0, 1, 2]
    # Every image is tested exactly once across the folds, and train/val/test never share a subject.
    assert sum(f["n_test"] for f in summary["per_fold"]) == len(list((tmp_path / "data" / "jaffe").glob("*.tif*")))
    for k in range(3):
        metrics = json.loads((out / f"fold_{k}" / "metrics.json").read_text())
        assert metrics["data_args"] == {"fold": k, "folds": 3}
        assert "subject-independent" in metrics["protocol"]["description"]
    accs = [f["test_accuracy"] for f in summary["per_fold"]]
    assert summary["test_accuracy_mean"] == pytest.approx(sum(accs) / 3)
    assert summary["command"].startswith("python -m fercore crossval --model simple_cnn --dataset jaffe")
    assert "--folds 3" in summary["command"] and "fold_0" not in summary["command"]
    # Resumed (nothing left to train), cv.json is replaced whole: a reader of the old file keeps it intact.
    (out / "cv.json").write_text(json.dumps({**summary, "note": "the earlier file"}))
    os.link(out / "cv.json", tmp_path / "old_cv.json")
    assert main(["crossval", "--model", "simple_cnn", "--dataset", "jaffe", "--data-root", str(tmp_path / "data"),
                 "--folds", "3", "--epochs", "1", "--out", str(out), "--resume", "--quiet"]) == 0
    assert json.loads((tmp_path / "old_cv.json").read_text())["note"] == "the earlier file"
    assert json.loads((out / "cv.json").read_text()) == summary == json.loads(capsys.readouterr().out)
    assert not (out / ".lock").exists() and not list(out.glob(".*.tmp"))


def test_sweep_chooses_on_validation_and_keeps_every_run(tmp_path):
    result = sweep("deep_emotion", "synthetic", param="fc_l2", values=[0.0, 0.5], out=tmp_path, epochs=1,
                   progress=False)
    vals = {row["fc_l2"]: row["val_accuracy"] for row in result["rows"]}
    assert result["best"] == max(vals, key=vals.get)
    assert result["metrics"]["model_args"] == {"fc_l2": result["best"]}
    assert [r["chosen"] for r in result["rows"]].count(True) == 1
    assert result["out"] == str(tmp_path / f"fc_l2={result['best']}")
    for v in (0.0, 0.5):
        assert (tmp_path / f"fc_l2={v}" / "best.pt").exists()


def test_paper_table_reports_test_else_val_folds_and_not_run():
    from fercore.experiment import paper_table
    with_test = {"model": "m", "dataset": "synthetic", "val": {"accuracy": 0.5}, "test": {"accuracy": 0.625},
                 "epochs_run": 6, "best_epoch": 4, "scale": "smoke", "command": "cmd-a"}
    val_only = {"model": "m", "dataset": "fer2013", "val": {"accuracy": 0.58}, "test": None,
                "epochs_run": 50, "best_epoch": 45, "scale": "standard", "command": "cmd-b"}
    folds = {"model": "m", "dataset": "ckplus", "test_accuracy_mean": 0.9, "folds": 10, "command": "cmd-c"}
    leaky = {"model": "m2", "dataset": "ckplus", "test_accuracy_mean": 0.98, "test_accuracy_std": 0.0123, "folds": 10,
             "command": "cmd-d", "protocol": "10-fold cross-validation: LEAKY image-level 10-fold ..."}
    paper = {("m", "fer2013"): 70.0, ("m", "ckplus"): 98.0, ("m", "jaffe"): 92.8}
    rows = paper_table(paper, [(with_test, "nb"), (val_only, "ref"), (folds, "cv"), (leaky, "cv2")])
    assert rows[-2]["ours %"] == "98.0 ± 1.2" and "image-level (leaky)" in rows[-2]["split"]
    rows.pop(-2)
    by = {r["dataset"]: r for r in rows}
    assert by["synthetic"]["ours %"] == 62.5 and by["synthetic"]["split"] == "test" and by["synthetic"]["paper %"] == "—"
    assert by["fer2013"]["ours %"] == 58.0 and by["fer2013"]["split"] == "val" and by["fer2013"]["paper %"] == 70.0
    assert by["fer2013"]["epochs (best)"] == "50 (45)"
    assert by["ckplus"]["ours %"] == 90.0 and "mean ± std of 10 subject folds" in by["ckplus"]["split"]
    assert by["jaffe"]["ours %"] == "not run" and by["jaffe"]["command"].startswith("python -m fercore crossval --model m --dataset jaffe")
    assert len(rows) == 4


def test_paper_table_matches_a_variant_by_model_args_and_shows_ten_crop():
    from fercore.experiment import paper_table
    run = lambda order, acc, tta=None: {"model": "r", "dataset": "fer2013", "val": {"accuracy": acc}, "test": None,
                                        "epochs_run": 15, "best_epoch": 15, "scale": "standard", "command": f"cmd {order}",
                                        "model_args": {"width": 0.25, **({"cbam_order": order} if order else {})},
                                        **({"tta": {"ten_crop": {"accuracy": tta}}} if tta else {})}
    paper = {("r", "fer2013"): 73.5, ("r", "fer2013", "cbam_order=spatial_first"): 73.4,
             ("r", "fer2013", "cbam_order=parallel"): 73.2}
    rows = paper_table(paper, [(run(None, 0.6, 0.62), "a"), (run("spatial_first", 0.59), "b"),
                               (run("channel_first", 0.61), "c")])
    by = {r["command"]: r for r in rows}
    assert by["cmd None"]["paper %"] == 73.5 and by["cmd None"]["ten_crop %"] == 62.0 and by["cmd None"]["model"] == "r"
    assert by["cmd spatial_first"]["paper %"] == 73.4 and by["cmd spatial_first"]["model"] == "r (cbam_order=spatial_first)"
    assert by["cmd spatial_first"]["ten_crop %"] == "—"
    assert by["cmd channel_first"]["paper %"] == 73.5  # the default order, typed: the model's own figure
    missing = [r for r in rows if r["ours %"] == "not run"]
    assert [r["model"] for r in missing] == ["r (cbam_order=parallel)"] and "--model-arg cbam_order=parallel" in missing[0]["command"]
    assert paper_table({("r", "fer2013"): 1.0}, [(run(None, 0.5), "a")])[0].keys() == rows[0].keys() - {"ten_crop %"}


def test_recipe_arg_on_the_command_line_weights_classes_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "simple_cnn", "--dataset", "synthetic", "--epochs", "1", "--out", str(out),
                 "--recipe-arg", "class_weights=balanced", "--recipe-arg", "augment.hflip=false", "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    assert code == 0 and metrics["recipe"]["class_weights"] == "balanced"
    assert metrics["recipe"]["augment"]["hflip"] is False
    assert metrics["recipe_args"] == {"class_weights": "balanced", "augment.hflip": False}
    assert len(metrics["class_weights"]) == 7 and all(w > 0 for w in metrics["class_weights"])
    assert "--recipe-arg class_weights=balanced --recipe-arg augment.hflip=false" in metrics["command"]
    assert main(["train", "--model", "simple_cnn", "--dataset", "synthetic", "--out", str(tmp_path / "bad"),
                 "--recipe-arg", "epoch=3"]) == 2
    assert "unknown recipe field 'epoch'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _metrics(**kw):
    return {"model": "vgg_fer", "dataset": "fer2013", "command": "cmd", "val": {"accuracy": 0.5}, "history": [], **kw}


def test_reference_runs_in_name_order_filtered_by_pattern(tmp_path):
    from fercore.experiment import recipe_label, reference_runs
    (tmp_path / "01_b_fer2013.json").write_text(json.dumps(_metrics(recipe_args={"class_weights": "balanced"})))
    (tmp_path / "01_a_fer2013.json").write_text(json.dumps(_metrics()))
    (tmp_path / "02_a_fer2013.json").write_text(json.dumps(_metrics(model="deep_emotion")))
    runs = reference_runs("01_*fer2013*.json", tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in runs] == ["01_a_fer2013.json", "01_b_fer2013.json"]
    assert [recipe_label(m) for m in runs.values()] == ["recipe as is", "class_weights=balanced"]
    assert recipe_label(_metrics(recipe_args={"lr": 0.0003, "augment.rotate": 0})) == "lr=0.0003, augment.rotate=0"
    assert reference_runs("03_*.json", tmp_path) == {}


def test_reference_runs_name_a_broken_or_foreign_file(tmp_path):
    from fercore.experiment import reference_runs
    (tmp_path / "01_broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"01_broken\.json is not valid JSON"):
        reference_runs("01_*.json", tmp_path)
    (tmp_path / "01_broken.json").write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"01_broken\.json lacks model, dataset, command, val, history"):
        reference_runs("01_*.json", tmp_path)
    (tmp_path / "01_broken.json").write_text(json.dumps({"model": "m", "dataset": "ckplus", "command": "c",
                                                         "test_accuracy_mean": 0.9}))
    with pytest.raises(ValueError, match=r"01_broken\.json lacks folds, per_fold"):
        reference_runs("01_*.json", tmp_path)


def test_crossval_refuses_an_earlier_crossval_and_a_bad_fold_count(tmp_path, capsys):
    out = tmp_path / "cv"
    (out / "fold_0").mkdir(parents=True)
    (out / "cv.json").write_text('{"test_accuracy_mean": 0.9}')
    argv = ["crossval", "--model", "simple_cnn", "--dataset", "jaffe", "--data-root", str(tmp_path / "nowhere"),
            "--epochs", "1", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "already holds a run (cv.json, fold_0)" in capsys.readouterr().err
    assert (out / "cv.json").read_text() == '{"test_accuracy_mean": 0.9}'
    assert main([*argv, "--out", str(tmp_path / "new"), "--folds", "0"]) == 2
    assert "folds must be a positive integer, got 0" in capsys.readouterr().err


def test_label_mode_table_reads_each_runs_mode_and_scoring(tmp_path):
    from fercore.experiment import label_mode_table
    base = dict(dataset="ferplus", epochs_run=5, best_epoch=4, n_train=25000, seconds=600)
    soft = _metrics(**base, data_args={"label_mode": "crossentropy", "classes": 8, "eval_label_mode": "majority"},
                    val={"accuracy": 0.8, "macro_f1": 0.6, "n": 3191})
    ohlsen = _metrics(**base, data_args={"label_mode": "crossentropy", "classes": 7, "min_top_probability": 0.5},
                      val={"accuracy": 0.838, "macro_f1": 0.7, "n": 3289})
    plain = _metrics(**base, data_args={}, val={"accuracy": 0.75, "macro_f1": 0.5, "n": 3199})
    rows = label_mode_table({"crossentropy": "84.7 ± 0.5"}, [soft, ohlsen, plain])
    assert [r["label mode"] for r in rows] == ["crossentropy", "crossentropy", "majority"]
    assert rows[0]["scored on"] == "majority labels, 3,191 faces" and rows[0]["paper %"] == "84.7 ± 0.5"
    assert rows[1]["scored on"] == "crossentropy labels, top emotion > 50% of the votes, 3,289 faces"
    assert rows[1]["classes"] == 7 and rows[2]["paper %"] == "—" and rows[2]["val %"] == 75.0
    with pytest.raises(ValueError, match="compares FERPlus runs; got a 'fer2013' run"):
        label_mode_table({}, [_metrics()])
