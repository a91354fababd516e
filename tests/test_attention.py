"""fercore.viz.attention: attribution maps that point where the model looks, and STN warps drawn right."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fercore.data.augment import center_crop  # noqa: E402
from fercore.viz import attention as A  # noqa: E402

S = 24  # image side of the toy models


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called by library code"))
    yield
    plt.close("all")


def cfg(size=S, channels=1, mean=0.5, std=0.5):
    return {"input_size": (channels, size, size), "num_classes": 2, "mean": (mean,) * channels, "std": (std,) * channels}


class RegionModel(nn.Module):
    """Class 0's logit is 8 x the mean of one window of the (normalised) input; class 1's is 0."""

    def __init__(self, rows=slice(4, 8), cols=slice(14, 18)):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.default_cfg = cfg()

    def forward(self, x):
        z = 8 * x[:, :, self.rows, self.cols].mean((1, 2, 3))
        return torch.stack([z, torch.zeros_like(z)], 1)


class BrightSpotModel(nn.Module):
    """Class 0's logit is 6 x the brightest pixel, wherever it is: attention follows the feature."""

    default_cfg = cfg()

    def forward(self, x):
        z = 6 * x.amax((1, 2, 3))
        return torch.stack([z, torch.zeros_like(z)], 1)


class ShiftSTN(nn.Module):
    """A spatial transformer with a fixed theta, then a linear classifier (the deep_emotion interface)."""

    def __init__(self, theta, size=S, classes=3):
        super().__init__()
        self.register_buffer("theta", torch.tensor(theta, dtype=torch.float32).view(1, 2, 3))
        self.fc = nn.Linear(size * size, classes)
        self.default_cfg = cfg(size)

    def forward_with_attention(self, x):
        theta = self.theta.expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, align_corners=False)
        return self.fc(warped.flatten(1)), {"theta": theta, "warped": warped, "grid": grid}

    def forward(self, x):
        return self.forward_with_attention(x)[0]


def square_image(top, left, side=4, size=S, value=255):
    img = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    img[..., top:top + side, left:left + side] = value
    return img


def ramp_images(n=2, size=S, channels=1):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


# --------------------------------------------------------------------------- model input
def test_to_model_input_matches_the_trainer_and_model_view_inverts_it():
    model = nn.Conv2d(1, 1, 1)
    model.default_cfg = cfg(size=20, mean=0.4, std=0.2)
    images = ramp_images(3, size=24)
    x = A.to_model_input(model, images)
    expected = (center_crop(images.float() / 255, 20) - 0.4) / 0.2
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(A.to_model_input(model, images.float() / 255), expected)  # floats in [0, 1]
    torch.testing.assert_close(A.to_model_input(model, images[0]), expected[:1])  # one (C, H, W) image
    torch.testing.assert_close(A.model_view(model, images), center_crop(images.float() / 255, 20))
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\)"):
        A.to_model_input(model, torch.zeros(4, 4))


# --------------------------------------------------------------------------- occlusion
def test_occlusion_is_nonzero_only_near_the_region_the_model_reads():
    model = RegionModel(rows=slice(4, 8), cols=slice(14, 18))
    images = ramp_images(2).clamp(min=160)  # brighter than the grey baseline everywhere
    patch = 4
    maps = A.occlusion_map(model, images, target=0, patch=patch, stride=2)
    assert maps.shape == (2, S, S) and maps.dtype == torch.float32
    near = torch.zeros(S, S, dtype=torch.bool)  # pixels that share a patch with the region
    near[4 - patch + 1:8 + patch - 1, 14 - patch + 1:18 + patch - 1] = True
    assert (maps[:, ~near] == 0).all()
    assert (maps[:, 4:8, 14:18] > 0).all()  # covering bright pixels with grey lowers p(class 0)
    # The drop is in probability: at most p itself, and for the full region covered exactly p - p_covered.
    p = A.predict(model, images)[:, 0]
    assert (maps.amax((1, 2)) <= p + 1e-6).all()


