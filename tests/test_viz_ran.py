"""RAN's figures and explorer: what they draw is what the model weighed."""
from __future__ import annotations

import pytest
import torch

from fercore.data import load_dataset
from fercore.faces.regions import RAN_CROPS
from fercore.models import create_model
from fercore.viz import RANExplorer, plot_ran, plot_weights_by_class, ran_weights, region_names, weights_by_class
from fercore.viz.attention import to_model_input

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_and_faces():
    torch.manual_seed(0)
    return create_model("ran", width=0.125, crop_size=16, num_classes=7).eval(), load_dataset("synthetic", split="val", n=21)


def test_ran_weights_are_the_models_own_on_its_input(model_and_faces):
    model, faces = model_and_faces
    w = ran_weights(model, faces.images[:5], batch_size=2)
    with torch.no_grad():
        logits, att = model.forward_with_attention(to_model_input(model, faces.images[:5]))
    assert torch.allclose(w["mu"], att["mu"]) and torch.allclose(w["nu"], att["nu"])
    assert torch.allclose(w["probs"], logits.softmax(1))
    assert w["crops"].shape == (5, len(RAN_CROPS), 1, 16, 16) and w["view"].shape == (5, 1, 44, 44)
    assert 0 <= w["crops"].min() and w["crops"].max() <= 1


def test_plot_ran_draws_every_crop_and_box(model_and_faces):
    model, faces = model_and_faces
    fig = plot_ran(model, faces.images[:2], faces.classes, faces.labels()[:2])
    boxes = [p.get_gid() for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith("box_")]
    assert sorted(boxes) == sorted([f"box_{n}" for n in region_names(model)[:-1]] * 2)  # the face is the image
    assert len(fig.axes) == 2 * (len(RAN_CROPS) + 2)


def test_weights_by_class_averages_mu_over_each_true_class(model_and_faces):
    model, faces = model_and_faces
    table = weights_by_class(model, faces)
    mu, labels = ran_weights(model, faces.images)["mu"], torch.as_tensor(faces.labels())
    assert table.shape == (7, len(RAN_CROPS))
    assert torch.allclose(torch.as_tensor(table[3]).float(), mu[labels == 3].mean(0), atol=1e-6)
    assert plot_weights_by_class(table, faces.classes, region_names(model)).axes


def test_explorer_occludes_the_face_and_shows_the_weights_of_what_it_drew(model_and_faces):
    model, faces = model_and_faces
    explorer = RANExplorer(model, faces, index=2)
    assert torch.equal(explorer.last_image, faces.images[2])  # side 0: no occluder
    clean = explorer.last_mu.clone()
    explorer.x.value, explorer.y.value = 24, 14
    explorer.side.value = 16  # each change redraws
    assert (explorer.last_image[..., 6:22, 16:32] == 128).all() and torch.equal(
        explorer.last_image[..., 30:, :], faces.images[2][..., 30:, :])
    assert torch.allclose(explorer.last_mu, ran_weights(model, explorer.last_image[None])["mu"][0])
    assert not torch.allclose(explorer.last_mu, clean)
    assert "image/svg+xml" in explorer._repr_mimebundle_()
