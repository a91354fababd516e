"""The two entry points, ``load_dataset`` and ``create_model``, and ``FERDataset`` itself."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fercore.data import FERDataset, list_datasets, load_dataset
from fercore.labels import EMOTIONS, EMOTIONS_7, classes_for, label_name
from fercore.models import create_model, get_model_info, list_models
from fercore.recipes import SCALES


def tiny_dataset(n=6):
    images = torch.arange(n * 4, dtype=torch.uint8).view(n, 1, 2, 2)
    return FERDataset(images, torch.arange(n) % 7, EMOTIONS_7, {"file": np.array([f"f{i}.png" for i in range(n)])},
                      name="tiny", split="train")


def test_labels_follow_fer2013_order():
    assert EMOTIONS_7 == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert EMOTIONS[7] == "contempt" and label_name(3) == "happy" and len(classes_for(8)) == 8
    with pytest.raises(ValueError, match="outside"):
        label_name(8)


def test_unknown_dataset_and_split_list_the_valid_names():
    with pytest.raises(ValueError, match="available: .*fer2013.*synthetic"):
        load_dataset("fer2014")
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        load_dataset("synthetic", split="validation")
    assert {"fer2013", "synthetic"} <= set(list_datasets())


def test_dataset_item_transform_subset_and_counts():
    ds = tiny_dataset()
    image, target = ds[2]
    assert image.dtype == torch.uint8 and image.shape == (1, 2, 2) and target == 2
    ds.transform, ds.target_transform = (lambda x: x.float() / 255), (lambda y: int(y) + 10)
    image, target = ds[2]
    assert image.dtype == torch.float32 and target == 12
    sub = ds.subset([4, 1])
    assert len(sub) == 2 and list(sub.meta["file"]) == ["f4.png", "f1.png"] and sub.targets.tolist() == [4, 1]
    assert torch.equal(sub.images[0], ds.images[4])
    assert len(ds.subset(ds.targets >= 3)) == 3
    assert ds.class_counts()["angry"] == 1 and sum(ds.class_counts().values()) == 6


def test_dataset_rejects_inconsistent_arrays():
    with pytest.raises(ValueError, match="uint8"):
        FERDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), EMOTIONS_7)
    with pytest.raises(ValueError, match="2 images but 3 targets"):
        FERDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), EMOTIONS_7)
    with pytest.raises(ValueError, match="meta\\['file'\\] has 1 entries for 2 images"):
        FERDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), EMOTIONS_7,
                   {"file": np.array(["a"])})


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: .*simple_cnn"):
        create_model("resnet1000")


def test_every_model_has_all_scales_and_builds_from_its_config():
    for name in list_models():
        info = get_model_info(name)
        assert set(info.recipes) == set(SCALES)
        model = create_model(name)
        c, h, w = model.default_cfg["input_size"]
        assert model(torch.zeros(2, c, h, w)).shape == (2, model.default_cfg["num_classes"])


def test_create_model_overrides_classes_and_channels():
    model = create_model("simple_cnn", num_classes=8, in_chans=3)
    assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 8)
    assert model.default_cfg["input_size"] == (3, 48, 48) and len(model.default_cfg["mean"]) == 3
    assert model.model_name == "simple_cnn" and model.model_kwargs == {"num_classes": 8, "in_chans": 3}


def test_simple_cnn_size_and_spatial_head():
    model = create_model("simple_cnn")
    # 3x3 convs without bias + BN (2 per channel): 1->16, 16->32, 32->32, 32->64, 64->64; linear 576->7.
    convs = sum(9 * a * b + 2 * b for a, b in [(1, 16), (16, 32), (32, 32), (32, 64), (64, 64)])
    assert sum(p.numel() for p in model.parameters()) == convs + 576 * 7 + 7 == 73_719
    # The head keeps a 3x3 layout of 64 channels: where a feature is survives pooling.
    assert model.head[-1].in_features == 64 * 9


def test_auto_dataset_is_synthetic_only_at_smoke_scale():
    from fercore.experiment import resolve_dataset
    assert resolve_dataset("auto", "smoke") == "synthetic"
    assert resolve_dataset("auto", "standard") == "fer2013" == resolve_dataset("auto", "full")
    assert resolve_dataset("fer2013", "smoke") == "fer2013"


def test_split_summary_counts_each_split_or_says_why_not(tmp_path):
    from fercore.data import split_summary
    from test_fer2013 import make_samples, write_folders
    write_folders(tmp_path, [s for s in make_samples() if s["usage"] != "PrivateTest"])
    rows = {r["split"]: r for r in split_summary("fer2013", tmp_path)}
    assert rows["train"]["images"] == 5 and sum(rows["train"][c] for c in EMOTIONS_7) == 5
    assert rows["val"]["images"] == 3 and rows["val"]["note"] == ""
    assert rows["test"]["images"] == 0 and "found usages: Training (5), PublicTest (3)" in rows["test"]["note"]
    with pytest.raises(ValueError, match="available"):
        split_summary("fer2014")


def test_model_arguments_follow_the_constructor_to_the_class_it_builds():
    from fercore.models import model_arguments
    assert list(model_arguments("simple_cnn")) == ["num_classes", "in_chans", "width", "dropout"]
    assert list(model_arguments("deep_emotion")) == ["num_classes", "in_chans", "dropout", "fc_l2"]
    assert "widths" in model_arguments("deepfer") and "batch_norm" in model_arguments("vgg_fer")
    for name in list_models():  # every name listed is one the model really takes
        params = model_arguments(name)
        assert {"num_classes", "in_chans"} <= set(params), name
        defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
        create_model(name, **defaults)  # those found behind the constructor's **kw too (deepfer's widths)


@pytest.mark.parametrize("name, kwargs, message", [
    ("simple_cnn", {"wdth": 32}, "model simple_cnn has no argument 'wdth'; it accepts: num_classes, in_chans, width, dropout"),
    ("simple_cnn", {"width": "abc"}, "argument width must be int, got 'abc'"),
    ("simple_cnn", {"width": 2.5}, "argument width must be int, got 2.5"),
    ("vgg_fer", {"batch_norm": 1}, "argument batch_norm must be bool, got 1"),
    ("deepfer", {"widths": "abc"}, "model deepfer cannot be built with widths='abc': not enough values"),
])
def test_a_wrong_model_argument_is_a_value_error_naming_it(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        create_model(name, **kwargs)


def test_recipe_fields_are_type_checked_and_augment_options_named():
    recipe = get_model_info("simple_cnn").recipes["smoke"]
    assert recipe.with_args({"lr": 1}).lr == 1 and recipe.with_args({"patience": "none"}).patience is None
    for args, message in [({"lr": "abc"}, "recipe field lr must be float, got 'abc'"),
                          ({"scheduler": 3}, "recipe field scheduler must be str or None, got 3"),
                          ({"epochs": 0}, "epochs must be a positive integer, got 0"),
                          ({"augment.nonexist": 1}, "unknown option(s) 'nonexist'; valid options: crop_padding, "
                                                    "resized_crop, hflip, rotate, translate, scale, erasing, output_size")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            recipe.with_args(args)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -1"):
        recipe.with_overrides(batch_size=-1)
