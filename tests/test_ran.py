"""Region Attention Network: the crops, the two attention modules, the region-biased loss, backbone init, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fercore.cli import main
from fercore.data import load_dataset
from fercore.data.occlusion import occlude_dataset
from fercore.faces.regions import (LANDMARK_CROPS, RAN_CROPS, crop_regions, face_regions, landmark_boxes,
                                   landmark_regions, model_regions, ran_boxes)
from fercore.losses import region_biased_loss
from fercore.models import create_model
from fercore.train import Trainer, load_model, read_checkpoint
from tests.cli_helpers import cli, one_error_line

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- crops
def test_ran_boxes_are_the_papers_fractions_with_the_whole_face_last():
    boxes = ran_boxes(2, 44, 40)
    assert boxes.shape == (2, len(RAN_CROPS), 4) and list(RAN_CROPS)[-1] == "face"
    assert boxes[1, -1].tolist() == [0, 0, 40, 44]
    assert boxes[0, 0].tolist() == pytest.approx([0, 0, 30, 33])  # top-left, 0.75 of each side
    assert boxes[0, 1].tolist() == pytest.approx([10, 0, 40, 33])  # top-right


def test_crop_regions_copies_exact_pixels_and_resizes_by_area():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    whole = crop_regions(x, torch.tensor([[[0.0, 0, 8, 8]]] * 2), 8)
    assert torch.equal(whole[:, 0], x)  # the whole face at its own size is the face
    corner = crop_regions(x, torch.tensor([[[4.0, 0, 8, 4]], [[0.0, 4, 4, 8]]]), 4)
    assert torch.equal(corner[0, 0], x[0, :, 0:4, 4:8]) and torch.equal(corner[1, 0], x[1, :, 4:8, 0:4])
    half = crop_regions(x, torch.tensor([[[0.0, 0, 8, 8]]] * 2), 4)  # 2x2 samples per output pixel
    assert torch.allclose(half[:, 0], F.avg_pool2d(x, 2))


def test_landmark_boxes_centre_each_square_on_its_points():
    faces = load_dataset("synthetic", split="val", n=4)
    points = faces.meta["landmarks"]
    boxes = landmark_boxes(points, 48, 48)
    assert boxes.shape == (4, len(LANDMARK_CROPS) + 1, 4) and boxes[0, -1].tolist() == [0, 0, 48, 48]
    for k, idx in enumerate(LANDMARK_CROPS.values()):
        centre = (boxes[:, k, :2] + boxes[:, k, 2:]) / 2 - 0.5  # back to pixel-centre coordinates
        assert np.allclose(centre.numpy(), points[:, idx].mean(1), atol=1e-4)
    side = boxes[:, 0, 2] - boxes[:, 0, 0]
    assert np.allclose(side.numpy(), 0.5 * (points.max(1) - points.min(1)).max(1), atol=1e-4)


# ---------------------------------------------------------------- the loss
def test_region_biased_loss_against_hand_computed_values():
    mu = torch.tensor([[0.2, 0.5, 0.3],     # best crop 0.5 beats the face 0.3 by 0.2 > 0.1: no loss
                       [0.2, 0.25, 0.3]])   # best crop 0.25 trails the face: 0.1 - (0.25 - 0.3) = 0.15
    assert region_biased_loss(mu).item() == pytest.approx((0 + 0.15) / 2)
    assert region_biased_loss(mu, margin=0.3).item() == pytest.approx((0.1 + 0.35) / 2)
    assert region_biased_loss(mu, face_index=0).item() == pytest.approx((0 + 0) / 2)  # the face first instead
    with pytest.raises(ValueError, match="K >= 2"):
        region_biased_loss(torch.ones(3, 1))


# ---------------------------------------------------------------- the model
def small(name="ran", **kw):
    return create_model(name, width=0.125, crop_size=16, **kw)


def test_attention_follows_the_papers_formulas():
    torch.manual_seed(0)
    model = small().eval()
    x = torch.randn(3, 1, 44, 44)
    logits, att = model.forward_with_attention(x)
    # The same computation by hand: each region through the backbone alone, then mu, F_m, nu, P.
    regions = crop_regions(x, ran_boxes(3, 44, 44), 16)
    f = torch.stack([model.backbone.features(regions[:, i])[0] for i in range(regions.shape[1])], 1)
    mu = torch.sigmoid(model.alpha(f))
    f_m = (mu * f).sum(1) / mu.sum(1)
    pairs = torch.cat([f, f_m[:, None].expand_as(f)], 2)
    nu = torch.sigmoid(model.beta(pairs))
    p = (mu * nu * pairs).sum(1) / (mu * nu).sum(1)
    assert torch.allclose(att["mu"], mu[..., 0], atol=1e-5) and torch.allclose(att["nu"], nu[..., 0], atol=1e-5)
    assert torch.allclose(logits, model.fc(p), atol=1e-5) and logits.shape == (3, 8)
    assert torch.equal(att["boxes"], ran_boxes(3, 44, 44))


def test_region_softmax_makes_each_faces_weights_sum_to_one():
    _, att = small(region_softmax=True).eval().forward_with_attention(torch.randn(2, 1, 44, 44))
    assert torch.allclose(att["mu"].sum(1), torch.ones(2)) and torch.allclose(att["nu"].sum(1), torch.ones(2))


def test_pixels_outside_every_region_do_not_change_the_prediction():
    model = small().eval()
    x = torch.randn(1, 1, 44, 44)
    boxes = torch.tensor([[[0.0, 0, 20, 20], [20, 20, 44, 44]]])  # two regions, no whole face
    y = x.clone()
    y[..., 30:, :10] = 5.0  # bottom-left, inside neither box
    assert torch.allclose(model(x, boxes), model(y, boxes))
    y[..., :10, :10] = 5.0  # inside the first
    assert not torch.allclose(model(x, boxes), model(y, boxes))


def test_penalty_is_the_region_biased_loss_of_the_last_training_batch():
    model = small(rb_margin=0.5).train()
    model(torch.randn(4, 1, 44, 44))
    assert model.penalty().item() == pytest.approx(region_biased_loss(model._mu, 0.5).item())
    assert model.penalty().item() > 0  # at initialisation no crop beats the face by 0.5
    assert small("ran_face_only").train().penalty().item() == 0
    assert small(rb_weight=0).train().penalty().item() == 0


def test_face_only_baseline_is_the_backbone_on_the_resized_face():
    model = small("ran_face_only").eval()
    x = torch.randn(2, 1, 44, 44)
    logits, att = model.forward_with_attention(x)
    assert att["mu"].shape == (2, 1)
    f = model.backbone.features(crop_regions(x, ran_boxes(2, 44, 44)[:, -1:], 16)[:, 0])[0]  # the face, resized
    assert torch.allclose(logits, model.fc(torch.cat([f, f], 1)), atol=1e-4)


def test_bad_crop_size_is_a_clear_error():
    with pytest.raises(ValueError, match="crop_size"):
        create_model("ran", crop_size=4)


# ---------------------------------------------------------------- training, backbone init, CLI
def test_the_trainer_adds_the_region_biased_loss(tmp_path):
    data = load_dataset("synthetic", split="val", n=32)
    losses = []
    for weight in (0.0, 100.0):
        torch.manual_seed(0)
        model = small(rb_weight=weight)
        trainer = Trainer(model, device="cpu", progress=False, batch_size=32, seed=0,
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
        trainer.fit(data, None, epochs=1)
        losses.append(model.alpha.weight.detach().clone())
    assert not torch.allclose(*losses)  # the penalty moved the self-attention weights


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet") / "run"
    assert main(["train", "--model", "resnet18_fer", "--dataset", "synthetic", "--epochs", "1", "--model-arg",
                 "width=0.125", "--data-arg", "n=64", "--out", str(out), "--quiet"]) == 0
    return out / "best.pt"


def test_init_from_a_resnet_checkpoint_starts_the_backbone(resnet_run, tmp_path, capsys):
    out = tmp_path / "ran"
    code, stdout, err = cli(capsys, "train", "--model", "ran", "--dataset", "synthetic", "--scale", "smoke",
                            "--epochs", "1", "--recipe-arg", "train_subset=64", "--recipe-arg", "val_subset=32",
                            "--recipe-arg", "lr=0", "--init", resnet_run, "--out", out, "--quiet")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["init"]["backbone"] and m["init"]["model"] == "resnet18_fer" and m["model_args"]["width"] == 0.125
    assert m["model_args"]["cbam"] is False and "--init" in m["command"]
    source, ran = read_checkpoint(resnet_run)["model"], load_model(out / "best.pt")
    for k, v in ran.backbone.state_dict().items():  # lr 0: the weights are still the ResNet's
        if not k.endswith("num_batches_tracked") and "running" not in k:
            assert torch.equal(v, source[k]), k


def test_init_from_a_model_that_is_no_backbone_is_one_line(tmp_path, capsys):
    src = tmp_path / "cnn"
    assert main(["train", "--model", "simple_cnn", "--dataset", "synthetic", "--epochs", "1", "--data-arg", "n=32",
                 "--out", str(src), "--quiet"]) == 0
    capsys.readouterr()
    code, _, err = cli(capsys, "train", "--model", "ran", "--dataset", "synthetic", "--init", src / "best.pt",
                       "--out", tmp_path / "ran", "--quiet")
    assert code == 2 and "resnet18_fer" in one_error_line(err) and not (tmp_path / "ran").exists()


def test_smoke_run_and_ten_crop_evaluate(tmp_path, capsys):
    out = tmp_path / "ran"
    code, _, err = cli(capsys, "train", "--model", "ran", "--dataset", "synthetic", "--scale", "smoke", "--epochs", "1",
                       "--recipe-arg", "train_subset=64", "--recipe-arg", "val_subset=32", "--out", out, "--quiet")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["model_args"] == {"width": 0.125, "crop_size": 32} and 0 <= m["val"]["accuracy"] <= 1
    code, stdout, err = cli(capsys, "evaluate", "--checkpoint", out / "best.pt", "--split", "val", "--data-arg", "n=32",
                            "--tta", "ten_crop")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["n"] == 32 and result["tta"] == "ten_crop" and 0 <= result["accuracy"] <= 1
    # --occlude scores the occluded faces, the same as occlude_dataset then Trainer.evaluate
    val = load_dataset("synthetic", split="val", n=32)
    model = load_model(out / "best.pt")
    for spec, kind, where in (("grey:mouth", "grey", "mouth"), ("sunglasses", "sunglasses", None)):
        code, stdout, err = cli(capsys, "evaluate", "--checkpoint", out / "best.pt", "--split", "val",
                                "--data-arg", "n=32", "--occlude", spec)
        assert code == 0, err
        result = json.loads(stdout)
        expected = Trainer(model, device="cpu", progress=False).evaluate(occlude_dataset(val, kind, where=where))
        assert result["confusion"] == expected["confusion"]
        assert result["occlusion"]["kind"] == kind and result["occlusion"]["where"] == where
        assert "Occluded with" in result["occlusion"]["protocol"]
    for spec, named in (("hat", "'hat'"), ("sunglasses:mouth", "'mouth'")):
        code, _, err = cli(capsys, "evaluate", "--checkpoint", out / "best.pt", "--split", "val",
                           "--data-arg", "n=32", "--occlude", spec)
        assert code == 2 and named in one_error_line(err)


def test_weights_that_underflow_to_zero_still_give_finite_logits():
    # sigmoid(-200) is 0 in float32: the paper's sum mu F / sum mu would be 0 / 0 (a NaN that stopped a real run).
    model = small().eval()
    with torch.no_grad():
        model.alpha.bias.fill_(-200.0)
        model.beta.bias.fill_(-200.0)
    logits, att = model.forward_with_attention(torch.randn(2, 1, 44, 44))
    assert torch.isfinite(logits).all() and (att["mu"] == 0).all()


# ---------------------------------------------------------------- ran_landmarks: crops cut before the model
def test_landmark_regions_are_the_landmark_boxes_cut_and_stacked():
    faces = load_dataset("synthetic", split="val", n=6)
    points = faces.meta["landmarks"]
    stacked = landmark_regions(faces.images, points, 32)
    assert stacked.shape == (6, len(LANDMARK_CROPS) + 1, 32, 32) and stacked.dtype == torch.uint8
    expected = crop_regions(faces.images.float(), landmark_boxes(points, 48, 48), 32)[:, :, 0]
    assert torch.equal(stacked, expected.round().to(torch.uint8))
    mouth = list(LANDMARK_CROPS).index("mouth")
    assert not torch.equal(stacked[:, mouth], stacked[:, 0])  # each square its own place
    # the photo path cuts the same crops from the same faces and points
    cfg = create_model("ran_landmarks", width=0.125).default_cfg
    assert torch.equal(face_regions(faces.images[:, 0].numpy(), points, cfg), stacked)
    with pytest.raises(ValueError, match="landmarks of each"):
        face_regions(faces.images[:, 0].numpy(), None, cfg)


def test_model_regions_gives_ran_landmarks_its_crops_and_a_mean_shape_for_bad_fits(monkeypatch):
    import fercore.faces.regions as regions

    faces = load_dataset("synthetic", split="val", n=8)
    cfg = create_model("ran_landmarks", width=0.125).default_cfg
    clean = model_regions(faces, cfg, progress=False)
    assert clean.images.shape == (8, 5, 32, 32) and not clean.meta["landmark_fallback"].any()
    assert "landmark crops" in clean.protocol and torch.equal(clean.targets, faces.targets)
    # dlib's points with one fit that is no face: that face is cut at the others' mean shape
    points = faces.meta["landmarks"].astype(np.float32).copy()
    points[3] = 0.0
    no_marks = type(faces)(faces.images, faces.targets, faces.classes, {}, name="x", split="val")
    monkeypatch.setattr(regions, "dataset_points", lambda d, progress=True: (points, "dlib"))
    cut = model_regions(no_marks, cfg, progress=False)
    assert cut.meta["landmark_fallback"].tolist() == [False] * 3 + [True] + [False] * 4
    mean = np.delete(points, 3, 0).mean(0)
    assert torch.equal(cut.images[3], landmark_regions(faces.images[3:4], mean[None], 32)[0])
    assert torch.equal(cut.images[:3], clean.images[:3]) and "1 of 8 faces" in cut.protocol


def test_ran_landmarks_trains_evaluates_occluded_and_plots(tmp_path, capsys):
    out = tmp_path / "ranlm"
    code, _, err = cli(capsys, "train", "--model", "ran_landmarks", "--dataset", "synthetic", "--scale", "smoke",
                       "--epochs", "1", "--recipe-arg", "train_subset=64", "--recipe-arg", "val_subset=32",
                       "--out", out, "--quiet")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["recipe"]["augment"] == {"hflip": True} and m["regions"]["val"]["n"] == 32
    model = load_model(out / "best.pt")
    assert model.precut and model.default_cfg["regions"] == "ran_landmarks"
    # the occluder is drawn on the face before the crops are cut, as a real one would be
    code, stdout, err = cli(capsys, "evaluate", "--checkpoint", out / "best.pt", "--split", "val",
                            "--data-arg", "n=32", "--occlude", "mask")
    assert code == 0, err
    val = load_dataset("synthetic", split="val", n=32)
    occluded = model_regions(occlude_dataset(val, "mask"), model.default_cfg, progress=False)
    assert json.loads(stdout)["confusion"] == Trainer(model, device="cpu", progress=False).evaluate(occluded)["confusion"]
    mouth = list(LANDMARK_CROPS).index("mouth")
    clean = model_regions(val, model.default_cfg, progress=False)
    assert (occluded.images[:, mouth] != clean.images[:, mouth]).float().mean() > 0.3  # the mask covers the mouth crop
    from fercore.viz.ran import plot_ran, ran_weights
    w = ran_weights(model, clean.images[:2])
    assert torch.allclose(w["crops"][:, :, 0], clean.images[:2].float() / 255, atol=1e-5) and torch.isnan(w["boxes"]).all()
    assert len(plot_ran(model, clean.images[:2], val.classes).axes) >= 2 * 7
