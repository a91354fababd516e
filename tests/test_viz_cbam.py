"""fercore.viz.cbam and CBAMExplorer: CBAM's gates, Grad-CAM, the A-Softmax angles, headless."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fercore.data import load_dataset  # noqa: E402
from fercore.models import create_model  # noqa: E402
from fercore.models.resnet import SpatialGate  # noqa: E402
from fercore.viz import cbam as C  # noqa: E402
from fercore.viz.attention import predict, to_model_input  # noqa: E402
from fercore.viz.widgets import CBAMExplorer  # noqa: E402

STAGES = ["layer1", "layer2", "layer3", "layer4"]
SIZES = [44, 22, 11, 6]  # a 44-px face through strides 1, 2, 2, 2


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called by library code"))
    yield
    plt.close("all")


def cbam_model(name="resnet18_cbam", seed=0) -> nn.Module:
    """A tiny random CBAM ResNet whose spatial gates vary (at init their batch-norm weight is 0: all 0.5)."""
    torch.manual_seed(seed)
    model = create_model(name, width=0.125)
    for m in model.modules():
        if isinstance(m, SpatialGate):
            nn.init.ones_(m.bn.weight)
            nn.init.normal_(m.conv.weight, 0.0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def faces():
    return load_dataset("synthetic", None, "val", n=4)


# ----------------------------------------------------------------- CBAM gates
def test_cbam_maps_per_stage_shapes_ranges_and_where_the_upsampled_map_lies(faces):
    model = cbam_model()
    maps = C.cbam_maps(model, faces.images[:3])
    assert list(maps) == STAGES
    _, gates = model.forward_with_attention(to_model_input(model, faces.images[:3]))
    for stage, size, channels in zip(STAGES, SIZES, (8, 16, 32, 64)):
        m = maps[stage]
        assert m["block"] == f"{stage}.1"  # the stage's last block
        assert m["native"].shape == (3, size, size) and m["spatial"].shape == (3, 44, 44)
        assert m["channel"].shape == (3, channels)
        torch.testing.assert_close(m["native"], gates[f"{stage}.1.spatial"].detach())
        torch.testing.assert_close(m["channel"], gates[f"{stage}.1.channel"].detach())
        for key in ("spatial", "native", "channel"):
            assert 0 <= m[key].min() and m[key].max() <= 1
    # layer4's 6x6 gate on the 44-px input: the corner pixels take the corner cells, in the right places
    native, spatial = maps["layer4"]["native"], maps["layer4"]["spatial"]
    assert native.std() > 0.01  # a map that varies, or the corner checks below would prove nothing
    for rows, cols, (r, c) in [(slice(0, 4), slice(0, 4), (0, 0)), (slice(0, 4), slice(40, 44), (0, 5)),
                               (slice(40, 44), slice(0, 4), (5, 0))]:
        torch.testing.assert_close(spatial[:, rows, cols], native[:, r, c, None, None].expand(3, 4, 4))
    first = C.cbam_maps(model, faces.images[:3], block=0)
    assert first["layer2"]["block"] == "layer2.0"
    assert not torch.allclose(first["layer2"]["native"], maps["layer2"]["native"])


def test_cbam_maps_needs_cbam_and_a_fercore_resnet(faces):
    with pytest.raises(ValueError, match="no CBAM gates"):
        C.cbam_maps(create_model("resnet18_fer", width=0.125), faces.images[:1])
    with pytest.raises(TypeError, match="block_names"):
        C.cbam_maps(nn.Linear(4, 2), faces.images[:1])


def test_plot_cbam_draws_each_face_its_prediction_gates_and_sorted_channel_weights(faces):
    model = cbam_model()
    fig = C.plot_cbam(model, faces.images[:2], faces.classes)
    grid = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(grid) == 2 * 6  # face, four stages, channel weights
    probs, maps = predict(model, faces.images[:2]), C.cbam_maps(model, faces.images[:2])
    for i in range(2):
        row = grid[6 * i:6 * i + 6]
        k = int(probs[i].argmax())
        assert row[0].get_title() == f"{faces.classes[k]} {probs[i, k]:.0%}"
        for ax, stage in zip(row[1:5], STAGES):
            (heat,) = [im for im in ax.get_images() if im.get_gid() == "heatmap"]
            np.testing.assert_allclose(heat.get_array(), maps[stage]["spatial"][i].numpy())
            assert heat.get_clim() == (0.0, 1.0)  # one scale for every stage
        lines = {line.get_gid(): line.get_ydata() for line in row[5].lines}
        for stage in STAGES:
            np.testing.assert_allclose(lines[f"channels_{stage}"], np.sort(maps[stage]["channel"][i].numpy())[::-1])
    assert grid[1].get_title() == "layer1.1 (44x44)" and grid[4].get_title() == "layer4.1 (6x6)"


# ----------------------------------------------------------------- Grad-CAM
def manual_grad_cam(model, images, target: int, layer) -> torch.Tensor:
    """Grad-CAM by hand: gradient of the logit at the layer's output, channel means, weighted sum, ReLU, resize."""
    x = to_model_input(model, images)
    saved = {}

    def keep(module, args, out):
        saved["a"] = out[0] if isinstance(out, tuple) else out

    handle = layer.register_forward_hook(keep)
    try:
        logit = model(x)[:, target].sum()
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logit, saved["a"])
    cam = F.relu((grad.mean((2, 3), keepdim=True) * saved["a"]).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


@pytest.mark.parametrize("name", ["resnet18_cbam", "resnet18_cbam_asoftmax"])
@pytest.mark.parametrize("block", [-1, 5])
def test_grad_cam_is_the_gradient_weighted_activation_of_the_layer(faces, name, block):
    model = cbam_model(name)
    model.train()
    layer = model.blocks[block]
    cam = C.grad_cam(model, faces.images[:3], target=2, layer=None if block == -1 else layer)
    assert cam.shape == (3, 44, 44) and cam.min() >= 0 and cam.max() > 0
    model.eval()
    torch.testing.assert_close(cam, manual_grad_cam(model, faces.images[:3], 2, layer), rtol=1e-4, atol=1e-7)
    model.train()
    C.grad_cam(model, faces.images[:1])
    assert model.training and all(p.grad is None for p in model.parameters())  # modes kept, no .grad
    if name.endswith("asoftmax"):
        assert model.head.iteration.item() == 0  # explained in eval mode: no margin, no annealing step


def test_grad_cam_follows_the_target_and_defaults_to_the_prediction(faces):
    model = cbam_model()
    a, b = C.grad_cam(model, faces.images[:2], target=0), C.grad_cam(model, faces.images[:2], target=3)
    assert not torch.allclose(a, b)
    predicted = predict(model, faces.images[:2]).argmax(1)
    default = C.grad_cam(model, faces.images[:2])
    torch.testing.assert_close(default, C.grad_cam(model, faces.images[:2], target=predicted))


class LeftHalf(nn.Module):
    """Its last layer (a 1x1 stride-2 conv, 8x8 map) is given only the left half of the image."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Conv2d(1, 3, 1, stride=2, bias=False)])
        nn.init.uniform_(self.blocks[0].weight, 0.5, 1.0)
        self.fc = nn.Linear(3, 2)
        nn.init.uniform_(self.fc.weight, 0.5, 1.0)
        self.default_cfg = {"input_size": (1, 16, 16), "num_classes": 2, "mean": (0.5,), "std": (0.5,)}

    def forward(self, x):
        mask = torch.zeros_like(x)
        mask[..., :8] = 1
        return self.fc(F.relu(self.blocks[0](x * mask)).mean((2, 3)))


def test_grad_cam_lights_only_the_half_the_last_layer_sees():
    images = torch.full((2, 1, 16, 16), 255, dtype=torch.uint8)
    cam = C.grad_cam(LeftHalf(), images, target=0)
    assert cam.shape == (2, 16, 16)
    assert (cam[..., :7] > 0).all()  # the left half, clear of the border cell the bilinear resize blends
    assert (cam[..., 9:] == 0).all()
    with pytest.raises(TypeError, match="layer="):
        C.grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(256, 2)), images)


# ----------------------------------------------------------------- explorer
def test_cbam_explorer_follows_face_and_stage_headless(faces):
    model = cbam_model()
    model.train()
    ex = CBAMExplorer(model, faces, index=1)
    assert not plt.get_fignums()  # object-API figure: never leaked into pyplot
    assert list(ex.axes) == ["image", "spatial", "gradcam", "channels", "probs"]
    image = faces.images[1:2]
    assert ex.last_index == 1 and ex.last_spatial.shape == (6, 6)
    torch.testing.assert_close(ex.last_probs, predict(model, image)[0])
    torch.testing.assert_close(ex.last_spatial, C.cbam_maps(model, image)["layer4"]["native"][0])
    torch.testing.assert_close(ex.last_cam, C.grad_cam(model, image)[0])
    bars = [p.get_width() for p in ex.axes["channels"].patches]
    assert len(bars) == 10 and bars == sorted(bars, reverse=True) and bars[0] == pytest.approx(ex.last_channel.max())
    assert "layer4.1 (6x6)" in ex.axes["spatial"].get_title()
    ex.stage.value = "layer2"
    assert ex.last_spatial.shape == (22, 22) and ex.last_channel.shape == (16,)
    assert "layer2.1 (22x22)" in ex.axes["spatial"].get_title()
    torch.testing.assert_close(ex.last_cam, C.grad_cam(model, image)[0])  # Grad-CAM stays on the last stage
    cam1 = ex.last_cam
    ex.index.value = 3
    assert ex.last_index == 3 and not torch.allclose(ex.last_cam, cam1)
    assert ex.axes["image"].get_title() == f"#3  true: {faces.classes[int(faces.labels()[3])]}"
    (out,) = ex.output.outputs
    assert out["data"]["image/svg+xml"].startswith("<?xml") and "image/svg+xml" in ex._repr_mimebundle_()
    assert model.training


def test_cbam_explorer_checks_its_stage_and_works_with_a_softmax(faces):
    with pytest.raises(ValueError, match="layer1, layer2, layer3, layer4"):
        CBAMExplorer(cbam_model(), faces, stage="layer5")
    ex = CBAMExplorer(cbam_model("resnet18_cbam_asoftmax"), faces, stage="layer1")
    assert ex.last_spatial.shape == (44, 44) and ex.last_probs.sum() == pytest.approx(1, abs=1e-5)


# ----------------------------------------------------------------- A-Softmax
def test_plot_psi_draws_psi_of_losses_for_each_margin():
    ax = C.plot_psi((1, 2, 4))
    lines = {line.get_gid(): line for line in ax.lines}
    assert set(lines) == {"cos", "psi_1", "psi_2", "psi_4"}
    deg = lines["psi_4"].get_xdata()
    assert deg[0] == 0 and deg[-1] == pytest.approx(180)
    np.testing.assert_allclose(lines["psi_1"].get_ydata(), lines["cos"].get_ydata(), atol=1e-12)  # m = 1 is softmax
    y4 = lines["psi_4"].get_ydata()
    assert y4[-1] == pytest.approx(1 - 2 * 4) and np.all(np.diff(y4) <= 1e-12)  # falls from 1 to 1 - 2m
    assert y4[np.argmin(np.abs(deg - 45))] == pytest.approx(math.cos(4 * math.pi / 4) * -1 - 2)  # k = 1 at 45 deg


def at(degrees, norms=1.0) -> np.ndarray:
    r = np.radians(np.asarray(degrees, float))
    return np.stack([np.cos(r), np.sin(r)], 1) * np.asarray(norms, float).reshape(-1, 1)


def test_angular_margins_on_hand_made_points():
    # class 0 around 0 deg (0, +-10), class 1 around 90 deg (80, 90, 100), class 2 alone at 200 deg, class 3 absent
    features = np.concatenate([at([0, 10, -10], [1, 5, 2]), at([80, 90, 100], [3, 0.5, 1]), at([200], [7])])
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    stats = C.angular_margins(features, labels, num_classes=4, q=95)
    np.testing.assert_allclose(stats["directions"][:3], at([0, 90, 200]), atol=1e-12)  # norms do not matter
    assert np.isnan(stats["directions"][3]).all() and np.isnan(stats["spread"][3])
    np.testing.assert_allclose(stats["spread"][:3], [10, 10, 0], atol=1e-9)
    np.testing.assert_allclose(stats["center_angles"][0, 1:3], [90, 160], atol=1e-9)
    np.testing.assert_allclose(stats["center_angles"][1, 2], 110, atol=1e-9)
    assert stats["min_angle"] == pytest.approx(90) and stats["closest"] == (0, 1)
    median = C.angular_margins(features, labels, q=50)
    np.testing.assert_allclose(median["spread"], [10, 10, 0], atol=1e-9)
    assert len(median["spread"]) == 3  # K from the labels
    three_d = C.angular_margins(np.array([[1, 0, 0], [0, 0, 2.0]]), np.array([0, 1]))
    assert three_d["min_angle"] == pytest.approx(90)


def test_plot_angular_features_puts_features_on_the_circle_with_weight_arrows():
    features = np.concatenate([at([0, 10, -10], [1, 5, 2]), at([80, 90, 100], [3, 0.5, 1])])
    labels = np.array([0, 0, 0, 1, 1, 1])
    fig = C.plot_angular_features(features, labels, ["angry", "happy"], weights=[[2, 0], [0, 3]])
    raw, circle = fig.axes
    points = {c.get_gid(): c.get_offsets() for ax in (raw, circle) for c in ax.collections}
    np.testing.assert_allclose(points["raw_0"], features[:3])
    np.testing.assert_allclose(np.linalg.norm(points["circle_1"], axis=1), 1)
    arrows = {a.get_gid(): a.xy for a in circle.texts}
    np.testing.assert_allclose(arrows["weight_1"], [0, 1.25])  # the weight's direction, not its length
    assert "angry–happy 90°" in circle.get_title() and "10°" in circle.get_title()
    fig2, ax = plt.subplots()
    assert C.plot_angular_features(features, labels, ["angry", "happy"], ax=ax) is fig2 and fig2.axes == [ax]
    with pytest.raises(ValueError, match="2-D"):
        C.plot_angular_features(np.zeros((3, 3)), [0, 1, 1], ["a", "b"])
