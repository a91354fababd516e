"""fercore.viz.widgets.AttentionExplorer with no frontend: controls re-render what they should."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fercore.data.base import FERDataset  # noqa: E402
from fercore.viz import attention as A  # noqa: E402
from fercore.viz.widgets import AttentionExplorer  # noqa: E402

S = 16
CLASSES = ["angry", "happy", "sad"]


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called by library code"))
    yield
    plt.close("all")


def cfg():
    return {"input_size": (1, S, S), "num_classes": 3, "mean": (0.5,), "std": (0.5,)}


def linear_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(S * S, 3))
    model.default_cfg = cfg()
    return model


class ZoomSTN(nn.Module):
    """Fixed zoom on the central half, then a linear classifier: the deep_emotion interface."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(S * S, 3)
        self.default_cfg = cfg()

    def forward_with_attention(self, x):
        theta = torch.tensor([[0.5, 0, 0], [0, 0.5, 0]]).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, align_corners=False)
        return self.fc(warped.flatten(1)), {"theta": theta, "warped": warped, "grid": grid}

    def forward(self, x):
        return self.forward_with_attention(x)[0]


def dataset(n=4) -> FERDataset:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 1, S, S), generator=g, dtype=torch.uint8)
    return FERDataset(images, torch.arange(n) % 3, CLASSES)


def svg_outputs(explorer) -> list[str]:
    return [o["data"]["image/svg+xml"] for o in explorer.output.outputs]


