"""fercore.transforms: the one model-input path and the one prediction function, used by everything.

A 44-px model of 48-px faces (the coming ResNet) and a 3-channel model fed grey faces (RGB
crops) must get the same input tensor from the Trainer (fit and evaluate), the
visualisations, the widgets and ``predict_image``.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fercore.data.base import FERDataset  # noqa: E402
from fercore.models import create_model  # noqa: E402
from fercore.transforms import ModelInput, predict_logits, predict_proba, resolve_data_config  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


def faces(n=6, size=48, channels=1, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def by_hand(images, crop=None, channels=1, mean=0.5, std=0.5) -> torch.Tensor:
    """The expected input, written out: [0, 1], centre crop, grey repeated, normalised."""
    x = images.float() / 255
    if crop is not None:
        top = (x.shape[-1] - crop) // 2
        x = x[..., top:top + crop, top:top + crop]
    return (x.expand(-1, channels, -1, -1) - mean) / std


class Recorder(nn.Module):
    """Wraps a model and keeps every input it is given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []
        self.default_cfg = model.default_cfg

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def crop44_rgb() -> Recorder:
    """simple_cnn taking 3 x 44 x 44, as the ResNet of RGB crops will: grey 48-px faces must be cropped and repeated."""
    torch.manual_seed(0)
    model = create_model("simple_cnn", in_chans=3, width=4)
    model.default_cfg["input_size"] = (3, 44, 44)
    return Recorder(model)


# ---------------------------------------------------------------- config
def test_resolve_data_config_fills_channels_and_checks_values():
    cfg = resolve_data_config({"input_size": (3, 44, 44), "mean": (0.5,), "std": (0.25,)})
    assert cfg == {"input_size": (3, 44, 44), "mean": (0.5,) * 3, "std": (0.25,) * 3, "crop_pct": None}
    assert resolve_data_config(nn.Linear(2, 2)) == {"input_size": None, "mean": (0.5,), "std": (0.5,), "crop_pct": None}
    with pytest.raises(ValueError, match="2 mean and 2 std values for 3-channel input"):
        resolve_data_config({"input_size": (3, 48, 48), "mean": (0.5, 0.4), "std": (0.5, 0.5)})
    with pytest.raises(ValueError, match=r"crop_pct .* in \(0, 1\]"):
        resolve_data_config({"input_size": (1, 48, 48), "crop_pct": 1.5})


# ---------------------------------------------------------------- the steps
def test_larger_images_are_centre_cropped_smaller_ones_resized():
    images = faces(4)
    crop = ModelInput({"input_size": (1, 44, 44), "mean": (0.4,), "std": (0.2,)})
    torch.testing.assert_close(crop(images), by_hand(images, crop=44, mean=0.4, std=0.2))
    up = ModelInput({"input_size": (1, 64, 64)})
    expected = F.interpolate(images.float() / 255, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(up(images), (expected - 0.5) / 0.5)
    same = ModelInput({"input_size": (1, 48, 48)})
    torch.testing.assert_close(same(images), by_hand(images))


def test_crop_pct_resizes_then_crops_like_timm():
    images = faces(2, size=96)  # twice the size: resized to 48 (44 / crop_pct), then the central 44
    model_input = ModelInput({"input_size": (1, 44, 44), "crop_pct": 44 / 48})
    half = F.interpolate(images.float() / 255, size=(48, 48), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(model_input(images), (half[..., 2:46, 2:46] - 0.5) / 0.5)
    assert model_input.resize_hw((48, 48)) == (48, 48)  # 48-px faces are only cropped


def test_grey_faces_are_repeated_for_a_colour_model_and_other_mismatches_refused():
    images = faces(3)
    rgb = ModelInput({"input_size": (3, 48, 48), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2)})
    x = rgb(images)
    assert x.shape == (3, 3, 48, 48)
    torch.testing.assert_close(x[:, 2], ((images.float() / 255 - 0.3) / 0.2)[:, 0])
    torch.testing.assert_close(rgb(faces(3, channels=3))[:, 1], (faces(3, channels=3)[:, 1].float() / 255 - 0.4) / 0.2)
    with pytest.raises(ValueError, match="takes 1-channel input and the images have 3 channels"):
        ModelInput({"input_size": (1, 48, 48)})(faces(1, channels=3))


def test_inputs_floats_one_image_and_memory_format():
    images = faces(2)
    model_input = ModelInput({"input_size": (1, 48, 48)}, channels_last=True)
    x = model_input(images)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.device.type == "cpu"
    torch.testing.assert_close(model_input(images.float() / 255), x)  # floats in [0, 1]
    torch.testing.assert_close(model_input(images[0]), x[:1])  # one (C, H, W) image
    torch.testing.assert_close(model_input(images.numpy()), x)
    torch.testing.assert_close(model_input.denormalise(x), images.float() / 255)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\].*uint8"):
        model_input(images.float())  # 0..255 as floats: the usual slip
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\)"):
        model_input(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="uint8 images .* or floats"):
        model_input(images.long())