def test_occlusion_map_moves_with_the_feature():
    model = BrightSpotModel()
    peaks = []
    for top, left in [(4, 4), (14, 12)]:
        m = A.occlusion_map(model, square_image(top, left), patch=6, stride=2)[0]
        assert m.min() >= 0 and m.max() > 0.2  # p(class 0) falls from 1 to 1/2 when the spot is hidden
        ys, xs = torch.nonzero(m == m.max(), as_tuple=True)
        peaks.append((ys.float().mean().item(), xs.float().mean().item()))
        assert top <= peaks[-1][0] < top + 4 and left <= peaks[-1][1] < left + 4  # peak on the spot
    assert peaks[1][0] - peaks[0][0] == pytest.approx(10, abs=1)
    assert peaks[1][1] - peaks[0][1] == pytest.approx(8, abs=1)


def test_occlusion_baseline_is_in_pixel_units_and_uses_the_models_stats():
    model = RegionModel(rows=slice(0, S), cols=slice(0, S))  # reads the whole image
    model.default_cfg = cfg(mean=0.2, std=0.3)
    image = torch.full((1, 1, S, S), 0.25)
    same = A.occlusion_map(model, image, target=0, patch=6, stride=6, baseline=0.25)
    assert same.abs().max() < 1e-6  # covering with the image's own grey changes nothing
    black = A.occlusion_map(model, image, target=0, patch=6, stride=6, baseline=0.0)
    white = A.occlusion_map(model, image, target=0, patch=6, stride=6, baseline=1.0)
    assert (black > 0).all() and (white < 0).all()
    with pytest.raises(ValueError, match="baseline is a pixel value"):
        A.occlusion_map(model, image, baseline=128)
    with pytest.raises(ValueError, match="stride must be between 1 and patch"):
        A.occlusion_map(model, image, patch=4, stride=5)


def test_occlusion_target_none_int_and_per_image():
    model = RegionModel()
    bright, dark = square_image(4, 14, value=255), square_image(4, 14, value=0)
    images = torch.cat([bright, dark])  # bright region -> class 0; dark -> class 1
    assert A.predict(model, images).argmax(1).tolist() == [0, 1]
    auto = A.occlusion_map(model, images, patch=4, stride=2)
    per_image = A.occlusion_map(model, images, target=torch.tensor([0, 1]), patch=4, stride=2)
    torch.testing.assert_close(auto, per_image)
    as_zero = A.occlusion_map(model, images, target=0, patch=4, stride=2)
    torch.testing.assert_close(as_zero[1], -per_image[1])  # two classes: p1 = 1 - p0
    with pytest.raises(ValueError, match="target has 3 entries for 2 images"):
        A.occlusion_map(model, images, target=[0, 1, 1])


# --------------------------------------------------------------------------- saliency
def test_saliency_of_a_linear_model_is_its_absolute_weights():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    linear.default_cfg = cfg(size=8, channels=3)
    images = ramp_images(2, size=8, channels=3)
    sal = A.gradient_saliency(linear, images, target=[2, 1])
    w = linear[1].weight.detach().view(4, 3, 8, 8).abs().amax(1)
    torch.testing.assert_close(sal, w[[2, 1]])
    pred = A.predict(linear, images).argmax(1)
    torch.testing.assert_close(A.gradient_saliency(linear, images), w[pred])
    assert all(p.grad is None for p in linear.parameters())  # only the input got a gradient


def test_every_function_uses_eval_mode_and_restores_the_callers_modes():
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Dropout(0.9), ShiftSTN([1, 0, 0, 0, 1, 0]))
    model.default_cfg = cfg()
    model.train()
    model[1].eval()  # a submodule the caller froze stays frozen
    stats = model[0].running_mean.clone()
    images = ramp_images(3)
    first = A.predict(model, images)
    torch.testing.assert_close(A.predict(model, images), first)  # dropout off: deterministic
    A.occlusion_map(model, images, patch=6, stride=6)
    A.gradient_saliency(model, images)
    A.stn_views(model[2], images)
    torch.testing.assert_close(model[0].running_mean, stats)  # batch norm never saw a training batch
    assert [m.training for m in model] == [True, False, True] and model.training


