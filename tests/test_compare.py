"""fercore.compare: cost per face, cross-dataset scoring with the canonical labels, a greedy ensemble chosen on validation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fercore.compare import cross_dataset, ensemble_proba, greedy_ensemble, model_cost
from fercore.data.base import FERDataset
from fercore.labels import EMOTIONS, EMOTIONS_7

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(48 * 48, 7))
        self.default_cfg = {"input_size": (1, 48, 48), "num_classes": 7, "mean": (0.5,), "std": (0.5,)}


def test_cost_counts_parameters_and_two_flops_per_multiply_add():
    cost = model_cost(Linear(), repeats=3, warmup=1)
    assert cost["parameters"] == 48 * 48 * 7 + 7
    assert cost["flops"] == 2 * 48 * 48 * 7 and cost["latency_ms"] > 0


class Oracle(nn.Module):
    """Answers the class written into each face's first pixel (10 x class), over its own ``k`` classes."""

    def __init__(self, k: int, always=None):
        super().__init__()
        self.always, self.k = always, k
        self.default_cfg = {"input_size": (1, 48, 48), "num_classes": k, "mean": (0.5,), "std": (0.5,)}
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        cls = ((x[:, 0, 0, 0] * 0.5 + 0.5) * 255 / 10).round().long()
        if self.always is not None:
            cls = torch.full_like(cls, self.always)
        return nn.functional.one_hot(cls.clamp(max=self.k - 1), self.k).float() * 10 + self.w


