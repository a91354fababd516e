"""vgg_fer: the report's layer list, its size, and its recipe's early stopping on validation loss."""
from __future__ import annotations

import torch
import torch.nn as nn

from fercore.data import load_dataset
from fercore.models import create_model, get_model_info
from fercore.train import Trainer


def conv(c_in, c_out):
    return c_in * c_out * 9 + c_out


def test_layers_follow_the_report():
    model = create_model("vgg_fer")
    widths = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert widths == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    assert all(m.kernel_size == (3, 3) for m in model.features if isinstance(m, nn.Conv2d))
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(256 * 3 * 3, 1024), (1024, 7)]


def test_parameter_count():
    pairs = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    expected = sum(conv(a, b) for a, b in pairs) + (2304 * 1024 + 1024) + (1024 * 7 + 7)
    assert sum(p.numel() for p in create_model("vgg_fer").parameters()) == expected


def test_output_and_dropout_obeys_eval():
    model = create_model("vgg_fer", num_classes=8)
    x = torch.randn(4, 1, 48, 48)
    model.eval()
    assert model(x).shape == (4, 8) and torch.equal(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_recipe_selects_and_stops_on_validation_loss(tmp_path):
    recipe = get_model_info("vgg_fer").recipes["standard"]
    assert recipe.monitor == "val_loss" and recipe.optimizer == "adam" and recipe.lr == 1e-3 and recipe.patience
    data = load_dataset("synthetic", split="val")
    trainer = Trainer.from_recipe(create_model("vgg_fer"), recipe.with_overrides(epochs=2), device="cpu",
                                  progress=False, out_dir=tmp_path)
    assert trainer.monitor == "val_loss" and trainer.mode == "min"
    history = trainer.fit(data.subset(range(64)), data.subset(range(64, 128)), epochs=2)
    best = min(history, key=lambda r: r["val_loss"])
    assert trainer.best_epoch == best["epoch"]
