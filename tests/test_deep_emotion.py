"""Deep-Emotion and DeepFER: sizes against the paper, the identity warp, dropout, the L2 term."""
from __future__ import annotations

import torch
import torch.nn as nn

from fercore.data import load_dataset
from fercore.models import create_model, get_model_info
from fercore.train import Trainer, load_model


def conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def test_deep_emotion_parameter_count_matches_the_paper_layers():
    stn = conv(1, 8, 7) + conv(8, 10, 5) + fc(640, 32) + fc(32, 6)
    features = conv(1, 10, 3) + 3 * conv(10, 10, 3) + 2 * 10  # + batch norm's weight and bias
    classifier = fc(810, 50) + fc(50, 7)
    model = create_model("deep_emotion")
    assert sum(p.numel() for p in model.parameters()) == stn + features + classifier == 66_877
    assert sum(p.numel() for p in model.stn.parameters()) == stn


def test_deepfer_has_seven_convs_and_a_pool_after_each_pair():
    model = create_model("deepfer")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 7 and len(pools) == 4
    widths = [c.out_channels for c in convs]
    assert widths == [16, 16, 32, 32, 64, 64, 128]
    expected = sum(conv(c.in_channels, c.out_channels, 3) + 2 * c.out_channels for c in convs)  # conv + BN
    expected += fc(128 * 9, 256) + fc(256, 7) + sum(p.numel() for p in model.stn.parameters())
    assert sum(p.numel() for p in model.parameters()) == expected
    # The same spatial transformer as Deep-Emotion.
    assert [p.shape for p in model.stn.parameters()] == [p.shape for p in create_model("deep_emotion").stn.parameters()]


def test_output_shapes_and_classes():
    for name in ("deep_emotion", "deepfer"):
        model = create_model(name, num_classes=8).eval()
        assert model(torch.randn(5, 1, 48, 48)).shape == (5, 8)


def test_transformer_starts_as_the_identity_warp():
    model = create_model("deep_emotion").eval()
    x = torch.randn(4, 1, 48, 48)
    logits, maps = model.forward_with_attention(x)
    assert torch.allclose(maps["theta"], torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(4, 2, 3))
    assert torch.allclose(maps["warped"], x, atol=1e-5)
    assert maps["grid"].shape == (4, 48, 48, 2)
    assert torch.allclose(logits, model(x))


def test_a_translation_moves_the_warped_image():
    model = create_model("deep_emotion").eval()
    with torch.no_grad():  # theta = [[1, 0, tx], [0, 1, 0]]: output pixel x samples input x + tx * 24 pixels
        model.stn.loc[-1].bias.copy_(torch.tensor([1.0, 0, 0.25, 0, 1, 0]))
    x = torch.zeros(1, 1, 48, 48)
    x[..., 20:28, 30:34] = 1.0
    warped = model.forward_with_attention(x)[1]["warped"]
    assert torch.allclose(warped[..., 20:28, 24:28], torch.ones(1, 1, 8, 4), atol=1e-5)
    assert warped[..., 30:34].abs().max() < 1e-5


def test_dropout_is_off_in_eval_and_on_in_train():
    for name in ("deep_emotion", "deepfer"):
        model = create_model(name)
        x = torch.randn(8, 1, 48, 48)
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))


def test_penalty_is_lambda_times_squared_fc_weights_of_the_classifier_only():
    model = create_model("deep_emotion", fc_l2=0.01)
    fc1, fc2 = model.classifier[2], model.classifier[4]
    expected = 0.01 * (fc1.weight.pow(2).sum() + fc2.weight.pow(2).sum())
    assert torch.allclose(model.penalty(), expected)
    assert create_model("deep_emotion", fc_l2=0.0).penalty().item() == 0.0


def test_trainer_adds_the_penalty_and_it_shrinks_the_fc_weights():
    data = load_dataset("synthetic", split="val")
    norms = {}
    for lam in (0.0, 0.5):
        model = create_model("deep_emotion", fc_l2=lam)
        Trainer(model, device="cpu", progress=False, seed=0, batch_size=100).fit(data.subset(range(300)), epochs=2)
        norms[lam] = sum(m.weight.pow(2).sum().item() for m in model.classifier if isinstance(m, nn.Linear))
    assert norms[0.5] < 0.7 * norms[0.0]


def test_gradients_reach_the_localisation_network():
    model = create_model("deep_emotion")
    model.stn.loc[-1].weight.data.normal_(0, 1e-3)  # away from the zero start, as after a first step
    nn.functional.cross_entropy(model(torch.randn(4, 1, 48, 48)), torch.tensor([0, 1, 2, 3])).backward()
    assert model.stn.loc[0].weight.grad.abs().sum() > 0


def test_checkpoint_round_trip_keeps_lambda(tmp_path):
    model = create_model("deep_emotion", fc_l2=0.02)
    data = load_dataset("synthetic", split="val").subset(range(64))
    Trainer(model, device="cpu", progress=False, out_dir=tmp_path).fit(data, epochs=1)
    loaded = load_model(tmp_path / "best.pt")
    assert loaded.fc_l2 == 0.02
    x = torch.randn(2, 1, 48, 48)
    assert torch.allclose(loaded(x), model.eval()(x))


def test_recipes_for_every_scale():
    for name in ("deep_emotion", "deepfer"):
        info = get_model_info(name)
        assert info.input_size == (1, 48, 48) and set(info.recipes) == {"smoke", "standard", "full"}


def test_logged_train_loss_is_the_cross_entropy_without_the_penalty():
    data = load_dataset("synthetic", split="val").subset(range(64))
    model = create_model("deep_emotion", fc_l2=10.0)
    assert model.penalty().item() > 50  # it would dominate the logged loss if it were included
    history = Trainer(model, device="cpu", progress=False, batch_size=64).fit(data, epochs=1)
    assert history[0]["train_loss"] < 5