# --------------------------------------------------------------------------- spatial transformer
def test_stn_views_of_a_shift_shows_the_shifted_input_and_its_grid():
    model = ShiftSTN([1, 0, 0.5, 0, 1, 0])  # sample x + 0.5 in [-1, 1] units: S / 4 = 6 pixels right
    images = ramp_images(2)
    views = A.stn_views(model, images)
    x = images.float().numpy() / 255
    np.testing.assert_allclose(views["input"], x, atol=1e-6)
    np.testing.assert_allclose(views["warped"][..., :, : S - 6], x[..., :, 6:], atol=1e-5)
    np.testing.assert_allclose(views["warped"][..., :, S - 6:], 0.5, atol=1e-6)  # zero padding = grey
    cols, rows = np.meshgrid(np.arange(S), np.arange(S))
    np.testing.assert_allclose(views["grid"][0, ..., 0], cols + 6, atol=1e-4)
    np.testing.assert_allclose(views["grid"][0, ..., 1], rows, atol=1e-4)
    np.testing.assert_allclose(views["theta"][1], [[1, 0, 0.5], [0, 1, 0]])
    assert views["probs"].shape == (2, 3)
    with pytest.raises(TypeError, match="no forward_with_attention"):
        A.stn_views(RegionModel(), images)


def test_plot_stn_draws_input_warp_and_the_sampled_region():
    model = ShiftSTN([0.5, 0, 0, 0, 0.5, 0])  # zoom on the central half
    images = ramp_images(3)
    fig = A.plot_stn(model, images, classes=["a", "b", "c"], lines=5)
    axes = np.array(fig.axes).reshape(3, 3)
    probs = A.predict(model, images)
    for i in range(3):
        k = int(probs[i].argmax())
        assert axes[0, i].get_title() == f"{'abc'[k]} {probs[i, k].item():.0%}"
        np.testing.assert_allclose(axes[0, i].get_images()[0].get_array(), images[i, 0].numpy() / 255, atol=1e-6)
        warped = axes[1, i].get_images()[0].get_array()
        x = images[i, 0].double().numpy() / 255  # output pixel 2m samples input m + 5.75 (bilinear)
        expected = (x[5:17, 5:17] + 3 * x[6:18, 5:17] + 3 * x[5:17, 6:18] + 9 * x[6:18, 6:18]) / 16
        np.testing.assert_allclose(warped[::2, ::2], expected, atol=1e-5)
        (outline,) = [line for line in axes[2, i].lines if line.get_gid() == "stn_outline"]
        lo, hi = (S / 4 - 0.5), (3 * S / 4 - 0.5)  # the central half, by pixel edges
        np.testing.assert_allclose(outline.get_xydata(), [[lo, lo], [hi, lo], [hi, hi], [lo, hi], [lo, lo]], atol=1e-4)
        assert len([line for line in axes[2, i].lines if line.get_gid() == "stn_mesh"]) == 10
    assert [axes[r, 0].get_ylabel().split()[0] for r in range(3)] == ["input", "warped", "sampling"]


def test_deep_emotion_model_through_stn_views_and_occlusion():
    from fercore.models import create_model, list_models

    if "deep_emotion" not in list_models():
        pytest.skip("fercore.models.deep_emotion is not registered yet")
    torch.manual_seed(0)
    model = create_model("deep_emotion")
    images = ramp_images(2, size=48)
    views = A.stn_views(model, images)  # initialised to the identity: the warp changes nothing
    np.testing.assert_allclose(views["warped"], views["input"], atol=1e-5)
    np.testing.assert_allclose(views["theta"][0], [[1, 0, 0], [0, 1, 0]])
    with torch.no_grad():  # now zoom on the central half
        model.stn.loc[-1].bias.copy_(torch.tensor([0.5, 0, 0, 0, 0.5, 0]))
    views = A.stn_views(model, images)
    np.testing.assert_allclose(views["grid"][0, 0, 0], [11.75, 11.75], atol=1e-4)
    np.testing.assert_allclose(views["grid"][0, -1, -1], [35.25, 35.25], atol=1e-4)
    assert A.occlusion_map(model, images, patch=12, stride=12).shape == (2, 48, 48)
    assert len(A.plot_stn(model, images).axes) == 6


