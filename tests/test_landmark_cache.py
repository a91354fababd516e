"""Landmarks for whole datasets, cached per dataset (fercore.faces.dataset_landmarks) and its CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import fercore.faces.landmarks as module
from fercore.cli import main
from fercore.data import FERDataset, load_dataset
from fercore.env import landmark_model_path
from fercore.faces import dataset_landmarks, landmarks_cache_path

needs_model = pytest.mark.skipif(landmark_model_path() is None, reason="face-recognition-models not installed")


def _error(points, truth) -> float:
    """Mean point-to-point distance (px) between two ``(N, 68, 2)`` sets."""
    return float(np.linalg.norm(points - truth, axis=2).mean())


def _roll(points) -> np.ndarray:
    """Angle (degrees) of the line from the right eye's centre to the left eye's, per face."""
    d = points[:, 42:48].mean(1) - points[:, 36:42].mean(1)
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


@pytest.fixture(scope="module")
def faces() -> FERDataset:
    """20 synthetic 48x48 grey faces (FER2013's size) with their true landmarks in meta."""
    return load_dataset("synthetic", None, "train", n=20)


@pytest.fixture(scope="module")
def whole(faces, tmp_path_factory):
    return dataset_landmarks(faces, cache_dir=tmp_path_factory.mktemp("lm"), progress=False)


def _forbid_dlib(monkeypatch):
    """Make every way into dlib fail, so a call that still succeeds provably read its cache."""
    def boom(*args, **kwargs):
        raise AssertionError("dlib ran although the landmarks were cached")
    for name in ("predict_landmarks", "detect_faces", "_predictor"):
        monkeypatch.setattr(module, name, boom)


# --------------------------------------------------------------------------- accuracy
@needs_model
def test_shape_dtype_and_points_inside_the_image(faces, whole):
    assert whole.shape == (20, 68, 2) and whole.dtype == np.float32
    assert np.isfinite(whole).all()  # the whole image is always a box: no NaN rows
    # Not clipped: dlib may put the jaw a pixel or two past the edge of a tight 48x48 crop.
    assert whole.min() > -3 and whole.max() < 48 + 3
    inner = whole[:, 17:]  # brows, nose, eyes, mouth: well inside
    assert inner.min() > 0 and inner.max() < 48


@needs_model
def test_whole_box_near_the_true_landmarks(faces, whole):
    truth = faces.meta["landmarks"]
    assert _error(whole, truth) < 4.0  # measured 3.1 px (iod ~12 px); the synthetic faces are framed
    # looser than FER2013's crops, so a whole-image box is bigger than what dlib was trained on.
    # The points follow each face, not an average face: the head's roll is recovered.
    assert np.corrcoef(_roll(whole), _roll(truth))[0, 1] > 0.6  # measured 0.78; an average face: NaN


@needs_model
def test_detected_box_is_closer_than_an_average_face(faces):
    truth = faces.meta["landmarks"]
    points = dataset_landmarks(faces, box="detect", cache_dir=False, progress=False)
    found = ~np.isnan(points).any((1, 2))
    assert found.sum() >= 18
    err = _error(points[found], truth[found])
    assert err < 1.6  # measured 1.24 px
    assert err < _error(truth.mean(0, keepdims=True), truth[found])  # beats the mean true shape (1.75 px)


@needs_model
def test_no_face_is_a_nan_row_and_rgb_works():
    rgb = load_dataset("synthetic", None, "val", n=2, rgb=True)
    images = torch.cat([rgb.images, torch.full((1, 3, 48, 48), 128, dtype=torch.uint8)])
    ds = FERDataset(images, torch.zeros(3, dtype=torch.long), rgb.classes)
    points = dataset_landmarks(ds, box="detect", cache_dir=False, progress=False)
    assert np.isnan(points[2]).all() and np.isfinite(points[:2]).all()
    assert _error(points[:2], rgb.meta["landmarks"]) < 2.5
    assert np.isfinite(dataset_landmarks(ds, box="whole", cache_dir=False, progress=False)).all()


def test_unknown_box_is_a_clear_error(faces):
    with pytest.raises(ValueError, match="unknown box 'hog'; valid: whole, detect"):
        dataset_landmarks(faces, box="hog", cache_dir=False)


# --------------------------------------------------------------------------- cache
@needs_model
def test_second_call_reads_the_cache_without_dlib(faces, tmp_path, monkeypatch):
    first = dataset_landmarks(faces, cache_dir=tmp_path, progress=False)
    path = landmarks_cache_path(faces, cache_dir=tmp_path)
    assert path.exists() and path.parent == tmp_path and path.name.startswith("landmarks-synthetic-train-")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # one .npz, no temp files left
    _forbid_dlib(monkeypatch)
    copy = faces.subset(range(len(faces)))  # the same images in another object: the same entry
    second = dataset_landmarks(copy, cache_dir=tmp_path, progress=False, store=True)
    np.testing.assert_array_equal(first, second)
    assert copy.meta["landmarks"] is second and faces.meta["landmarks"] is not second  # store=True: meta
    with pytest.raises(AssertionError, match="dlib ran"):  # the other box is another cache entry
        dataset_landmarks(faces, box="detect", cache_dir=tmp_path, progress=False)


@needs_model
def test_default_cache_dir_is_fercore_cache(faces, tmp_path, monkeypatch):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "c"))
    dataset_landmarks(faces, progress=False)
    assert landmarks_cache_path(faces).parent == tmp_path / "c" and landmarks_cache_path(faces).exists()


