"""The loss of each FERPlus label mode against hand-computed values, and how a run picks it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fercore.data import load_dataset
from fercore.data.simulated import write_fer2013_ferplus
from fercore.experiment import run_experiment
from fercore.losses import LabelModeLoss, loss_for
from fercore.models import create_model, get_model_info
from fercore.models.vgg import OHLSEN_DATA
from fercore.train import Trainer

LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
P = LOGITS.softmax(1)[0]


def test_multi_target_is_minus_log_of_the_best_marked_probability():
    marked = torch.tensor([[0.0, 1.0, 1.0, 0.0]])  # classes 1 and 2 marked; class 0 has the most mass but is not
    loss = LabelModeLoss("multi_target")(LOGITS, marked)
    assert loss.item() == pytest.approx(-math.log(max(P[1], P[2])), rel=1e-6)
    # Backing any marked class is enough: the loss falls as class 2 takes over, not only when class 1 does.
    assert LabelModeLoss("multi_target")(torch.tensor([[0.0, 0.0, 9.0, 0.0]]), marked) < 1e-3


def test_probability_draws_hard_labels_in_training_and_reports_the_expectation_in_evaluation():
    targets = torch.tensor([[0.7, 0.3, 0.0, 0.0]]).repeat(4000, 1)
    logits = torch.zeros(4000, 4, requires_grad=True)
    LabelModeLoss("probability")(logits, targets).backward()
    # d/dz_k of mean CE(z, y) is (p_k - [y = k]) / N: summed over the rows it counts the drawn labels.
    drawn = -(logits.grad.sum(0) - 0.25)  # p_k = 1/4 for zero logits
    assert drawn[0].item() == pytest.approx(0.7, abs=0.03) and drawn[2:].abs().max() < 1e-6
    soft = -(targets[:1] * LOGITS.log_softmax(1)).sum()
    assert LabelModeLoss("probability")(LOGITS, targets[:1]).item() == pytest.approx(soft.item(), rel=1e-6)


@pytest.mark.parametrize("mode", ["majority", "crossentropy", "probability", "multi_target"])
def test_hard_labels_are_plain_cross_entropy_in_every_mode(mode):
    y = torch.tensor([1])
    assert loss_for(mode)(LOGITS, y).item() == pytest.approx(F.cross_entropy(LOGITS, y).item(), rel=1e-6)


def test_bad_modes_and_weights_are_named():
    with pytest.raises(ValueError, match="unknown label mode 'vote'"):
        LabelModeLoss("vote")
    with pytest.raises(ValueError, match="class_weights cannot weigh the multi_target loss"):
        LabelModeLoss("multi_target", torch.ones(4))


@pytest.mark.parametrize("mode,kind", [("majority", nn.CrossEntropyLoss), ("crossentropy", nn.CrossEntropyLoss),
                                       ("probability", LabelModeLoss), ("multi_target", LabelModeLoss)])
def test_the_training_sets_label_mode_picks_the_trainers_loss(mode, kind):
    train = load_dataset("simulated_ferplus", None, "train", label_mode=mode)
    assert train.label_mode == mode and train.subset([0, 1]).label_mode == mode
    recipe = get_model_info("simple_cnn").recipes["smoke"]
    trainer = Trainer.from_recipe(create_model("simple_cnn", num_classes=8), recipe, train, device="cpu", progress=False)
    assert type(trainer.loss) is kind and getattr(trainer.loss, "mode", mode) == mode


def test_eval_label_mode_gives_val_and_test_majority_labels_and_leaves_train_alone():
    kw = dict(label_mode="multi_target", eval_label_mode="majority")
    train, val = (load_dataset("simulated_ferplus", None, s, **kw) for s in ("train", "val"))
    majority = load_dataset("simulated_ferplus", None, "val")
    assert train.targets.ndim == 2 and train.label_mode == "multi_target"
    assert val.label_mode == "majority" and torch.equal(val.targets, majority.targets)


def test_vgg_fer_on_ferplus_trains_on_the_ohlsen_data_unless_told_otherwise(tmp_path):
    write_fer2013_ferplus(tmp_path / "data", sizes={"Training": 300, "PublicTest": 120, "PrivateTest": 60})
    m = run_experiment("vgg_fer", "ferplus", tmp_path / "data", scale="smoke", epochs=1, out=tmp_path / "run",
                       progress=False)
    assert m["recipe_name"] == "vgg_fer/ferplus/smoke" and m["data_args"] == OHLSEN_DATA
    assert "--data-arg" not in m["command"]  # the recipe's settings come back with the recipe
    expected = load_dataset("ferplus", tmp_path / "data", "train", **OHLSEN_DATA)
    assert m["n_train"] == len(expected) and len(expected.classes) == 7
    mine = run_experiment("vgg_fer", "ferplus", tmp_path / "data", scale="smoke", epochs=1, out=tmp_path / "mine",
                          progress=False, data_args={"label_mode": "majority"})
    assert mine["data_args"] == {**OHLSEN_DATA, "label_mode": "majority"} and "label_mode=majority" in mine["command"]
    info = get_model_info("vgg_fer")  # other datasets keep the general recipe
    assert info.recipe("smoke", "simulated_ferplus") == info.recipes["smoke"] and not info.recipes["smoke"].data_args
    assert info.recipe_name("standard", "fer2013") == "vgg_fer/standard"
    barsoum = get_model_info("vgg13_ferplus").recipe("standard", "ferplus")  # selects on majority labels
    assert barsoum.data_args == {"eval_label_mode": "majority"} and barsoum.optimizer == "sgd"
