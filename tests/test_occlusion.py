"""Synthetic occluders (fercore.data.occlusion) and the RAN authors' FERPlus lists (fercore.data.ferplus_lists)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from fercore.data import DatasetFormatError, load_dataset
from fercore.data.base import FERDataset
from fercore.data.download import DownloadError
from fercore.data import ferplus_lists
from fercore.data.ferplus_lists import CHALLENGE_LISTS, challenge_list, challenge_subset, read_challenge_list
from fercore.data.occlusion import OCCLUDERS, occlude, occlude_dataset, occlusion_mask
from tests.http_helpers import serve_folder

EYES, MOUTH = slice(36, 48), slice(48, 68)


@pytest.fixture(scope="module")
def faces():
    return load_dataset("synthetic", split="test", n=24, size=48)


@pytest.fixture(scope="module")
def rgb_faces():
    return load_dataset("synthetic", split="test", n=24, size=48, rgb=True)


def covered(mask: torch.Tensor, points, idx) -> torch.Tensor:
    """(N, k) bool: whether the pixel under each of the points ``idx`` is in the mask."""
    p = np.round(np.asarray(points)[:, idx]).astype(int)
    h, w = mask.shape[-2:]
    rows, cols = np.clip(p[..., 1], 0, h - 1), np.clip(p[..., 0], 0, w - 1)
    return mask[np.arange(len(p))[:, None], rows, cols]


def mask_of(faces, kind, where=None, seed=0, **kw):
    return occlusion_mask(faces.meta["landmarks"], kind, faces.images.shape, where=where,
                          generator=torch.Generator().manual_seed(seed), **kw)


# ---------------------------------------------------------------- where the occluders go
def test_sunglasses_cover_every_eye_point_and_no_mouth_point(faces):
    m = mask_of(faces, "sunglasses")
    assert m.shape == (len(faces), 48, 48) and m.dtype == torch.bool
    assert covered(m, faces.meta["landmarks"], EYES).all()
    assert not covered(m, faces.meta["landmarks"], MOUTH).any()


@pytest.mark.parametrize("kind", ["grey", "texture"])
def test_patch_on_the_mouth_covers_the_mouth_not_the_eyes_and_vice_versa(faces, kind):
    pts = faces.meta["landmarks"]
    mouth, eyes = mask_of(faces, kind, "mouth"), mask_of(faces, kind, "eyes")
    assert covered(mouth, pts, MOUTH).all() and not covered(mouth, pts, EYES).any()
    assert covered(eyes, pts, EYES).all() and not covered(eyes, pts, MOUTH).any()


def test_surgical_mask_covers_nose_tip_mouth_and_chin_not_the_eyes(faces):
    pts = faces.meta["landmarks"]
    m = mask_of(faces, "mask")
    assert covered(m, pts, MOUTH).all() and covered(m, pts, [30, 8]).all()
    assert not covered(m, pts, EYES).any()
    # wider than the mouth: the mouth corners are not on its edge
    corners = np.asarray(pts)[:, [48, 54]]
    outside = np.round(corners + np.array([[-2, 0], [2, 0]])).astype(int)
    assert m[np.arange(len(pts))[:, None], outside[..., 1], outside[..., 0]].all()


def test_masks_move_with_the_landmarks(faces):
    pts = np.asarray(faces.meta["landmarks"], np.float32)
    for kind in ("sunglasses", "mask", "grey"):
        where = "eyes" if kind == "grey" else None
        a = occlusion_mask(pts, kind, (48, 48), where=where)
        b = occlusion_mask(pts + np.array([3, 2], np.float32), kind, (48, 48), where=where)
        assert torch.equal(a[:, :-2, :-3], b[:, 2:, 3:]) and a.any()


def test_random_patches_land_on_the_face_and_are_deterministic(faces):
    pts = np.asarray(faces.meta["landmarks"])
    a, b, c = mask_of(faces, "grey", seed=1), mask_of(faces, "grey", seed=1), mask_of(faces, "grey", seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    ys, xs = (a.float() * torch.arange(48.)[:, None]).sum((1, 2)), (a.float() * torch.arange(48.)).sum((1, 2))
    centre = torch.stack([xs, ys], 1) / a.sum((1, 2))[:, None]
    lo, hi = torch.from_numpy(pts.min(1)), torch.from_numpy(pts.max(1))
    assert ((centre >= lo - 1) & (centre <= hi + 1)).all()  # (clipping at the border moves a centre little)
    big = mask_of(faces, "grey", seed=1, size=0.6)
    assert (big.sum((1, 2)) > a.sum((1, 2))).all()


# ---------------------------------------------------------------- occlude
@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("kind", list(OCCLUDERS))
def test_occlude_changes_only_masked_pixels_and_never_its_input(faces, rgb_faces, rgb, dtype, kind):
    ds = rgb_faces if rgb else faces
    images = ds.images if dtype == torch.uint8 else ds.images.float() / 255
    before = images.clone()
    where = "eyes" if kind in ("grey", "texture") else None
    out, mask = occlude(images, ds.meta["landmarks"], kind, where=where,
                        generator=torch.Generator().manual_seed(0), return_mask=True)
    assert torch.equal(images, before)  # input untouched
    assert out.dtype == dtype and out.shape == images.shape and out.data_ptr() != images.data_ptr()
    m = mask[:, None].expand_as(out)
    assert torch.equal(out[~m], images[~m])
    assert (out[m] != images[m]).float().mean() > 0.5  # the occluder shows
    full = 255 if dtype == torch.uint8 else 1.0
    fill = OCCLUDERS[kind].fill
    if fill is not None:
        assert torch.allclose(out[m].double(), torch.tensor(round(fill * 255) if dtype == torch.uint8 else fill,
                                                            dtype=torch.float64))
    else:
        assert out[m].double().std() > 0.2 * full  # noise, not a flat fill


def test_occlude_is_deterministic_for_a_seed(faces):
    run = lambda seed: occlude(faces.images, faces.meta["landmarks"], "texture",  # noqa: E731
                               generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))


def test_points_as_tensor_or_numpy_give_the_same_result(faces):
    pts = faces.meta["landmarks"]
    a = occlude(faces.images, pts, "sunglasses")
    b = occlude(faces.images, torch.from_numpy(np.asarray(pts, np.float64)), "sunglasses")
    assert torch.equal(a, b)


def test_bad_arguments_say_what_is_valid(faces):
    pts = faces.meta["landmarks"]
    with pytest.raises(ValueError, match="grey, texture, sunglasses, mask"):
        occlude(faces.images, pts, "scarf")
    with pytest.raises(ValueError, match=r"None, 'eyes', 'mouth'"):
        occlude(faces.images, pts, "grey", where="nose")
    with pytest.raises(ValueError, match=r"valid: None, 'eyes'"):
        occlude(faces.images, pts, "sunglasses", where="mouth")
    with pytest.raises(ValueError, match="size"):
        occlude(faces.images, pts, "mask", size=0.5)
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        occlude(faces.images, np.asarray(pts)[:, :60], "grey")
    with pytest.raises(ValueError, match="24 images but 3"):
        occlude(faces.images, np.asarray(pts)[:3], "grey")
    bad = np.array(pts, np.float32)
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite.*face 5"):
        occlude(faces.images, bad, "grey")
    with pytest.raises(ValueError, match="grey, texture"):
        occlude_dataset(faces, "hat")


# ---------------------------------------------------------------- occlude_dataset
def test_occlude_dataset_keeps_targets_meta_and_says_what_it_did(faces):
    before = faces.images.clone()
    occ = occlude_dataset(faces, "grey", where="mouth", seed=0)
    assert torch.equal(faces.images, before)
    assert occ.targets is faces.targets and occ.classes == faces.classes and occ.meta.keys() == faces.meta.keys()
    assert (occ.name, occ.split, len(occ)) == (faces.name, faces.split, len(faces))
    assert occ.protocol.startswith(faces.protocol) and "mid-grey rectangle over the mouth" in occ.protocol
    assert torch.equal(occ.images, occlude(faces.images, faces.meta["landmarks"], "grey", where="mouth"))
    again = occlude_dataset(faces, "texture", seed=5)
    assert torch.equal(again.images, occlude_dataset(faces, "texture", seed=5).images)
    assert "seed 5" in again.protocol


def test_occlude_dataset_uses_dlib_points_and_the_mean_shape_for_bad_fits(faces, monkeypatch):
    from fercore.faces import regions

    pts = np.array(faces.meta["landmarks"], np.float32)
    pts[0] = np.nan  # dlib found nothing
    no_marks = FERDataset(faces.images, faces.targets, faces.classes, {"character": faces.meta["character"]},
                          name="fake", split="test")
    monkeypatch.setattr(regions, "dataset_points", lambda ds, progress=True: (pts, "dlib"))
    occ = occlude_dataset(no_marks, "sunglasses")
    assert "landmarks from dlib, 1 faces without a plausible fit at the mean shape" in occ.protocol
    mean = regions.plausible(pts, (48, 48))
    expected = occlusion_mask(pts[mean].mean(0)[None], "sunglasses", (48, 48))[0]
    assert torch.equal(occ.images[0] != faces.images[0], expected[None] & (occ.images[0] != faces.images[0]))
    assert (occ.images[0][:, expected] == round(0.08 * 255)).all()


# ---------------------------------------------------------------- the authors' lists
# Lines as the real files have them: the occlusion list with CRLF, the pose lists with LF.
OCCLUSION_TXT = b"1_fer0034656.png 8 0\r\n2_fer0033359.png 8 2\r\n0_fer0033508.png 8 3\r\n7_fer0032221.png 8 1\r\n"
POSE_TXT = b"0/fer0032226.jpg\n1/fer0032227.jpg\n4/fer0032228.jpg\n"


def test_real_lists_are_pinned_by_url_and_sha256():
    assert set(CHALLENGE_LISTS) == {"occlusion", "pose30", "pose45"}
    for url, sha, filename in CHALLENGE_LISTS.values():
        assert url == ("https://raw.githubusercontent.com/kaiwang960112/Challenge-condition-FER-dataset/master/"
                       f"FERplus_dir/{filename}")
        assert len(sha) == 64 and int(sha, 16) >= 0


def test_read_occlusion_list(tmp_path):
    path = tmp_path / "jianfei_occlusion_list.txt"
    path.write_bytes(OCCLUSION_TXT)
    got = read_challenge_list(path)
    assert got["image_name"].tolist() == ["fer0034656.png", "fer0033359.png", "fer0033508.png", "fer0032221.png"]
    assert got["ferplus_label"].tolist() == [1, 2, 0, 7]
    assert got["label"].tolist() == [3, 5, 6, 7]  # happy, surprise, neutral, contempt in canonical order
    assert got["extra"].tolist() == [[8, 0], [8, 2], [8, 3], [8, 1]]


def test_read_pose_list(tmp_path):
    path = tmp_path / "pose_30_ferplus_list.txt"
    path.write_bytes(POSE_TXT + b"\n")  # a trailing blank line is fine
    got = read_challenge_list(path)
    assert got["file"].tolist() == ["fer0032226.jpg", "fer0032227.jpg", "fer0032228.jpg"]
    assert got["image_name"].tolist() == ["fer0032226.png", "fer0032227.png", "fer0032228.png"]
    assert got["label"].tolist() == [6, 3, 0] and got["extra"].shape == (3, 0)


@pytest.mark.parametrize("bad, line", [(b"0/fer0032226.jpg\nfer0032227.jpg\n", 2),
                                       (b"9/fer0032226.jpg\n", 1),
                                       (b"1_fer0034656.png 8 0\r\n2_fer0033359.png 8\r\n", 2),
                                       (b"1_fer0034656.png 8 x\r\n", 1)])
def test_a_malformed_line_is_named(tmp_path, bad, line):
    path = tmp_path / "list.txt"
    path.write_bytes(bad)
    with pytest.raises(DatasetFormatError) as err:
        read_challenge_list(path)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and f"{path}, line {line}:" in msg and "\n" not in msg


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "occ.txt").write_bytes(OCCLUSION_TXT)
    with serve_folder(site) as url:
        yield url


@pytest.fixture
def local_list(server, monkeypatch):
    """CHALLENGE_LISTS["occlusion"] pointing at the local server's fixture."""
    entry = (f"{server}/occ.txt", hashlib.sha256(OCCLUSION_TXT).hexdigest(), "jianfei_occlusion_list.txt")
    monkeypatch.setitem(ferplus_lists.CHALLENGE_LISTS, "occlusion", entry)
    return entry


