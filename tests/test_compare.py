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