def blocks_constant(m: torch.Tensor, side: int) -> bool:
    tiles = m.view(S // side, side, S // side, side)
    return bool((tiles == tiles[:, :1, :, :1]).all())


def test_explorer_renders_the_chosen_image_headless():
    model, ds = linear_model(), dataset()
    open_before = plt.get_fignums()
    ex = AttentionExplorer(model, ds, index=1, patch=4, stride=2)
    assert plt.get_fignums() == open_before  # kept out of pyplot: never shown twice, never leaked
    (svg,) = svg_outputs(ex)
    assert "<svg" in svg and "image-rendering:pixelated" in svg  # vector text, the face at its own pixels
    image = ds.images[1:2]
    torch.testing.assert_close(ex.last_probs, A.predict(model, image)[0])
    assert ex.last_target == int(ex.last_probs.argmax())
    torch.testing.assert_close(ex.last_map, A.occlusion_map(model, image, patch=4, stride=2)[0])
    assert list(ex.axes) == ["image", "occlusion", "probs"]  # no transformer, no warp panels
    bars = ex.axes["probs"].patches
    np.testing.assert_allclose([b.get_width() for b in bars], ex.last_probs.numpy(), rtol=1e-6)
    ticks = [t.get_text() for t in ex.axes["probs"].get_yticklabels()]
    assert ticks == ["angry", "happy (true)", "sad"]  # image 1's label is 1
    assert ex.axes["image"].get_title() == "#1  true: happy"
    shown = ex.axes["image"].get_images()[0].get_array()
    np.testing.assert_allclose(shown, ds.images[1, 0].numpy() / 255, atol=1e-6)


def test_moving_the_index_slider_re_renders_that_image():
    model, ds = linear_model(), dataset()
    ex = AttentionExplorer(model, ds)
    probs0, map0 = ex.last_probs.clone(), ex.last_map.clone()
    ex.index.value = 2  # what a user's drag does: observe -> update
    assert ex.last_index == 2
    torch.testing.assert_close(ex.last_probs, A.predict(model, ds.images[2:3])[0])
    assert not torch.allclose(ex.last_probs, probs0)
    assert not torch.allclose(ex.last_map, map0)
    assert len(ex.output.outputs) == 1  # replaced, not appended
    assert ex.axes["image"].get_title().startswith("#2")


def test_patch_and_stride_set_the_blockiness_of_the_map():
    ex = AttentionExplorer(linear_model(), dataset(), patch=4, stride=4)
    assert blocks_constant(ex.last_map, 4) and not blocks_constant(ex.last_map, 8)
    ex.patch.value = 8
    ex.stride.value = 8
    assert blocks_constant(ex.last_map, 8)
    assert "8px / 8" in ex.axes["occlusion"].get_title()
    ex.patch.value = 4  # the stride's range follows the patch: 8 is clamped to 4, and the box shows 4
    assert (ex.stride.max, ex.stride.value) == (4, 4)
    assert "4px / 4" in ex.axes["occlusion"].get_title()
    assert blocks_constant(ex.last_map, 4) and not blocks_constant(ex.last_map, 8)


def test_the_stride_slider_cannot_pass_the_patch_and_a_patch_change_draws_once(monkeypatch):
    ex = AttentionExplorer(linear_model(), dataset(), patch=8, stride=12)
    assert (ex.stride.max, ex.stride.value) == (8, 8)  # a stride above the patch is never shown
    ex.stride.value = 20
    assert ex.stride.value == 8
    draws = []
    monkeypatch.setattr(ex, "_draw", lambda *a: draws.append(a))
    ex.patch.value = 2
    assert (ex.stride.max, ex.stride.value) == (2, 2) and len(draws) == 1
    ex.patch.value = 6  # a larger patch widens the range and keeps the stride
    assert (ex.stride.max, ex.stride.value) == (6, 2)


def test_explaining_another_class_changes_the_map():
    model, ds = linear_model(), dataset()
    ex = AttentionExplorer(model, ds, patch=4, stride=4)
    other = (ex.last_target + 1) % 3
    ex.target.value = other
    assert ex.last_target == other
    torch.testing.assert_close(ex.last_map, A.occlusion_map(model, ds.images[:1], target=other, patch=4, stride=4)[0])
    assert CLASSES[other] in ex.axes["occlusion"].get_title()


def test_a_spatial_transformer_adds_the_warp_and_the_model_mode_is_kept():
    model, ds = ZoomSTN(), dataset()
    model.train()
    ex = AttentionExplorer(model, ds, index=3)
    assert list(ex.axes) == ["image", "occlusion", "grid", "warped", "probs"]
    expected = A.stn_views(model, ds.images[3:4])["warped"][0]
    np.testing.assert_allclose(ex.last_warped.numpy(), expected)
    np.testing.assert_allclose(ex.axes["warped"].get_images()[0].get_array(), expected[0])
    (outline,) = [line for line in ex.axes["grid"].lines if line.get_gid() == "stn_outline"]
    assert outline.get_xydata().min() == pytest.approx(S / 4 - 0.5)  # the central half
    ex.index.value = 0
    assert model.training


def test_a_cbam_resnet_has_attention_maps_but_no_warp():
    # forward_with_attention alone does not make a spatial transformer: CBAM's gates come that way too
    from fercore.data import load_dataset
    from fercore.models import create_model

    torch.manual_seed(0)
    model, data = create_model("resnet18_cbam", width=0.125), load_dataset("synthetic", None, "val", n=2)
    assert not A.has_stn(model, data.images) and A.has_stn(ZoomSTN(), dataset().images)
    assert not A.has_stn(linear_model(), dataset().images)
    ex = AttentionExplorer(model, data, index=1, patch=8, stride=8)
    assert not ex.has_stn and ex.last_warped is None
    assert list(ex.axes) == ["image", "occlusion", "probs"]
    assert tuple(ex.figure.get_size_inches()) == (8.5, 2.9)  # sized for three panels, not five
    torch.testing.assert_close(ex.last_probs, A.predict(model, data.images[1:2])[0])
    assert ex.last_map.shape == (44, 44)  # the model's 44-px centre crop of the 48-px face
    torch.testing.assert_close(ex.last_map, A.occlusion_map(model, data.images[1:2], patch=8, stride=8)[0])


def test_display_offers_the_widget_and_a_static_figure(monkeypatch):
    import IPython.display

    ex = AttentionExplorer(linear_model(), dataset(), patch=4, stride=4)
    assert ex.output in ex.widget.children
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    ex.display()
    assert shown == [ex]


# ----------------------------------------------------------------- Prior Attention blocks
class MouthOnly(nn.Module):
    """Eats the stacked blocks; its logits read the mouth block (channel 1) alone."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32 * 32, 7)
        self.default_cfg = {"input_size": (2, 32, 32), "num_classes": 7, "mean": (0.5, 0.5), "std": (0.5, 0.5),
                            "regions": "prior_attention"}

    def forward(self, x):
        return self.fc(x[:, 1].flatten(1))


def test_prior_blocks_explorer_follows_the_margin_and_occludes_one_block_headless():
    from fercore.data import load_dataset
    from fercore.faces.regions import MARGIN, cut_blocks
    from fercore.viz.widgets import PriorBlocksExplorer

    torch.manual_seed(0)
    data = load_dataset("synthetic", None, "val", n=3)
    ex = PriorBlocksExplorer(MouthOnly(), data, index=1)
    face, points = data.images[1, 0].numpy(), data.meta["landmarks"][1]
    assert np.array_equal(ex.last_blocks, cut_blocks(face, points, MARGIN))
    assert ex.last_probs.sum() == pytest.approx(1, abs=1e-5)
    assert np.abs(ex.last_delta).max() > 1e-3  # the mouth is what this model reads
    ex.occlude.value = "eyes"
    assert np.abs(ex.last_delta).max() < 1e-6  # greying the eyes changes nothing
    ex.margin.value = 0.4
    assert np.array_equal(ex.last_blocks, cut_blocks(face, points, 0.4))
    ex.index.value = 2
    assert ex.last_index == 2 and set(ex.axes) == {"face", "eyes", "mouth", "probs", "eyes_occluded",
                                                   "mouth_occluded", "delta"}
    assert ex.axes["eyes_occluded"].get_images()[0].get_array().min() == 128  # shown grey
    (out,) = ex.output.outputs
    assert out["data"]["image/svg+xml"].startswith("<?xml") and "image/svg+xml" in ex._repr_mimebundle_()
    assert not plt.get_fignums()


def test_prior_blocks_explorer_needs_a_region_model():
    from fercore.data import load_dataset
    from fercore.viz.widgets import PriorBlocksExplorer

    with pytest.raises(ValueError, match="needs a model that eats landmark blocks"):
        PriorBlocksExplorer(linear_model(), load_dataset("synthetic", None, "val", n=2))