@needs_model
def test_changed_images_or_settings_change_the_key(faces, tmp_path, monkeypatch):
    base = landmarks_cache_path(faces, cache_dir=tmp_path)
    edited = faces.subset(range(len(faces)))  # same name and split, one pixel different
    edited.images = edited.images.clone()
    edited.images[7, 0, 20, 20] ^= 1
    assert landmarks_cache_path(edited, cache_dir=tmp_path) != base
    assert landmarks_cache_path(faces.subset(range(19)), cache_dir=tmp_path) != base
    assert landmarks_cache_path(faces, box="detect", cache_dir=tmp_path) != base
    monkeypatch.setattr(module, "MIN_FACE", 200)  # another upsampling: other landmarks
    assert landmarks_cache_path(faces, cache_dir=tmp_path) != base
    monkeypatch.undo()
    assert landmarks_cache_path(faces, cache_dir=tmp_path) == base  # and the key is stable


@needs_model
def test_cache_false_writes_nothing(faces, tmp_path, monkeypatch):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    points = dataset_landmarks(faces, cache_dir=False, progress=False)
    assert points.shape == (20, 68, 2)
    assert landmarks_cache_path(faces, cache_dir=False) is None
    assert list(tmp_path.iterdir()) == []


@needs_model
def test_nothing_is_written_in_the_data_folder(faces, tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    lines = ["emotion,pixels,Usage"] + [f"{int(t)},{' '.join(map(str, img.ravel().tolist()))},Training"
                                        for img, t in zip(faces.images[:5].numpy(), faces.targets[:5])]
    (data / "fer2013.csv").write_text("\n".join(lines) + "\n")
    before = sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob("*"))
    monkeypatch.setenv("FERCORE_CACHE", str(cache))
    ds = load_dataset("fer2013", data, "train")
    points = dataset_landmarks(ds, progress=False)
    np.testing.assert_allclose(points, dataset_landmarks(faces.subset(range(5)), cache_dir=False, progress=False))
    assert sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob("*")) == before
    assert landmarks_cache_path(ds).exists() and landmarks_cache_path(ds).name.startswith("landmarks-fer2013-train-")


# --------------------------------------------------------------------------- CLI
@needs_model
def test_cli_computes_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules["fercore.data.synthetic"].SPLIT_SIZES, "val", 20)  # 20 faces, not 700
    argv = ["landmarks", "--dataset", "synthetic", "--split", "val", "--cache-dir", str(tmp_path), "--quiet"]
    assert main(argv + ["--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["images"] == first["with_landmarks"] == 20 and first["without_landmarks"] == 0
    assert first["from_cache"] is False and first["box"] == "whole" and first["seconds"] >= 0
    assert 0 < first["plausible"] <= 20  # dlib's fits of the synthetic faces, checked as Prior Attention does
    cache = tmp_path / first["cache"].rsplit("/", 1)[-1]
    assert first["cache"] == str(cache) and cache.exists()
    _forbid_dlib(monkeypatch)
    assert main(argv + ["--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["from_cache"] is True and second["cache"] == first["cache"] and second["with_landmarks"] == 20
    assert main(argv) == 0  # the one-line summary
    line = capsys.readouterr().out
    assert line.startswith(f"synthetic val: landmarks for 20 of 20 images (whole box, {first['plausible']} plausible fits)")
    assert str(cache) in line


def test_cli_missing_data_is_one_clear_line(tmp_path, capsys):
    code = main(["landmarks", "--dataset", "fer2013", "--data-root", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "nowhere" in err and "Traceback" not in err


def test_cli_help_has_an_example():
    result = subprocess.run([sys.executable, "-m", "fercore", "landmarks", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "example:" in result.stdout and "python -m fercore landmarks" in result.stdout


def test_landmark_error_is_the_mean_distance_over_the_inter_ocular_distance():
    from fercore.faces.landmarks import landmark_error

    truth = np.zeros((2, 68, 2))
    truth[:, 36:42, 0], truth[:, 42:48, 0] = 10.0, 30.0  # eye centres 20 px apart
    shifted = truth.copy()
    shifted[0] += [3.0, 4.0]            # face 0: every point 5 px off
    shifted[1, 48:68] += [0.0, 10.0]    # face 1: only the mouth, 10 px off
    np.testing.assert_allclose(landmark_error(shifted, truth), [0.25, 10 * 20 / 68 / 20])
    np.testing.assert_allclose(landmark_error(shifted, truth, np.r_[48:68]), [0.25, 0.5])