def test_challenge_list_downloads_only_when_asked(local_list, tmp_path):
    url, _, filename = local_list
    root = tmp_path / "data"
    (root / "ferplus").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        challenge_list("occlusion", root)
    msg = str(err.value)
    assert url in msg and str(root / filename) in msg and str(root / "ferplus" / filename) in msg
    got = challenge_list("occlusion", root, download=True)
    assert (root / "ferplus" / filename).read_bytes() == OCCLUSION_TXT
    assert got["image_name"][0] == "fer0034656.png" and len(got["label"]) == 4
    assert sorted(p.name for p in (root / "ferplus").iterdir()) == [filename]  # no temp file left
    assert challenge_list("occlusion", root)["file"].tolist() == got["file"].tolist()  # now found offline


def test_challenge_list_wrong_sha256_leaves_nothing(local_list, monkeypatch, tmp_path):
    url, _, filename = local_list
    monkeypatch.setitem(ferplus_lists.CHALLENGE_LISTS, "occlusion", (url, "0" * 64, filename))
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        challenge_list("occlusion", root, download=True)
    assert list(root.iterdir()) == []


def test_challenge_list_reads_root_and_rejects_unknown_names(tmp_path):
    (tmp_path / "pose_45_ferplus_list.txt").write_bytes(POSE_TXT)
    assert challenge_list("pose45", tmp_path)["label"].tolist() == [6, 3, 0]
    with pytest.raises(ValueError, match="occlusion, pose30, pose45"):
        challenge_list("pose60", tmp_path)