def faces(labels, classes):
    images = torch.zeros(len(labels), 1, 48, 48, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor(labels) * 10
    return FERDataset(images, torch.tensor(labels), classes, {}, name="t", split="test")


def test_cross_dataset_leaves_out_classes_the_model_lacks_and_counts_them():
    data = faces([0, 1, 3, 7, 7, 5], EMOTIONS)           # two contempt faces
    r = cross_dataset(Oracle(7), data)
    assert r["n"] == 4 and r["n_left_out"] == 2 and r["left_out_classes"] == ["contempt"] and r["accuracy"] == 1.0
    neutral = cross_dataset(Oracle(7, always=6), faces([0, 6, 3, 6], EMOTIONS_7))
    assert neutral["accuracy"] == 0.5  # a neutral answer is right only on neutral faces
    eight = cross_dataset(Oracle(8), faces([0, 3, 5], EMOTIONS_7))
    assert eight["n_left_out"] == 0 and eight["accuracy"] == 1.0 and len(eight["confusion"]) == 8


def test_greedy_ensemble_finds_complementary_members_on_validation():
    targets = torch.zeros(10, dtype=torch.long)
    p = lambda right: torch.stack([torch.tensor(right), 1 - torch.tensor(right)], 1)  # noqa: E731
    probs = {"a": p([0.6] * 6 + [0.45] * 4),   # 60% alone
             "b": p([0.45] * 6 + [0.9] * 4),   # 40% alone; with a, every face
             "c": p([0.4] * 10)}               # never right
    weights = greedy_ensemble(probs, targets)
    assert weights == {"a": 1, "b": 1}
    assert (ensemble_proba(probs, weights).argmax(1) == targets).all()
    assert greedy_ensemble({"a": probs["a"], "c": probs["c"]}, targets) == {"a": 1}  # c adds nothing: a alone
    with pytest.raises(ValueError, match="same 10 faces"):
        greedy_ensemble({"a": probs["a"], "x": probs["a"][:5]}, targets)
    with pytest.raises(ValueError, match="member"):
        ensemble_proba(probs, {"z": 1})


def test_cost_benchmark_prints_json_for_the_models_asked(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cost.py"
    out = subprocess.run([sys.executable, str(script), "--only", "ran", "--repeats", "1"], capture_output=True,
                         text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}).stdout
    ran = json.loads(out)["models"]["ran"]
    assert ran["model_args"] == {"width": 0.25, "crop_size": 32} and ran["parameters"] == 702330 and ran["flops"] > 0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two one-epoch simple_cnn runs on the offline synthetic faces (seeds 0 and 1)."""
    from fercore.experiment import run_experiment

    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        run_experiment("simple_cnn", "synthetic", scale="smoke", epochs=1, seed=seed, out=root / f"run{seed}", progress=False)
    return [root / "run0" / "best.pt", root / "run1" / "best.pt"]


def test_ensemble_is_chosen_on_val_and_reported_on_test_beside_the_best_single_run(two_runs):
    from fercore.compare import ensemble_experiment
    from fercore.data import load_dataset
    from fercore.train import Trainer, load_model

    r = ensemble_experiment(two_runs, "synthetic")
    assert sorted(r["members"]) == ["simple_cnn:run0", "simple_cnn:run1"]  # one model twice: told apart by folder
    assert set(r["weights"]) <= set(r["members"]) and "test split" in r["protocol"]
    assert r["best_single"] == max(r["members"], key=lambda n: r["members"][n]["select_accuracy"])
    test = load_dataset("synthetic", None, "test")
    probs = {f"simple_cnn:{p.parent.name}": Trainer(load_model(p), progress=False).predict_proba(test.images) for p in two_runs}
    expected = (ensemble_proba(probs, r["weights"]).argmax(1) == test.labels()).float().mean().item()
    assert r["ensemble_report"]["accuracy"] == pytest.approx(expected) and r["ensemble_report"]["n"] == len(test)
    single = (probs[r["best_single"]].argmax(1) == test.labels()).float().mean().item()
    assert r["best_single_report"]["accuracy"] == pytest.approx(single)


def test_ensemble_without_a_test_split_selects_on_one_half_of_val_and_reports_the_other(two_runs, monkeypatch):
    import fercore.experiment
    from fercore.compare import ensemble_experiment
    from fercore.data import load_dataset

    monkeypatch.setattr(fercore.experiment, "load_optional_split", lambda *a, **k: (None, "no PrivateTest here"))
    r = ensemble_experiment(two_runs, "synthetic", seed=3)
    n_val = len(load_dataset("synthetic", None, "val"))
    assert "no PrivateTest here" in r["protocol"] and "half" in r["protocol"]
    assert r["ensemble_report"]["n"] == n_val - n_val // 2 and r["best_single_report"]["n"] == n_val - n_val // 2


def test_ensemble_refuses_one_member_and_members_of_other_classes(two_runs):
    from fercore.compare import ensemble_experiment

    with pytest.raises(ValueError, match="at least two"):
        ensemble_experiment(two_runs[:1], "synthetic")
    with pytest.raises(ValueError, match="7 classes.*8"):
        ensemble_experiment(two_runs, "simulated_ferplus", data_root=None)


def test_cross_dataset_command_scores_a_checkpoint_on_another_label_space(two_runs, capsys):
    import json

    from fercore.cli import main
    from fercore.data import load_dataset

    assert main(["cross-dataset", "--dataset", "simulated_ferplus", "--split", "val", "--checkpoint", str(two_runs[0])]) == 0
    out = json.loads(capsys.readouterr().out)
    (r,) = out["results"]  # --checkpoint alone: no shipped weights scored
    contempt = int((load_dataset("simulated_ferplus", None, "val").labels() == 7).sum())
    assert out["command"].startswith("python -m fercore cross-dataset --dataset simulated_ferplus")
    assert r["model"] == "simple_cnn" and r["trained_on"] == "synthetic" and contempt > 0
    assert r["n_left_out"] == contempt and r["n"] + contempt == out["n_faces"] and r["left_out_classes"] == ["contempt"]
    assert main(["ensemble", str(two_runs[0]), "--dataset", "synthetic"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_shared_confusions_rank_the_mistakes_every_method_makes_first():
    from fercore.compare import shared_confusions

    a = ([[8, 2, 0], [0, 10, 0], [5, 0, 5]], ["sad", "neutral", "fear"])  # sad->neutral 20%, fear->sad 50%
    b = ([[7, 3], [0, 10]], ["sad", "neutral"])                            # sad->neutral 30%; no fear
    rows = shared_confusions({"a": a, "b": b})
    assert [(r["true"], r["predicted"]) for r in rows] == [("sad", "neutral"), ("neutral", "sad")]  # fear: not in b
    assert rows[0]["least %"] == 20.0 and rows[0]["a %"] == 20.0 and rows[0]["b %"] == 30.0 and rows[1]["least %"] == 0.0


def test_ensemble_and_cross_dataset_rows_read_the_commands_outputs():
    from fercore.compare import cross_dataset_rows, ensemble_table

    result = {"members": {"a": {"select_accuracy": 0.5, "report_accuracy": 0.4}, "b": {"select_accuracy": 0.6, "report_accuracy": 0.55}},
              "weights": {"b": 2, "a": 1}, "best_single": "b", "ensemble_select_accuracy": 0.7, "ensemble_report": {"accuracy": 0.6}}
    rows = ensemble_table(result)
    assert [r["method"] for r in rows] == ["a", "b (best single)", "ensemble"] and rows[-1]["weight"] == 3
    assert rows[1]["report %"] == 55.0 and rows[-1]["report %"] == 60.0
    scored = cross_dataset(Oracle(7, always=6), faces([0, 3, 7], EMOTIONS))  # answers neutral: right on none
    (row,) = cross_dataset_rows({"results": [{"model": "m", "trained_on": "fer2013", **scored}]})
    assert row["answered neutral %"] == 100.0 and row["left out"] == "1 (contempt)" and row["accuracy %"] == 0.0


def test_recipe_cost_builds_the_model_as_its_recipe_does():
    from fercore.compare import recipe_cost
    from fercore.models import create_model

    cost = recipe_cost("ran", "standard", repeats=1)
    assert cost["model_args"] == {"width": 0.25, "crop_size": 32}
    assert cost["parameters"] == sum(p.numel() for p in create_model("ran", width=0.25, crop_size=32).parameters())
    assert cost["parameters"] < sum(p.numel() for p in create_model("ran").parameters())  # not the default width
