"""Prior Attention's blocks: boxes, margin, clipping, flip consistency, plausibility, fallback, cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fercore.data import load_dataset
from fercore.data.base import FERDataset
from fercore.data.synthetic import FaceParams, render_face
from fercore.env import landmark_model_path
from fercore.faces import regions
from fercore.faces.regions import (EYES, MARGIN, MIRROR, MOUTH, block_box, cut_blocks, dataset_blocks, face_size,
                                   mirror_points, model_regions, plausible, regions_report)

CFG = {"input_size": (2, 32, 32), "regions": "prior_attention"}


def face(size=256, **kw):
    image, points = render_face(FaceParams.expression("happy", 1.0, **kw), size=size)
    return image[..., 0], points


def dataset(n=12, size=48, seed=0) -> FERDataset:
    return load_dataset("synthetic", None, "val", n=n, size=size, seed=seed)


@pytest.mark.parametrize("which, idx", [("eyes", EYES), ("mouth", MOUTH)])
def test_box_holds_the_points_extremes_plus_the_margin(which, idx):
    image, p = face()
    left, top, right, bottom = block_box(p, which, image.shape)
    m = MARGIN * face_size(p)
    lo, hi = p[idx].min(0) - m, p[idx].max(0) + m
    # The block holds exactly the pixels whose centres lie in [lo, hi] (pixel i is centred on i).
    assert left - 1 < lo[0] <= left and top - 1 < lo[1] <= top
    assert right - 1 <= hi[0] < right and bottom - 1 <= hi[1] < bottom
    assert m > 10  # a real margin at 256 px: about 0.2 of a ~150-px face


def test_the_eye_box_uses_the_smallest_y_of_the_brows_as_its_top():
    # The authors' code took the top edge from the right-most point; here it is the highest point.
    image, p = face(roll=12)
    top = block_box(p, "eyes", image.shape, margin=0)[1]
    assert top == int(np.ceil(p[EYES, 1].min()))
    assert top < int(np.ceil(p[EYES][p[EYES, 0].argmax(), 1]))


def test_boxes_are_clipped_to_the_image():
    image, p = face(shift=(-0.4, -0.35))  # the face pushed out at the top left
    left, top, right, bottom = block_box(p, "eyes", image.shape, margin=0.5)
    assert (left, top) == (0, 0) and 0 < right <= 256 and 0 < bottom <= 256
    assert p[EYES].min() - 0.5 * face_size(p) < 0  # the unclipped box would leave the image
    image, p = face(shift=(0.4, 0.4))
    assert block_box(p, "mouth", image.shape, margin=0.8)[2:] == (256, 256)
    assert cut_blocks(image, p, margin=0.8).shape == (2, 32, 32)


def test_the_margin_scales_with_the_face_so_48_and_256_px_give_the_same_relative_box():
    for which in ("eyes", "mouth"):
        (small, p48), (large, p256) = face(48), face(256)
        box48 = np.array(block_box(p48, which, small.shape)) / 48
        box256 = np.array(block_box(p256, which, large.shape)) / 256
        assert np.abs(box48 - box256).max() < 1.5 / 48, which  # within the rounding to 48-px pixels
    assert face_size(p256) / face_size(p48) == pytest.approx(256 / 48, rel=0.01)


@pytest.mark.parametrize("size", [48, 256])
def test_blocks_of_the_flipped_face_are_the_flipped_blocks(size):
    image, p = face(size, roll=8)
    flipped = image[:, ::-1]
    p_flipped = p.copy()
    p_flipped[:, 0] = size - 1 - p[:, 0]  # mirrored points; their order does not matter to the boxes
    a, b = cut_blocks(image, p), cut_blocks(flipped, p_flipped)
    assert np.abs(a[:, :, ::-1].astype(int) - b.astype(int)).max() <= 1
    assert np.abs(a.astype(int) - b.astype(int)).max() > 20  # the test sees a difference when it matters


def test_flipped_dataset_blocks_equal_the_flipped_blocks_so_hflip_augmentation_is_consistent():
    ds = dataset()
    flipped = FERDataset(ds.images.flip(-1), ds.targets, ds.classes,
                         {"landmarks": mirror_points(ds.meta["landmarks"], 48)}, name="synthetic", split="flip")
    a, b = model_regions(ds, CFG, progress=False).images, model_regions(flipped, CFG, progress=False).images
    assert (a.flip(-1).int() - b.int()).abs().max() <= 1


def test_mirrored_points_are_a_plausible_fit_of_the_flipped_face():
    assert sorted(MIRROR) == list(range(68)) and (MIRROR[MIRROR] == np.arange(68)).all()
    image, p = face(48, roll=10)
    q = mirror_points(p, 48)
    assert plausible(q, (48, 48)).all()
    assert np.allclose(q[36], [47 - p[45, 0], p[45, 1]])  # the right eye's outer corner was the left eye's
    assert np.allclose(q[30], [47 - p[30, 0], p[30, 1]])  # the nose tip stays the nose tip
    assert np.allclose(mirror_points(q, 48), p)


def test_true_landmarks_are_plausible_and_broken_fits_are_not():
    ds = dataset(50)
    p = ds.meta["landmarks"]
    assert plausible(p, (48, 48)).all()
    broken = {
        "NaN (no face)": np.full_like(p[0], np.nan),
        "upside down": p[0] * [1, -1] + [0, 47],
        "collapsed to a tenth": (p[0] - 24) * 0.1 + 24,
        "outside the image": p[0] + [30, 0],
        "mouth above the eyes": np.concatenate([p[0, :48], p[0, 48:] - [0, 30]]),
        "eyes swapped": np.concatenate([p[0, :36], p[0, 42:48], p[0, 36:42], p[0, 48:]]),
    }
    for name, q in broken.items():
        assert not plausible(q, (48, 48))[0], name


def test_an_implausible_fit_falls_back_to_the_mean_shape_and_is_counted():
    ds = dataset()
    ds.meta["landmarks"] = ds.meta["landmarks"].copy()
    ds.meta["landmarks"][3] = ds.meta["landmarks"][3] * [1, -1] + [0, 47]  # an upside-down fit
    out = model_regions(ds, CFG, progress=False)
    assert out.meta["landmark_fallback"].tolist() == [i == 3 for i in range(12)]
    assert regions_report(val=out) == {"val": {"n": 12, "fallbacks": 1}}
    assert "1 of 12 faces had no plausible fit" in out.protocol
    mean_shape = np.delete(ds.meta["landmarks"], 3, 0).mean(0)
    assert torch.equal(out.images[3], torch.from_numpy(cut_blocks(ds.images[3, 0].numpy(), mean_shape)))
    assert torch.equal(out.images[0], torch.from_numpy(cut_blocks(ds.images[0, 0].numpy(), ds.meta["landmarks"][0])))
    assert len(out) == len(ds) and torch.equal(out.targets, ds.targets)  # nothing dropped


def test_whole_face_models_get_the_dataset_unchanged():
    ds = dataset()
    assert model_regions(ds, {"input_size": (1, 48, 48)}) is ds
    with pytest.raises(ValueError, match="unknown regions 'ran'"):
        model_regions(ds, {**CFG, "regions": "ran"})


def test_blocks_are_cached_beside_the_landmarks_and_read_back(tmp_path, monkeypatch):
    ds = dataset()
    first = dataset_blocks(ds, cache_dir=tmp_path)
    assert [f.name.startswith("blocks-synthetic-val-") for f in tmp_path.iterdir()] == [True]
    monkeypatch.setattr(regions, "cut_blocks", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    again = dataset_blocks(ds, cache_dir=tmp_path)
    assert np.array_equal(first["blocks"], again["blocks"]) and str(again["source"]) == "meta['landmarks']"
    assert first["blocks"].shape == (12, 2, 32, 32) and first["blocks"].dtype == np.uint8


def test_wrong_landmark_shapes_are_one_clear_error():
    image, p = face()
    with pytest.raises(ValueError, match=r"expected 68 iBUG landmarks as \(68, 2\)"):
        cut_blocks(image, p[:5])
    ds = dataset()
    ds.meta["landmarks"] = ds.meta["landmarks"][:, :5]
    with pytest.raises(ValueError, match="got shape"):
        model_regions(ds, CFG)


def test_a_dataset_without_landmarks_and_no_dlib_is_one_clear_error(monkeypatch):
    ds = dataset()
    del ds.meta["landmarks"]

    def no_dlib(*a, **k):
        raise FileNotFoundError("dlib's shape_predictor_68_face_landmarks.dat was not found")

    monkeypatch.setattr(regions, "dataset_landmarks", no_dlib)
    with pytest.raises(ValueError, match=r"has no meta\['landmarks'\] and dlib cannot fit them"):
        model_regions(ds, CFG)


@pytest.mark.skipif(landmark_model_path() is None, reason="dlib's 68-point model is not installed")
def test_without_true_landmarks_dlib_fits_them_through_the_landmark_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path))
    ds = dataset(6, size=96)
    del ds.meta["landmarks"]
    out = model_regions(ds, CFG, progress=False)
    names = sorted(f.name.split("-")[0] for f in tmp_path.iterdir())
    assert names == ["blocks", "landmarks"]  # both caches, side by side
    assert out.images.shape == (6, 2, 32, 32) and "from dlib" in out.protocol


# ----------------------------------------------------------------- the authors' bugs, on request
def test_leftover_image_cuts_every_face_from_the_last_image_so_only_the_box_moves():
    ds = dataset()
    ds.meta["landmarks"] = np.repeat(ds.meta["landmarks"][:1], 12, 0)  # one shape for every face
    right = dataset_blocks(ds, cache_dir=False)["blocks"]
    assert len({b.tobytes() for b in right}) == 12  # each face's own pixels
    ds.meta["regions_bug"] = np.full(12, "leftover_image")
    buggy = model_regions(ds, CFG, cache_dir=False).images
    assert all(torch.equal(b, buggy[-1]) for b in buggy)  # every block of the batch is the last image's
    assert torch.equal(buggy[-1], torch.from_numpy(right[-1]))
    # With each face's own landmarks the box moves over that one leftover face.
    ds = dataset()
    out = dataset_blocks(ds, cache_dir=False, bugs="leftover_image")["blocks"]
    last = ds.images[-1, 0].numpy()
    for i in (0, 5):
        assert np.array_equal(out[i], cut_blocks(last, ds.meta["landmarks"][i]))
        assert not np.array_equal(out[i], cut_blocks(ds.images[i, 0].numpy(), ds.meta["landmarks"][i]))


def test_top_from_rightmost_puts_the_top_edge_at_the_right_most_points_y():
    image, p = face(roll=12)
    for which, idx in (("eyes", EYES), ("mouth", MOUTH)):
        pts = p[idx]
        m = MARGIN * face_size(p)
        top = block_box(p, which, image.shape, bugs="top_from_rightmost")[1]
        assert top == int(np.ceil(pts[pts[:, 0].argmax(), 1] - m))
        assert top >= block_box(p, which, image.shape)[1]  # the box loses rows at the top
    assert block_box(p, "eyes", image.shape, bugs="top_from_rightmost")[1] > block_box(p, "eyes", image.shape)[1]
    assert not np.array_equal(cut_blocks(image, p, bugs=["top_from_rightmost"]), cut_blocks(image, p))


def test_the_loaders_regions_bug_argument_reaches_the_blocks_through_a_subset():
    marked = load_dataset("synthetic", None, "val", n=12, regions_bug="leftover_image,top_from_rightmost")
    out = model_regions(marked.subset(range(6)), CFG, cache_dir=False)
    expected = dataset_blocks(dataset().subset(range(6)), cache_dir=False, bugs=("leftover_image", "top_from_rightmost"))
    assert np.array_equal(out.images.numpy(), expected["blocks"])
    assert "bug reproduced (leftover_image)" in out.protocol and "(top_from_rightmost)" in out.protocol
    assert "regions_bug" not in dataset().meta and "bug" not in model_regions(dataset(), CFG).protocol
    with pytest.raises(ValueError, match="regions_bug: unknown 'leftover'; valid: leftover_image, top_from_rightmost"):
        load_dataset("synthetic", None, "val", n=4, regions_bug="leftover")
    mixed = dataset()
    mixed.meta["regions_bug"] = np.array(["leftover_image"] * 6 + ["top_from_rightmost"] * 6)
    with pytest.raises(ValueError, match="different regions_bug marks"):
        model_regions(mixed, CFG)
