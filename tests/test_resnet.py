"""ResNet18 + CBAM + A-Softmax: sizes, CBAM's gates, the recipes, ten-crop TTA, training through the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

from fercore.cli import main
from fercore.data import load_dataset
from fercore.data.augment import RandomCropPad, RandomHFlip, build_augment
from fercore.models import create_model, get_model_info
from fercore.models.resnet import CBAM
from fercore.train import Trainer, load_model
from fercore.transforms import ModelInput, predict_logits

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ("resnet18_fer", "resnet18_cbam", "resnet18_cbam_asoftmax")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_is_torchvisions_resnet18_with_a_3x3_grey_stem():
    # torchvision's ImageNet ResNet18 for 7 classes, less its 7x7 RGB stem, plus a 3x3 grey one.
    expected = n_params(torchvision.models.resnet18(num_classes=7)) - 7 * 7 * 3 * 64 + 3 * 3 * 1 * 64
    assert n_params(create_model("resnet18_fer")) == expected == 11_171_271
    # CBAM in each of the 2 blocks per stage: the shared MLP C -> C/16 -> C with biases, the 7x7 conv 2 -> 1
    # without bias and its batch norm.
    cbam = sum(2 * (2 * c * (c // 16) + c // 16 + c + 2 * 49 + 2) for c in (64, 128, 256, 512))
    assert n_params(create_model("resnet18_cbam")) == expected + cbam
    assert n_params(create_model("resnet18_cbam_asoftmax")) == expected + cbam - 7  # A-Softmax has no bias


@pytest.mark.parametrize("size", [44, 48])
def test_shapes_at_44_and_48_px(size):
    for name in NAMES:
        model = create_model(name, width=0.25, num_classes=8).eval()
        logits, maps = model.forward_with_attention(torch.randn(2, 1, size, size))
        assert logits.shape == (2, 8)
    sides = [size, size, -(-size // 2), -(-size // 2), -(-size // 4), -(-size // 4), -(-size // 8), -(-size // 8)]
    assert [maps[f"{b}.spatial"].shape for b in model.block_names] == [(2, s, s) for s in sides]
    assert [maps[f"{b}.channel"].shape for b in model.block_names] == [(2, c) for c in (16, 16, 32, 32, 64, 64, 128, 128)]


def test_forward_with_attention_names_every_blocks_gates():
    model = create_model("resnet18_cbam", width=0.25).eval()
    x = torch.randn(3, 1, 44, 44)
    logits, maps = model.forward_with_attention(x)
    blocks = [f"layer{s}.{i}" for s in (1, 2, 3, 4) for i in (0, 1)]
    assert sorted(maps) == sorted(f"{b}.{g}" for b in blocks for g in ("channel", "spatial"))
    assert torch.allclose(logits, model(x))
    assert create_model("resnet18_fer", width=0.25).eval().forward_with_attention(x)[1] == {}


def test_cbam_gates_follow_the_official_code():
    torch.manual_seed(0)
    gate, x = CBAM(32).eval(), torch.randn(2, 32, 11, 11)
    nn.init.ones_(gate.spatial.bn.weight)  # as after training; it starts at 0 (every position 0.5)
    out, maps = gate(x)
    mlp = gate.channel.mlp  # ONE MLP for both descriptors
    wc = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    y = x * wc[:, :, None, None]
    ws = torch.sigmoid(gate.spatial.bn(gate.spatial.conv(torch.cat([y.amax(1, keepdim=True), y.mean(1, keepdim=True)], 1))))
    assert maps["channel"].shape == (2, 32) and maps["spatial"].shape == (2, 11, 11)
    assert torch.allclose(maps["channel"], wc) and torch.allclose(maps["spatial"], ws[:, 0])
    assert torch.allclose(out, y * ws)
    assert [m.kernel_size for m in gate.modules() if isinstance(m, nn.Conv2d)] == [(7, 7)]
    assert torch.allclose(CBAM(32).spatial(x), torch.full((2, 1, 11, 11), 0.5))  # the zero start


def test_cbam_order_changes_the_output():
    torch.manual_seed(0)
    x, outputs = torch.randn(2, 32, 11, 11), {}
    for order in ("channel_first", "spatial_first", "parallel"):
        torch.manual_seed(1)
        gate = CBAM(32, order=order).eval()
        nn.init.ones_(gate.spatial.bn.weight)
        outputs[order] = gate(x)[0]
    assert not torch.allclose(outputs["channel_first"], outputs["spatial_first"])
    assert not torch.allclose(outputs["channel_first"], outputs["parallel"])
    assert not torch.allclose(outputs["spatial_first"], outputs["parallel"])
    torch.manual_seed(1)
    parallel = CBAM(32, order="parallel").eval()
    nn.init.ones_(parallel.spatial.bn.weight)
    out, maps = parallel(x)  # both gates from the same input, applied together
    assert torch.allclose(maps["spatial"], torch.sigmoid(parallel.spatial.bn(parallel.spatial.conv(
        torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1))))[:, 0])
    assert torch.allclose(out, x * maps["channel"][:, :, None, None] * maps["spatial"][:, None])


def test_bad_arguments_are_one_line_value_errors():
    with pytest.raises(ValueError, match="cbam_order must be one of channel_first, spatial_first, parallel, got 'side'"):
        create_model("resnet18_cbam", cbam_order="side")
    with pytest.raises(ValueError, match="width multiplies the channels 64-128-256-512 and must be > 0, got 0"):
        create_model("resnet18_fer", width=0)
    with pytest.raises(ValueError, match="has no argument 'cbam_order'"):
        create_model("resnet18_fer", cbam_order="parallel")


def test_embed_dim_puts_a_linear_layer_of_that_size_before_the_head():
    # SphereFace's fc5: notebook 04's A-Softmax lesson draws 2-D features on the circle.
    x = torch.randn(3, 1, 44, 44)
    for name in NAMES:
        model = create_model(name, width=0.125, embed_dim=2).eval()
        feats, _ = model.features(x)
        assert feats.shape == (3, 2) and model.head.weight.shape == (7, 2)
        assert torch.allclose(model(x), model.head(feats))
        assert n_params(model) == n_params(create_model(name, width=0.125)) - (64 - 2) * model.head.weight.shape[0] + 64 * 2 + 2
    assert create_model("resnet18_cbam_asoftmax", width=0.125, gamma=1.0).head.gamma == 1.0


def test_recipes_one_path_the_paper_at_full_and_a_narrower_net_below():
    infos = [get_model_info(n) for n in NAMES]
    assert all(i.recipes == infos[0].recipes and i.input_size == (1, 44, 44) and i.crop_pct is None for i in infos)
    full = infos[0].recipe("full")
    assert (full.epochs, full.batch_size, full.optimizer, full.lr, full.momentum, full.weight_decay, full.scheduler) == (
        300, 64, "sgd", 0.1, 0.9, 5e-4, "cosine")
    assert full.model_args == {}  # width 1
    for scale in ("smoke", "standard"):
        recipe = infos[0].recipe(scale)
        assert recipe.model_args["width"] < 1 and recipe.augment == full.augment
    ops = build_augment(**full.augment).ops  # random 44-px crops of the 48-px faces, and mirrors
    assert [type(op) for op in ops] == [RandomCropPad, RandomHFlip] and ops[0].size == 44 and ops[0].padding == 0
    faces = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    model = create_model("resnet18_fer", width=0.25)
    assert ModelInput(model)(faces, build_augment(**full.augment)).shape == (5, 1, 44, 44)
    # At test time, the central 44 px of the face, not a resize.
    centre = (faces[..., 2:46, 2:46].float() / 255 - 0.5) / 0.5
    assert torch.allclose(ModelInput(model)(faces), centre)


def test_ten_crop_tta_is_torchvisions_tencrop_of_44_px_and_averages_the_logits():
    torch.manual_seed(0)
    model = create_model("resnet18_cbam", width=0.25).eval()
    faces = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    crops = v2.TenCrop(44)(faces.float() / 255)  # 10 tensors (3, 1, 44, 44): corners, centre, then mirrored
    views, v = ModelInput(model).views(faces, "ten_crop")
    assert v == 10 and torch.equal(views, (torch.stack(crops, 1).flatten(0, 1) - 0.5) / 0.5)
    with torch.no_grad():
        expected = torch.stack([model((c - 0.5) / 0.5) for c in crops], 1).mean(1)
    torch.testing.assert_close(predict_logits(model, faces, "ten_crop"), expected, rtol=1e-4, atol=1e-5)


def test_the_trainer_gives_the_head_its_targets_and_lambda_survives_resume(tmp_path):
    data = load_dataset("synthetic", split="val", n=64)

    def trainer():
        model = create_model("resnet18_cbam_asoftmax", width=0.125)
        return Trainer(model, device="cpu", progress=False, out_dir=tmp_path, batch_size=16, seed=0,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.01))

    first = trainer()
    first.fit(data, data, epochs=1)  # validation does not count
    assert first.model.head.iteration.item() == 4  # 64 / 16 training steps
    assert torch.load(tmp_path / "last.pt", weights_only=True)["model"]["head.iteration"].item() == 4
    resumed = trainer()
    resumed.fit(data, data, epochs=2, resume=True)
    head = resumed.model.head
    assert head.iteration.item() == 8 and head.lam.item() == pytest.approx(1000 / (1 + 0.12 * 8))
    assert load_model(tmp_path / "last.pt").head.iteration.item() == 8


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet") / "run"
    code = main(["train", "--model", "resnet18_cbam_asoftmax", "--dataset", "synthetic", "--scale", "smoke",
                 "--epochs", "1", "--recipe-arg", "train_subset=128", "--recipe-arg", "val_subset=64",
                 "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_smoke_training_through_the_cli_uses_the_recipes_width(smoke_run):
    m = json.loads((smoke_run / "metrics.json").read_text())
    assert m["model"] == "resnet18_cbam_asoftmax" and m["epochs_run"] == 1 and 0 <= m["test"]["accuracy"] <= 1
    assert m["model_args"] == {"width": 0.125} and "--model-arg" not in m["command"]  # the recipe's, not typed
    assert m["recipe"]["augment"] == {"output_size": 44, "hflip": True}
    model = load_model(smoke_run / "best.pt")
    assert model.blocks[0].conv1.out_channels == 8 and model.head.iteration.item() == 4  # 128 / 32 steps


def test_evaluate_ten_crop_on_the_checkpoint(smoke_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(smoke_run / "best.pt"), "--split", "val", "--data-arg", "n=64",
                 "--tta", "ten_crop"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tta"] == "ten_crop" and result["n"] == 64
    # The same figure from torchvision's TenCrop and the model's plain (no-margin) logits.
    model, data = load_model(smoke_run / "best.pt"), load_dataset("synthetic", split="val", n=64)
    with torch.no_grad():
        logits = torch.stack([model((c - 0.5) / 0.5) for c in v2.TenCrop(44)(data.images.float() / 255)], 1).mean(1)
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == data.targets).float().mean().item())
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, data.targets).item(), rel=1e-4)
    assert model.head.iteration.item() == 4  # evaluating counts no iteration


@pytest.mark.slow
def test_a_softmax_trains_under_torchrun(tmp_path):
    from test_train import torchrun

    out = tmp_path / "run"
    torchrun("-m", "fercore", "train", "--model", "resnet18_cbam_asoftmax", "--dataset", "synthetic", "--scale",
             "smoke", "--epochs", "1", "--batch-size", "16", "--recipe-arg", "train_subset=128",
             "--recipe-arg", "val_subset=32", "--out", out, "--quiet")
    m = json.loads((out / "metrics.json").read_text())
    assert m["history"][0]["train_images"] == 128
    assert load_model(out / "last.pt").head.iteration.item() == 4  # 64 images per rank in steps of 16
