"""Batched augmentation and TTA views, checked against torchvision image by image."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from fercore.data import augment as A
from fercore.models import MODELS


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b=16, c=1, h=48, w=48, seed=0) -> torch.Tensor:
    """Random float images in [0.5, 1.5): never 0, so erased or padded pixels stand out."""
    return torch.rand(b, c, h, w, generator=gen(seed)) + 0.5


ALL_OPS = {
    "crop_pad": A.RandomCropPad(padding=4),
    "resized_crop": A.RandomResizedCropBatch(40, scale=(0.5, 1.0)),
    "hflip": A.RandomHFlip(),
    "affine": A.RandomAffineBatch(15, translate=0.1, scale=(0.9, 1.1)),
    "erasing": A.RandomErasingBatch(0.5),
    "pipeline": A.build_augment(crop_padding=4, hflip=True, rotate=10, erasing=0.25),
}


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("name", ALL_OPS)
def test_same_seed_same_output_other_seed_differs(name):
    op, x = ALL_OPS[name], images()
    first, again, other = op(x, gen(1)), op(x, gen(1)), op(x, gen(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.device == x.device and first.dtype == x.dtype


def test_without_generator_uses_the_global_cpu_rng():
    aug, x = A.build_augment(crop_padding=4, hflip=True, rotate=10), images()
    torch.manual_seed(5)
    first = aug(x)
    torch.manual_seed(5)
    assert torch.equal(aug(x), first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_matches_cpu_batch_for_the_same_seed():
    aug = A.build_augment(resized_crop=(0.7, 1.0), crop_padding=2, hflip=True, rotate=10, translate=0.1, erasing=0.5)
    x = images()
    on_gpu = aug(x.cuda(), gen(3))
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), aug(x, gen(3)), atol=1e-4, rtol=0)


def test_uint8_input_is_rejected_with_a_hint():
    with pytest.raises(TypeError, match=r"float tensor \(B, C, H, W\).*uint8"):
        A.build_augment(hflip=True)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


# ------------------------------------------------------------------ flip
def test_hflip_p1_is_torchvision_flip_and_p0_is_identity():
    x = images(4)
    torch.testing.assert_close(A.RandomHFlip(1.0)(x, gen(0)), TF.horizontal_flip(x), atol=0, rtol=0)
    assert torch.equal(A.RandomHFlip(0.0)(x, gen(0)), x)


def test_hflip_mirrors_only_the_drawn_samples():
    x, op = images(64), A.RandomHFlip(0.5)
    flip = op.get_params(x.shape, gen(4))
    out = op(x, gen(4))
    assert 0 < flip.sum() < 64
    assert torch.equal(out[flip], x[flip].flip(-1)) and torch.equal(out[~flip], x[~flip])


# ------------------------------------------------------------------ crop with padding
@pytest.mark.parametrize("size, padding", [(None, 3), (8, 0)])
def test_crop_pad_is_a_torchvision_crop_of_the_padded_image(size, padding):
    x = images(32, c=2, h=12, w=12)
    out = A.RandomCropPad(size, padding)(x, gen(7))
    side = size or 12
    assert out.shape == (32, 2, side, side)
    span = 12 + 2 * padding - side
    found = []
    for b in range(6):
        padded = TF.pad(x[b], [padding])
        matches = [(i, j) for i in range(span + 1) for j in range(span + 1)
                   if torch.equal(TF.crop(padded, i, j, side, side), out[b])]
        assert len(matches) == 1, f"sample {b}: no torchvision crop matches"
        found.append(matches[0])
    assert len(set(found)) > 1, "every sample got the same offset"


def test_crop_pad_offsets_cover_the_whole_range():
    top, left = A.RandomCropPad(None, 4).get_params((2000, 1, 48, 48), gen(0))
    for offsets in (top, left):
        assert offsets.min() == 0 and offsets.max() == 8
        assert len(offsets.unique()) == 9


# ------------------------------------------------------------------ ten crop and TTA views
def test_ten_crop_matches_torchvision_per_sample():
    x = images(3, c=2, h=12, w=14)
    views = A.ten_crop(x, 8)
    assert views.shape == (3, 10, 2, 8, 8)
    for b in range(3):
        torch.testing.assert_close(views[b], torch.stack(TF.ten_crop(x[b], [8, 8])), atol=0, rtol=0)


def test_tta_views_shapes_and_contents():
    x = images(5, h=48, w=48)
    plain = A.tta_views(x, None, 44)
    assert plain.shape == (5, 1, 1, 44, 44)
    torch.testing.assert_close(plain[:, 0], x[:, :, 2:46, 2:46], atol=0, rtol=0)
    assert torch.equal(A.tta_views(x, "none", 44), plain)
    assert torch.equal(A.tta_views(x)[:, 0], x)  # full size: no crop
    flip = A.tta_views(x, "flip", 44)
    assert flip.shape == (5, 2, 1, 44, 44)
    assert torch.equal(flip[:, 0], plain[:, 0]) and torch.equal(flip[:, 1], plain[:, 0].flip(-1))
    assert A.tta_views(x, "ten_crop", 44).shape == (5, 10, 1, 44, 44)
    with pytest.raises(ValueError, match="ten_crop"):
        A.tta_views(x, "five_crop", 44)


def test_center_crop_is_the_middle_window():
    x = images(2, h=10, w=10)
    assert torch.equal(A.center_crop(x, 6), x[:, :, 2:8, 2:8])


# ------------------------------------------------------------------ affine
def test_affine_without_motion_is_identity():
    x = images(8)
    out = A.RandomAffineBatch(degrees=0, translate=0, scale=(1, 1))(x, gen(0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_is_rot90_with_torchvision_signs():
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 1, 1:6] = 1.0   # a bar along the top ...
    x[:, :, 1:4, 5] = 2.0   # ... with a hook at its right end
    clockwise, anticlockwise = torch.rot90(x, -1, dims=(-2, -1)), torch.rot90(x, 1, dims=(-2, -1))
    # torchvision's signs differ between its two functions: affine turns clockwise, rotate anticlockwise.
    no_motion = dict(translate=[0.0, 0.0], scale=1.0, shear=[0.0, 0.0])
    torch.testing.assert_close(TF.affine(x[0], 90.0, **no_motion), clockwise[0], atol=0, rtol=0)
    torch.testing.assert_close(TF.rotate(x[0], 90.0), anticlockwise[0], atol=0, rtol=0)
    # RandomAffineBatch follows RandomAffine, i.e. functional.affine.
    torch.testing.assert_close(A.RandomAffineBatch(degrees=(90, 90))(x, gen(0)), clockwise, atol=1e-5, rtol=0)
    torch.testing.assert_close(A.RandomAffineBatch(degrees=(-90, -90))(x, gen(0)), anticlockwise, atol=1e-5, rtol=0)


def test_affine_matches_torchvision_per_sample_on_a_non_square_image():
    x = images(6, c=2, h=20, w=28)
    op = A.RandomAffineBatch(30, translate=0.15, scale=(0.8, 1.2))
    angle, translate, scale = op.get_params(x.shape, gen(9))
    assert torch.equal(translate, translate.round()) and translate.abs().max() > 0
    out = op(x, gen(9))
    for b in range(len(x)):
        ref = TF.affine(x[b], angle=float(angle[b]), translate=translate[b].tolist(), scale=float(scale[b]),
                        shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(5, 1, 48, 48), (3, 2, 20, 31)])
def test_affine_grid_is_torchs_with_its_gradient(size):
    theta = torch.randn(size[0], 2, 3, generator=gen(1), requires_grad=True)
    ours = A.affine_grid(theta, size)
    theirs = torch.nn.functional.affine_grid(theta, list(size), align_corners=False)
    torch.testing.assert_close(ours, theirs)
    weights = torch.randn(theirs.shape, generator=gen(2))
    (g1,), (g2,) = (torch.autograd.grad((grid * weights).sum(), theta) for grid in (ours, theirs))
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-4)  # sums of H*W products, added in another order


# ------------------------------------------------------------------ erasing
def test_erasing_p1_zeroes_one_rectangle_of_allowed_area():
    x = images(64, c=3)
    op = A.RandomErasingBatch(1.0)
    out = op(x, gen(11))
    lo, hi = op.scale
    boxes = set()
    for b in range(len(x)):
        zero = out[b] == 0
        assert torch.equal(zero, zero[:1].expand_as(zero)), "channels erased differently"
        rows, cols = zero[0].nonzero(as_tuple=True)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        h, w = int(bottom - top), int(right - left)
        assert zero[0].sum() == h * w, f"sample {b}: zeros are not a rectangle"
        slack = (h + w) / 2 + 1  # h and w are rounded to whole pixels
        assert lo * 48 * 48 - slack <= h * w <= hi * 48 * 48 + slack
        assert torch.equal(out[b][~zero], x[b][~zero])
        boxes.add((int(top), int(left), h, w))
    assert len(boxes) > 32


def test_erasing_p0_is_identity_and_boxes_follow_get_params():
    x = images(8)
    assert torch.equal(A.RandomErasingBatch(0.0)(x, gen(0)), x)
    op = A.RandomErasingBatch(0.5)
    top, left, height, width = op.get_params(x.shape, gen(2))
    out = op(x, gen(2))
    for b in range(len(x)):
        expected = x[b].clone()
        expected[:, top[b]:top[b] + height[b], left[b]:left[b] + width[b]] = 0
        assert torch.equal(out[b], expected)
    assert (height == 0).any() and (height > 0).any()


# ------------------------------------------------------------------ resized crop
def test_resized_crop_output_size_and_full_box_is_identity():
    x = images(4)
    assert A.RandomResizedCropBatch(32, scale=(0.5, 1.0))(x, gen(0)).shape == (4, 1, 32, 32)
    same = A.RandomResizedCropBatch(None, scale=(1, 1), ratio=(1, 1))(x, gen(0))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)


def test_resized_crop_matches_torchvision_per_sample():
    x = images(8, c=2, h=24, w=30)
    op = A.RandomResizedCropBatch(20, scale=(0.1, 1.0))
    top, left, height, width = op.get_params(x.shape, gen(5))
    area = (height * width).float() / (24 * 30)
    assert area.min() < 0.5 and (area <= 1).all() and (top + height <= 24).all() and (left + width <= 30).all()
    out = op(x, gen(5))
    for b in range(len(x)):
        ref = TF.resized_crop(x[b], int(top[b]), int(left[b]), int(height[b]), int(width[b]), [20, 20], antialias=False)
        torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape, box", [((10, 30), (0, 8, 10, 13)), ((30, 10), (8, 0, 13, 10))])
def test_resized_crop_falls_back_to_torchvision_centre_box(shape, box):
    # An area above 1 never fits, so every try fails: the box is the largest centred one with aspect in 3/4..4/3.
    params = A.RandomResizedCropBatch(8, scale=(2, 3)).get_params((3, 1, *shape), gen(0))
    assert [p.tolist() for p in params] == [[v] * 3 for v in box]


def test_aspect_ratio_conventions_follow_torchvision():
    # RandomResizedCrop's ratio is width / height; RandomErasing's is height / width.
    _, _, height, width = A.RandomResizedCropBatch(8, scale=(0.2, 0.3), ratio=(2, 3)).get_params((64, 1, 60, 60), gen(0))
    assert ((width / height > 1.8) & (width / height < 3.3)).all()
    _, _, height, width = A.RandomErasingBatch(1.0, ratio=(2, 3)).get_params((64, 1, 60, 60), gen(0))
    assert ((height / width > 1.8) & (height / width < 3.3)).all()


# ------------------------------------------------------------------ build_augment
def test_build_augment_rejects_unknown_options_listing_valid_ones():
    with pytest.raises(TypeError, match="flip_vertical") as err:
        A.build_augment(hflip=True, flip_vertical=True)
    for name in ("crop_padding", "resized_crop", "hflip", "rotate", "translate", "scale", "erasing", "output_size"):
        assert name in str(err.value)


def test_build_augment_chooses_ops_and_output_size():
    x = images(4)
    aug = A.build_augment(crop_padding=4, hflip=True, rotate=10.0, erasing=0.25)
    kinds = [type(op) for op in aug.ops]
    assert kinds == [A.RandomCropPad, A.RandomHFlip, A.RandomAffineBatch, A.RandomErasingBatch]
    assert aug.ops[2].degrees == (-10.0, 10.0)
    assert len(A.build_augment().ops) == 0 and torch.equal(A.build_augment()(x), x)
    assert A.build_augment(output_size=44)(x, gen(0)).shape == (4, 1, 44, 44)
    assert A.build_augment(resized_crop=(0.8, 1.0), output_size=40)(x, gen(0)).shape == (4, 1, 40, 40)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_registered_recipe_builds_an_augmentation(model):
    info = MODELS[model]
    x = images(4, *info.input_size)
    for recipe in info.recipes.values():
        assert A.build_augment(**recipe.augment)(x, gen(0)).shape[:2] == (4, info.input_size[0])