# --------------------------------------------------------------------------- class maps and figures
def test_class_average_maps_by_hand_and_nan_for_absent_classes():
    maps = torch.tensor([[[1.0, 2], [3, 4]], [[3, 4], [5, 6]], [[10, 0], [0, 10]], [[0, 0], [0, 0]]])
    avg = A.class_average_maps(maps, torch.tensor([0, 0, 2, 2]), 4)
    torch.testing.assert_close(avg[0], torch.tensor([[2.0, 3], [4, 5]]))
    torch.testing.assert_close(avg[2], torch.tensor([[5.0, 0], [0, 5]]))
    assert torch.isnan(avg[1]).all() and torch.isnan(avg[3]).all()
    votes = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.0, 1.0]])  # FERPlus-style targets
    torch.testing.assert_close(A.class_average_maps(maps, votes, 2)[1], (maps[1] + maps[3]) / 2)
    faces = A.class_average_maps(ramp_images(4, size=2), [0, 0, 2, 2], 3)  # (N, C, H, W) works too
    assert faces.shape == (3, 1, 2, 2)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        A.class_average_maps(maps, [0, 1, 2, 0], 2)


def test_plot_class_maps_one_panel_per_class_on_a_shared_scale():
    avg = torch.stack([torch.full((S, S), 0.1), torch.full((S, S), float("nan")), torch.full((S, S), 0.4)])
    faces = A.class_average_maps(ramp_images(4).float(), [0, 0, 2, 2], 3)
    fig = A.plot_class_maps(avg, ["angry", "disgust", "happy"], mean_faces=faces)
    panels, colorbar = fig.axes[:3], fig.axes[3:]
    assert len(colorbar) == 1
    assert [ax.get_title() for ax in panels] == ["angry", "disgust (no images)", "happy"]
    heat = [[im for im in ax.get_images() if im.get_gid() == "heatmap"] for ax in panels]
    assert [len(h) for h in heat] == [1, 0, 1]  # the absent class is left blank
    assert heat[0][0].get_clim() == heat[2][0].get_clim() == (0.0, pytest.approx(0.4))
    face = panels[0].get_images()[0].get_array()
    np.testing.assert_allclose(face, faces[0, 0].numpy() / 255, atol=1e-6)
    bare = A.plot_class_maps(avg, None)  # no faces; 3 classes have no canonical names: indices
    assert len(bare.axes) == 4 and bare.axes[2].get_title() == "2"


def test_overlay_and_plot_saliency_layout():
    images = ramp_images(3)
    occ = torch.randn(3, S, S)
    sal = torch.rand(3, S, S)
    fig = A.plot_saliency(images, {"occlusion": occ, "saliency": sal}, titles=["x", "y", "z"])
    axes = np.array(fig.axes).reshape(3, 3)
    assert [axes[r, 0].get_ylabel() for r in range(3)] == ["image", "occlusion", "saliency"]
    assert [ax.get_title() for ax in axes[0]] == ["x", "y", "z"]
    (heat,) = [im for im in axes[1, 2].get_images() if im.get_gid() == "heatmap"]
    np.testing.assert_allclose(heat.get_array(), occ[2].numpy())
    top = occ[2].abs().max().item()
    assert heat.get_clim() == pytest.approx((-top, top)) and heat.get_cmap().name == "RdBu_r"  # signed: diverging
    (heat,) = [im for im in axes[2, 0].get_images() if im.get_gid() == "heatmap"]
    assert heat.get_clim() == pytest.approx((0, sal[0].max().item()))
    assert len(A.plot_saliency(images, sal).axes) == 6
    fig2, ax = plt.subplots()
    assert A.overlay(ax, images[0], torch.rand(6, 6)) is ax  # a coarse map is stretched over the image
    assert tuple(ax.get_images()[1].get_extent()) == (-0.5, S - 0.5, S - 0.5, -0.5)
    with pytest.raises(ValueError, match="3 images but 2 maps"):
        A.plot_saliency(images, sal[:2])


def test_attention_figures_save_headless(tmp_path):
    model = ShiftSTN([0.8, 0.1, 0.1, -0.1, 0.8, 0])
    images = ramp_images(2)
    occ = A.occlusion_map(model, images, patch=6, stride=3)
    figures = [
        A.plot_stn(model, images),
        A.plot_saliency(A.model_view(model, images), {"occlusion": occ, "saliency": A.gradient_saliency(model, images)}),
        A.plot_class_maps(A.class_average_maps(occ, [0, 1], 3), ["a", "b", "c"]),
    ]
    for i, fig in enumerate(figures):
        fig.savefig(tmp_path / f"{i}.png", dpi=40)
        assert (tmp_path / f"{i}.png").read_bytes()[:4] == b"\x89PNG"
