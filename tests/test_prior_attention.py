"""Prior Attention: the authors' layers and parameter count, the ablations, and training through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from fercore.cli import main
from fercore.labels import EMOTIONS_7
from fercore.models import create_model, get_model_info
from fercore.predict import SAMPLE_PHOTO
from fercore.transforms import ModelInput

pytestmark = pytest.mark.usefixtures("one_thread")
BLOCK_MODELS = ("prior_attention", "prior_attention_eyes", "prior_attention_mouth")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fc(n_in, n_out):
    return n_in * n_out + n_out


def test_parameter_count_is_the_authors_35_480_655():
    branch = (1 * 32 * 9 + 32) + 2 * 32 + (32 * 64 * 9 + 64) + fc(16384, 1024) + fc(1024, 512) + fc(512, 100)
    head = fc(200, 1024) + fc(1024, 512) + fc(512, 7)
    model = create_model("prior_attention", in_chans=2)
    assert n_params(model) == 2 * branch + head == 35_480_655
    assert [n_params(b) for b in model.branches] == [branch, branch]  # two branches, not shared
    assert model.branches[0][0].weight.data_ptr() != model.branches[1][0].weight.data_ptr()


def test_branch_layers_in_the_authors_order():
    kinds = [type(m).__name__ for m in create_model("prior_attention").branches[0]]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout", "Flatten",
                     "Linear", "ReLU", "Linear", "ReLU", "Dropout", "Linear"]
    head = create_model("prior_attention").head
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.1, 0.1]
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)] == [(200, 1024), (1024, 512), (512, 7)]


def test_forward_shapes_of_every_variant():
    blocks = torch.randn(5, 2, 32, 32)
    for name in BLOCK_MODELS:
        assert create_model(name, num_classes=8).eval()(blocks).shape == (5, 8)
    assert create_model("prior_attention_face").eval()(torch.randn(5, 1, 32, 32)).shape == (5, 7)
    one_branch = n_params(create_model("prior_attention").branches[0]) + fc(100, 1024) + fc(1024, 512) + fc(512, 7)
    assert {n: n_params(create_model(n)) for n in (*BLOCK_MODELS[1:], "prior_attention_face")} == dict.fromkeys(
        ("prior_attention_eyes", "prior_attention_mouth", "prior_attention_face"), one_branch)


def test_the_variants_differ_only_in_which_blocks_they_see():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 32, 32)
    new_eyes, new_mouth = x.clone(), x.clone()
    new_eyes[:, 0] = torch.randn(4, 32, 32)
    new_mouth[:, 1] = torch.randn(4, 32, 32)
    sees = {}
    for name in BLOCK_MODELS:
        model = create_model(name).eval()
        with torch.no_grad():
            base = model(x)
            sees[name] = (not torch.allclose(model(new_eyes), base), not torch.allclose(model(new_mouth), base))
    assert sees == {"prior_attention": (True, True), "prior_attention_eyes": (True, False),
                    "prior_attention_mouth": (False, True)}


def test_configs_say_what_each_variant_eats():
    for name in BLOCK_MODELS:
        cfg = create_model(name, in_chans=2).default_cfg
        assert cfg["regions"] == "prior_attention" and cfg["input_size"] == (2, 32, 32)
        assert get_model_info(name).recipes == get_model_info("prior_attention").recipes  # the same budget
    face = create_model("prior_attention_face", in_chans=1)
    assert "regions" not in face.default_cfg
    # The whole 48-px face is resized to the branch's 32x32, not centre-cropped.
    faces = torch.zeros(3, 1, 48, 48, dtype=torch.uint8)
    faces[:, :, :8] = 255
    x = ModelInput(face)(faces)
    assert x.shape == (3, 1, 32, 32) and x[0, 0, 0, 0] == 1.0
    assert "regions" not in create_model("vgg_fer").default_cfg  # other models' configs are unchanged


def test_recipes_full_is_the_papers_and_only_flips_are_augmented():
    info = get_model_info("prior_attention")
    full = info.recipe("full")
    assert (full.optimizer, full.lr, full.batch_size, full.epochs, full.augment) == ("adam", 1e-3, 64, 50, {})
    for scale in ("smoke", "standard"):
        assert info.recipe(scale).augment == {"hflip": True}  # a crop or rotation would move the boxes


def test_blocks_need_two_channels():
    with pytest.raises(ValueError, match="stacked blocks .* as 2 channels"):
        create_model("prior_attention", in_chans=1)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pa") / "run"
    code = main(["train", "--model", "prior_attention", "--dataset", "synthetic", "--scale", "smoke", "--epochs", "1",
                 "--recipe-arg", "train_subset=128", "--recipe-arg", "val_subset=64", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_train_through_the_cli_writes_metrics_with_the_blocks(smoke_run):
    m = json.loads((smoke_run / "metrics.json").read_text())
    assert m["model"] == "prior_attention" and m["epochs_run"] == 1 and 0 <= m["val"]["accuracy"] <= 1
    assert m["regions"] == {"train": {"n": 128, "fallbacks": 0}, "val": {"n": 64, "fallbacks": 0},
                            "test": {"n": 700, "fallbacks": 0}}
    assert "Prior Attention blocks" in m["protocol"]["description"]
    assert m["recipe"]["augment"] == {"hflip": True}


def test_evaluate_uses_the_same_hook_and_reproduces_the_test_figure(smoke_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(smoke_run / "best.pt"), "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    m = json.loads((smoke_run / "metrics.json").read_text())
    assert result["accuracy"] == pytest.approx(m["test"]["accuracy"]) and result["n"] == 700
    assert result["regions"] == {"test": {"n": 700, "fallbacks": 0}}


def test_predict_cuts_the_blocks_from_the_aligned_face_with_the_datasets_function(smoke_run, capsys):
    from fercore.faces import faces_in, read_image
    from fercore.faces.regions import aligned_points, cut_blocks
    from fercore.predict import FACE_SIZE, predict_image
    from fercore.train import load_model

    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(smoke_run / "best.pt"), str(SAMPLE_PHOTO), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    (face,) = result["faces"]
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    # What the model is given: the blocks cut_blocks cuts from the aligned face at its aligned landmarks.
    model, seen = load_model(smoke_run / "best.pt"), []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    again = predict_image(model, SAMPLE_PHOTO, list(face["probabilities"]))["faces"][0]
    (found,) = faces_in(read_image(SAMPLE_PHOTO), size=FACE_SIZE)
    blocks = torch.from_numpy(cut_blocks(found["face"], aligned_points(found["points"], FACE_SIZE)))[None]
    assert seen[0].shape == (1, 2, 32, 32)
    assert torch.allclose(seen[0], ModelInput(model)(blocks))
    assert again["probabilities"] == face["probabilities"]


def test_aligned_points_land_on_the_aligned_faces_eyes():
    from fercore.faces import EYE_DISTANCE, EYE_Y, faces_in, read_image
    from fercore.faces.regions import aligned_points

    (found,) = faces_in(read_image(SAMPLE_PHOTO), size=48)
    p = aligned_points(found["points"], 48)
    right, left = p[36:42].mean(0), p[42:48].mean(0)
    assert left - right == pytest.approx([EYE_DISTANCE * 48, 0], abs=1e-3)
    assert (left + right) / 2 == pytest.approx([24 - 0.5, EYE_Y * 48 - 0.5], abs=1e-3)


def test_region_models_need_the_faces_landmarks():
    from fercore.faces.regions import face_regions

    with pytest.raises(ValueError, match="eats prior_attention blocks: give the 68 landmarks of each of the 2 faces"):
        face_regions(np.zeros((2, 48, 48), np.uint8), None, get_model_info("prior_attention").default_cfg())


def test_video_frames_go_through_the_same_blocks(smoke_run, tmp_path):
    from fercore.train import load_model
    from fercore.video import predict_video, write_synthetic_video

    clip = write_synthetic_video(tmp_path / "clip.mp4", ("happy",), frames_each=3)
    model, seen = load_model(smoke_run / "best.pt"), []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    s = predict_video(model, str(clip), list(EMOTIONS_7), detect_every=2)
    assert s["frames"] == 3 and s["tracks"] == 1
    assert seen == [(1, 2, 32, 32)] * 3  # detected frames and tracked ones alike


def test_train_reproduces_the_authors_leftover_image_bug_from_a_data_arg(tmp_path, capsys):
    base = ["train", "--model", "prior_attention_mouth", "--dataset", "synthetic", "--epochs", "1",
            "--data-arg", "n=64", "--quiet"]
    assert main([*base, "--data-arg", "regions_bug=leftover_image", "--out", str(tmp_path / "bug")]) == 0
    m = json.loads((tmp_path / "bug" / "metrics.json").read_text())
    assert "The authors' bug reproduced (leftover_image)" in m["protocol"]["description"]
    capsys.readouterr()
    assert main([*base, "--data-arg", "regions_bug=leftover", "--out", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "regions_bug: unknown 'leftover'; valid: leftover_image, top_from_rightmost" in err[0]