def ferplus_like(names):
    n = len(names)
    return FERDataset(torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone(),
                      torch.arange(n) % 8, [str(k) for k in range(8)], {"image_name": np.array(names)},
                      name="ferplus", split="test", protocol="FERPlus test.")


def test_challenge_subset_picks_listed_faces_in_list_order(tmp_path):
    ds = ferplus_like(["fer0032225.png", "fer0032226.png", "fer0032227.png", "fer0032228.png"])
    path = tmp_path / "pose.txt"
    path.write_bytes(POSE_TXT)
    sub = challenge_subset(ds, read_challenge_list(path), what="Pose-FERPlus (> 30)")
    assert sub.meta["image_name"].tolist() == ["fer0032226.png", "fer0032227.png", "fer0032228.png"]
    assert sub.images[:, 0, 0, 0].tolist() == [1, 2, 3] and sub.targets.tolist() == [1, 2, 3]
    assert sub.protocol == "FERPlus test. Restricted to the 3 faces of Pose-FERPlus (> 30)."


def test_challenge_subset_says_how_many_names_are_missing():
    ds = ferplus_like(["fer0032226.png", "fer0032300.png"])
    with pytest.raises(ValueError, match="2 of 3 names in a challenge list are not in ferplus test"):
        challenge_subset(ds, ["fer0032226.jpg", "fer0032227.jpg", "fer0032228.jpg"])
    sub = challenge_subset(ds, ["fer0032226.jpg", "fer0032227.jpg", "fer0032228.jpg"], strict=False)
    assert len(sub) == 1 and "(2 listed faces not in this split)" in sub.protocol
