"""Faces pipeline: reading images, detection, landmarks, alignment (fercore.faces)."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from fercore.data.synthetic import FaceParams, render_face
from fercore.env import landmark_model_path
from fercore.faces import (EYE_DISTANCE, EYE_Y, Box, align_face, alignment_matrix, crop_box, detect_faces,
                           faces_in, predict_landmarks, read_image)

needs_model = pytest.mark.skipif(landmark_model_path() is None, reason="face-recognition-models not installed")


def _face(size=200, character=0):
    return render_face(FaceParams(character=character), size=size, rgb=True)


def _eyes(points):
    return points[36:42].mean(0), points[42:48].mean(0)


# --------------------------------------------------------------------------- read_image
@pytest.mark.parametrize("ext", ["png", "jpg", "tif"])
def test_read_formats(tmp_path, ext):
    img, _ = _face(64)
    Image.fromarray(img).save(tmp_path / f"f.{ext}", **({"quality": 95} if ext == "jpg" else {}))
    out = read_image(tmp_path / f"f.{ext}")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < (4 if ext == "jpg" else 0.01)


def test_read_gray_rgba_16bit(tmp_path):
    Image.fromarray(np.full((5, 7), 90, np.uint8)).save(tmp_path / "g.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (5, 7, 3) and (g == 90).all()

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, ..., 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = read_image(tmp_path / "a.png")
    assert a.shape == (4, 4, 3)
    assert (a[:2] == [255, 0, 0]).all() and (a[2:] == 255).all()  # composited on white

    ramp = np.tile(np.array([0, 1000, 30000, 65535], np.uint16), (3, 1))
    Image.fromarray(ramp).save(tmp_path / "d.png")  # 16-bit grayscale PNG
    d = read_image(tmp_path / "d.png")
    assert d.dtype == np.uint8 and d.shape == (3, 4, 3)
    assert list(d[0, :, 0]) == [0, 4, 117, 255]


@pytest.mark.parametrize("orientation", [6, 8])
def test_read_applies_exif_orientation(tmp_path, orientation):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = [255, 0, 0]  # left half red, right half black
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)  # upright: portrait now
    red_top = out[:20, :, 0].mean() > out[20:, :, 0].mean()
    assert red_top == (orientation == 6)  # 6: rotate 90 deg clockwise to display; 8: anticlockwise


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg.*expected JPEG"):
        read_image(tmp_path / "bad.jpg")


def test_decompression_bomb_is_refused_by_name(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "bomb.png")  # 4096 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the application's limit, read at each call
    with pytest.raises(ValueError) as err:
        read_image(tmp_path / "bomb.png")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'bomb.png'}: refused as a possible decompression bomb")
    assert "\n" not in message
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # over the limit but under twice it: read, with a warning
    with pytest.warns(UserWarning, match=f"{tmp_path / 'bomb.png'}: 64x64 image is over PIL.Image.MAX_IMAGE_PIXELS"):
        assert read_image(tmp_path / "bomb.png").shape == (64, 64, 3)


def test_importing_fercore_leaves_pillows_limit_alone():
    code = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import fercore.faces, fercore.data; "
            "print(before == Image.MAX_IMAGE_PIXELS)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


# --------------------------------------------------------------------------- detection
@pytest.mark.parametrize("method", ["auto", "hog", "haar"])
def test_no_face_gives_no_box(method):
    img = np.full((240, 320, 3), 180, np.uint8)
    cv2.rectangle(img, (40, 40), (120, 200), (30, 90, 200), -1)
    assert detect_faces(img, method) == []


def test_whole_and_bad_method():
    assert detect_faces(np.zeros((48, 48), np.uint8), "whole") == [Box(0, 0, 48, 48, 1.0, "whole")]
    with pytest.raises(ValueError, match="unknown method"):
        detect_faces(np.zeros((48, 48), np.uint8), "cnn")


@pytest.mark.parametrize("size", [120, 200])
def test_hog_finds_synthetic_face(size):
    img, pts = _face(size)
    boxes = detect_faces(img)
    assert len(boxes) == 1 and boxes[0].method == "hog"
    assert boxes[0].contains(pts[17:])  # brows, eyes, nose and mouth inside the box


def test_two_faces_largest_first_and_big_image_scaled_back():
    canvas = np.full((480, 640, 3), 200, np.uint8)
    a, pa = _face(200, 0)
    b, pb = _face(140, 2)
    canvas[100:300, 50:250], canvas[150:290, 400:540] = a, b
    boxes = detect_faces(canvas)
    assert len(boxes) == 2 and boxes[0].area > boxes[1].area
    assert boxes[0].contains(pa[17:] + [50, 100]) and boxes[1].contains(pb[17:] + [400, 150])
    big = cv2.resize(canvas, (2560, 1920), interpolation=cv2.INTER_CUBIC)  # detected at 640, scaled back
    big_boxes = detect_faces(big)
    assert len(big_boxes) == 2 and big_boxes[0].contains((pa[17:] + [50, 100]) * 4, tol=8)


# --------------------------------------------------------------------------- landmarks
@needs_model
@pytest.mark.parametrize("size,character", [(200, 0), (120, 4)])
def test_landmarks_near_truth(size, character):
    img, pts = _face(size, character)
    pred = predict_landmarks(img, detect_faces(img)[0])
    assert pred.shape == (68, 2)
    assert np.linalg.norm(pred - pts, axis=1).mean() < 0.05 * size


@needs_model
def test_landmarks_on_tiny_crop_are_upsampled_and_mapped_back():
    img, pts = render_face(FaceParams(character=1), size=48)  # a FER2013-sized grayscale crop
    pred = predict_landmarks(img[..., 0], detect_faces(img[..., 0], "whole")[0])
    assert np.linalg.norm(pred - pts, axis=1).mean() < 0.05 * 48


def test_missing_model_is_a_clear_error(monkeypatch):
    import fercore.faces.landmarks as module
    monkeypatch.setattr(module, "landmark_model_path", lambda: None)
    monkeypatch.setattr(module, "_PREDICTOR", {})
    with pytest.raises(FileNotFoundError, match="face-recognition-models"):
        predict_landmarks(np.zeros((48, 48), np.uint8), Box(0, 0, 48, 48))


# --------------------------------------------------------------------------- alignment
def test_alignment_puts_eyes_level_at_their_place():
    _, pts = _face(200)
    rot = cv2.getRotationMatrix2D((100, 100), 15, 1.0)
    tilted = pts @ rot[:, :2].T + rot[:, 2]
    m = alignment_matrix(tilted, 48)
    r, l = _eyes(tilted @ m[:, :2].T + m[:, 2])
    assert r[1] == pytest.approx(l[1], abs=1e-6) and r[1] == pytest.approx(EYE_Y * 48 - 0.5)
    assert l[0] - r[0] == pytest.approx(EYE_DISTANCE * 48) and (r[0] + l[0]) / 2 == pytest.approx(23.5)


def test_aligned_rotated_face_matches_upright():
    img, pts = _face(200)
    rot = cv2.getRotationMatrix2D((100, 100), 15, 1.0)
    tilted = cv2.warpAffine(img, rot, (200, 200), borderValue=(200, 200, 200))
    upright = align_face(img, pts)
    aligned = align_face(tilted, pts @ rot[:, :2].T + rot[:, 2])
    assert aligned.shape == (48, 48) and aligned.dtype == np.uint8
    assert np.abs(aligned.astype(int) - upright).mean() < 4
    naive = crop_box(tilted, Box(40, 60, 160, 180))  # unaligned crop of the tilted face differs more
    assert np.abs(naive.astype(int) - upright).mean() > 2 * np.abs(aligned.astype(int) - upright).mean()
    assert align_face(img, pts, size=64, gray=False).shape == (64, 64, 3)


def test_crop_box_square_with_margin_and_border():
    img = np.zeros((100, 100), np.uint8)
    img[20:60, 30:70] = 255
    out = crop_box(img, Box(30, 20, 70, 60), size=48, margin=0.0)
    assert out.shape == (48, 48) and out[1:-1, 1:-1].min() == 255 and out.min() > 200  # box fills the output
    edge = crop_box(img, Box(0, 0, 40, 40), size=48, margin=0.5)  # reaches past the image: replicated
    assert edge.shape == (48, 48)


@needs_model
def test_faces_in_runs_the_pipeline():
    canvas = np.full((480, 640, 3), 200, np.uint8)
    a, pa = _face(200, 0)
    canvas[100:300, 50:250] = a
    found = faces_in(canvas)
    assert len(found) == 1 and set(found[0]) == {"box", "points", "face"}
    assert found[0]["face"].shape == (48, 48) and found[0]["face"].dtype == np.uint8
    r, l = _eyes(found[0]["points"])
    assert abs(r[1] - l[1]) < 4 and np.linalg.norm(found[0]["points"] - (pa + [50, 100]), axis=1).mean() < 10
    reference = align_face(a, pa)
    assert np.abs(found[0]["face"].astype(int) - reference).mean() < 20