# ---------------------------------------------------------------- prediction
def test_predict_proba_with_tta_batches_and_the_model_mode_kept():
    model = crop44_rgb()
    model.train()
    images = faces(10)
    probs = predict_proba(model, images, batch_size=3)  # chunks of 3, 3, 3, 1
    model.eval()
    with torch.no_grad():
        expected = model.model(by_hand(images, crop=44, channels=3)).softmax(1)
        mirrored = model.model(by_hand(images, crop=44, channels=3).flip(-1))
    torch.testing.assert_close(probs, expected)
    model.train()
    flip = predict_logits(model, images, tta="flip")
    assert model.training and model.model.training  # back in the mode it was in
    torch.testing.assert_close(flip, (model.model.eval()(by_hand(images, crop=44, channels=3)) + mirrored) / 2)
    assert predict_proba(model, images, tta="ten_crop").shape == (10, 7)
    with pytest.raises(ValueError, match="TTA mode"):
        predict_proba(model, images, tta="five_crop")


# ---------------------------------------------------------------- one path for everyone
def test_trainer_viz_widgets_and_predict_image_feed_the_model_the_same_tensor(tmp_path):
    from fercore.predict import predict_image
    from fercore.train import Trainer
    from fercore.viz import attention as A
    from fercore.viz.widgets import AttentionExplorer, PredictUpload
    from fercore.data.synthetic import FaceParams, render_face
    from fercore.faces import faces_in

    model = crop44_rgb()
    images = faces(4)
    expected = by_hand(images, crop=44, channels=3)
    data = FERDataset(images, torch.tensor([0, 1, 2, 3]), [f"c{i}" for i in range(7)])

    def last_input(run) -> torch.Tensor:
        model.seen.clear()
        run()
        return model.seen[-1]

    t = Trainer(model, device="cpu", batch_size=4, progress=False)
    torch.testing.assert_close(last_input(lambda: t.evaluate(data)), expected)
    one = FERDataset(images[:1], torch.tensor([0]), data.classes)  # one image: the training batch is known
    torch.testing.assert_close(last_input(lambda: t.fit(one, epochs=1)), expected[:1])  # no augmentation
    before = {k: v.clone() for k, v in model.state_dict().items()}  # fit changed the weights: freeze them now
    model.eval()
    torch.testing.assert_close(last_input(lambda: t.predict_proba(images)), expected)
    torch.testing.assert_close(A.to_model_input(model, images), expected)
    torch.testing.assert_close(last_input(lambda: A.predict(model, images)), expected)
    torch.testing.assert_close(last_input(lambda: A.gradient_saliency(model, images)), expected)
    torch.testing.assert_close(A.model_view(model, images), expected * 0.5 + 0.5)
    explorer = AttentionExplorer(model, data, patch=8, stride=8)
    assert model.seen and any(torch.equal(x, expected[:1]) for x in model.seen)  # its prediction of image 0
    torch.testing.assert_close(explorer.last_probs, A.predict(model, images[:1])[0])

    face, _ = render_face(FaceParams(character=1), size=200, rgb=True)
    photo = np.full((480, 640, 3), 200, np.uint8)
    photo[140:340, 220:420] = face
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    aligned = torch.from_numpy(faces_in(photo, size=48)[0]["face"])[None, None]  # what every dataset holds: 48 px grey
    result = last_input(lambda: predict_image(model, path, data.classes))
    torch.testing.assert_close(result, by_hand(aligned, crop=44, channels=3))
    upload = PredictUpload(model, data.classes).predict_file(path)
    assert upload["faces"][0]["probabilities"] == predict_image(model, path, data.classes)["faces"][0]["probabilities"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing but fit trained it
