"""Synthetic faces: deterministic, landmarks that follow what is drawn, expressions where they belong."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fercore.data import FERDataset, load_dataset
from fercore.data.synthetic import CHARACTERS, FaceParams, render_face, render_faces
from fercore.labels import EMOTIONS_7

SIZE = 128
CENTRE = (SIZE * 0.5, SIZE * 0.54)  # where the generator puts the face centre when shift is 0
BROWS, EYES, NOSE, MOUTH = range(17, 27), range(36, 48), range(27, 36), range(48, 68)


def face(**kw):
    """A clean (noise-free, evenly lit) 128 px grey face and its landmarks."""
    image, landmarks = render_face(FaceParams(**kw), size=SIZE)
    return image[..., 0].astype(float), landmarks


def box_mask(landmark_sets, indices, pad=4):
    """Boolean image mask of the box around ``indices`` in all ``landmark_sets``, padded."""
    pts = np.concatenate([lm[list(indices)] for lm in landmark_sets])
    (x0, y0), (x1, y1) = np.floor(pts.min(0) - pad).astype(int), np.ceil(pts.max(0) + pad).astype(int)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
    return mask


def test_same_seed_same_faces_other_seed_other_faces():
    a, b, c = render_faces(21, seed=3), render_faces(21, seed=3), render_faces(21, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])
    assert not np.allclose(a["landmarks"], c["landmarks"])


@pytest.mark.parametrize("size, rgb, channels", [(48, False, 1), (128, True, 3)])
def test_shapes_and_dtypes(size, rgb, channels):
    d = render_faces(14, size=size, rgb=rgb, seed=1)
    assert d["images"].shape == (14, channels, size, size) and d["images"].dtype == np.uint8
    assert d["targets"].shape == (14,) and d["targets"].dtype == np.int64
    assert d["landmarks"].shape == (14, 68, 2) and d["landmarks"].dtype == np.float32
    assert d["character"].dtype == np.int64 and set(d["character"]) <= set(range(len(CHARACTERS)))
    assert d["intensity"].dtype == np.float32
    assert (d["intensity"][d["targets"] == EMOTIONS_7.index("neutral")] == 0).all()
    assert ((d["intensity"] > 0) == (d["targets"] != EMOTIONS_7.index("neutral"))).all()
    assert (d["landmarks"] > 0).all() and (d["landmarks"] < size).all()
    if rgb:  # a colour image, not grey copied three times
        assert (d["images"][:, 0] != d["images"][:, 2]).mean() > 0.3


def test_mouth_opening_parts_inner_lips_and_shows_the_dark_mouth():
    gaps, dark = [], []
    for opening in (0.0, 0.5, 1.0):
        image, lm = face(character=0, mouth_open=opening)
        gaps.append(lm[[65, 66, 67], 1].mean() - lm[[61, 62, 63], 1].mean())
        dark.append((image[box_mask([lm], MOUTH)] < 50).sum())  # the mouth interior is near black
    assert abs(gaps[0]) < 0.5 and gaps[0] < gaps[1] - 3 < gaps[2] - 6
    assert dark[0] < 5 and dark[0] < dark[1] < dark[2] and dark[2] > 100


def test_brow_raise_moves_brow_landmarks_and_drawn_brows_up():
    still, lm0 = face(character=1)
    raised, lm1 = face(character=1, brow_raise=0.6)
    lift = (lm0[list(BROWS), 1] - lm1[list(BROWS), 1])
    assert (lift > 2).all()
    np.testing.assert_allclose(lm1[list(MOUTH) + list(range(17))], lm0[list(MOUTH) + list(range(17))])
    # The centre of the dark brow pixels, between the hair and the lash lines, rises as much.
    eye_top = lm0[[37, 38, 43, 44], 1].min()
    window = box_mask([lm0], BROWS) & (np.arange(SIZE)[:, None] > lm0[list(BROWS), 1].min() - 7)
    window &= np.arange(SIZE)[:, None] < eye_top - 3
    rows = np.nonzero(window)[0]
    centre_y = [np.average(rows, weights=(255 - img[window]) * (img[window] < 80)) for img in (still, raised)]
    assert centre_y[0] - centre_y[1] == pytest.approx(lift.mean(), abs=1.0)


def test_roll_rotates_landmarks_and_pixels_like_cv2():
    still, lm0 = face(character=1, mouth_open=0.5)
    rolled, lm1 = face(character=1, mouth_open=0.5, roll=20)
    rotation = cv2.getRotationMatrix2D(CENTRE, 20, 1.0)  # OpenCV: positive angle is counter-clockwise
    np.testing.assert_allclose(lm1, np.c_[lm0, np.ones(68)] @ rotation.T, atol=1e-3)
    assert lm1[45, 1] < lm1[36, 1] - 10  # the image-right eye corner now sits higher
    warped = cv2.warpAffine(still.astype(np.float32), rotation, (SIZE, SIZE), borderValue=200)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inside = (xx - CENTRE[0]) ** 2 + (yy - CENTRE[1]) ** 2 < 40**2
    assert np.abs(warped - rolled)[inside].mean() < 5 < 15 < np.abs(still - rolled)[inside].mean()


def test_intensity_scales_the_landmark_change():
    _, neutral = face(character=2)
    moves = [np.abs(render_face(FaceParams.expression("happy", t, character=2), size=SIZE)[1] - neutral).sum()
             for t in (0.2, 0.5, 1.0)]
    assert 0 < moves[0] < moves[1] < moves[2]
    assert moves[0] < 0.35 * moves[2]  # a weak expression stays close to neutral


@pytest.mark.parametrize("character", range(len(CHARACTERS)))
def test_expressions_change_brows_eyes_and_mouth_most(character):
    neutral, lm0 = face(character=character)
    drawn = [render_face(FaceParams.expression(e, character=character), size=SIZE) for e in EMOTIONS_7[:6]]
    for name, (image, lm) in zip(EMOTIONS_7, drawn):
        energy = (image[..., 0].astype(float) - neutral) ** 2
        regions = box_mask([lm0, lm], list(BROWS) + list(EYES)) | box_mask([lm0, lm], list(NOSE[4:]) + list(MOUTH))
        assert regions.mean() < 0.25, name
        assert energy[regions].sum() > 0.8 * energy.sum(), f"{name}: change outside brows, eyes and mouth"
        assert np.sqrt(energy.sum()) > 1000, f"{name} hardly differs from neutral"
    images = np.stack([image[..., 0] for image, _ in drawn]).astype(float)
    pairwise = np.abs(images[:, None] - images[None]).mean((2, 3))
    assert (pairwise[~np.eye(6, dtype=bool)] > 0.5).all()  # the six expressions differ from one another


def test_occluder_covers_pixels_but_not_landmarks():
    bare, covered = render_faces(20, seed=5, occlusion=0.0), render_faces(20, seed=5, occlusion=1.0)
    np.testing.assert_array_equal(bare["landmarks"], covered["landmarks"])
    changed = (bare["images"] != covered["images"]).mean((1, 2, 3))
    assert (changed > 0.01).all()


def test_filters_and_bad_names():
    d = render_faces(30, characters=["ada", 2], expressions=["happy", "sad"])
    assert set(d["character"]) == {0, 2} and set(d["targets"]) == {3, 4}
    with pytest.raises(ValueError, match="valid: angry, disgust"):
        render_faces(5, expressions=["joy"])
    with pytest.raises(ValueError, match="ada"):
        render_faces(5, characters=[len(CHARACTERS)])
    with pytest.raises(ValueError, match="valid: angry"):
        FaceParams.expression("joy")


def test_weak_expressions_make_it_hard_but_learnable():
    # A nearest-centroid classifier on roll-aligned landmarks: far above chance, far from perfect.
    def aligned(lm):
        lm = lm - lm.mean(1, keepdims=True)
        eyes = lm[:, 42:48].mean(1) - lm[:, 36:42].mean(1)
        a = np.arctan2(eyes[:, 1], eyes[:, 0])
        rot = np.stack([np.cos(a), np.sin(a), -np.sin(a), np.cos(a)], 1).reshape(-1, 2, 2)
        lm = np.einsum("nij,npj->npi", rot, lm)
        return (lm / np.linalg.norm(lm, axis=(1, 2), keepdims=True)).reshape(len(lm), -1)

    train, test = render_faces(700, seed=1), render_faces(700, seed=2)
    x, x_test = aligned(train["landmarks"]), aligned(test["landmarks"])
    centroids = np.stack([x[train["targets"] == k].mean(0) for k in range(7)])
    accuracy = (((x_test[:, None] - centroids) ** 2).sum(-1).argmin(1) == test["targets"]).mean()
    assert 0.4 < accuracy < 0.9


def test_load_dataset_splits_differ_and_are_balanced():
    val = load_dataset("synthetic", split="val")
    assert isinstance(val, FERDataset) and len(val) == 700 and val.images.shape[1:] == (1, 48, 48)
    assert val.classes == list(EMOTIONS_7) and val.name == "synthetic" and val.protocol
    counts = np.array(list(val.class_counts().values()))
    assert counts.min() >= 0.9 * len(val) / 7 and counts.max() <= 1.1 * len(val) / 7
    assert val.meta["landmarks"].shape == (700, 68, 2)
    assert len(val.meta["character"]) == len(val.meta["intensity"]) == 700
    assert set(val.meta["character"]) == set(range(len(CHARACTERS)))
    image, target = val[0]
    assert image.dtype == torch.uint8 and image.shape == (1, 48, 48) and 0 <= int(target) < 7

    train = load_dataset("synthetic", "/ignored/root", split="train", n=300)
    test = load_dataset("synthetic", split="test", n=300)
    seen = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in seen for img in test.images)
    assert not torch.equal(load_dataset("synthetic", split="test", n=300, seed=1).images, test.images)
    torch.testing.assert_close(load_dataset("synthetic", split="test", n=300).images, test.images)
    rgb = load_dataset("synthetic", split="train", n=7, size=128, rgb=True, occlusion=0.5)
    assert rgb.images.shape == (7, 3, 128, 128)


def test_ferg_protocols_random_and_held_out_character():
    names = [c.name for c in CHARACTERS]
    rand = {s: load_dataset("synthetic", None, s, n=120) for s in ("train", "val", "test")}
    assert all(set(d.meta["character"].tolist()) == set(range(6)) for d in rand.values())  # the leaky split
    held = {s: load_dataset("synthetic", None, s, n=120, split_mode="character", fold=4) for s in ("train", "val", "test")}
    chars = {s: set(d.meta["character"].tolist()) for s, d in held.items()}
    assert chars == {"train": {0, 1, 2, 3}, "val": {5}, "test": {4}}
    assert f"tests on {names[4]}, selects on {names[5]}" in held["test"].protocol
    with pytest.raises(ValueError, match="unknown split_mode 'subject' for synthetic; valid: random, character"):
        load_dataset("synthetic", None, "val", split_mode="subject")
    with pytest.raises(ValueError, match="fold must be in 0..5"):
        load_dataset("synthetic", None, "val", split_mode="character", fold=6)
