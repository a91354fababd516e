"""``python -m fercore predict``: faces, boxes, labels and probabilities per image; clear messages."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fercore.cli import main
from fercore.data.synthetic import FaceParams, render_face
from fercore.labels import EMOTIONS_7


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--model", "simple_cnn", "--dataset", "synthetic", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out / "best.pt"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    face, _ = render_face(FaceParams(character=1), size=200, rgb=True)
    one = np.full((480, 640, 3), 200, np.uint8)
    one[140:340, 220:420] = face
    cv2.imwrite(str(folder / "one.jpg"), cv2.cvtColor(one, cv2.COLOR_RGB2BGR))
    two = np.full((300, 600, 3), 200, np.uint8)
    two[50:250, 50:250], two[50:250, 350:550] = face, face
    cv2.imwrite(str(folder / "two.png"), cv2.cvtColor(two, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "blank.png"), np.full((240, 320), 128, np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def predict(capsys, *argv):
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_face_gets_a_box_label_and_probabilities(checkpoint, photos, capsys):
    code, out, _ = predict(capsys, str(photos / "one.jpg"), str(photos / "two.png"), "--checkpoint", str(checkpoint), "--json")
    one, two = json.loads(out)
    assert code == 0 and len(one["faces"]) == 1 and len(two["faces"]) == 2
    left, top, right, bottom = one["faces"][0]["box"]
    assert 200 <= left < 320 and right <= 440 and 120 <= top and bottom <= 360  # around the drawn face
    for face in one["faces"] + two["faces"]:
        assert set(face["probabilities"]) == set(EMOTIONS_7)
        assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    # The same face drawn twice gets the same prediction.
    assert two["faces"][0]["probabilities"] == pytest.approx(two["faces"][1]["probabilities"], abs=0.02)


def test_no_face_is_a_message_not_a_crash(checkpoint, photos, capsys):
    code, out, _ = predict(capsys, str(photos / "blank.png"), "--checkpoint", str(checkpoint))
    assert code == 0 and f"no face found in {photos / 'blank.png'}" in out


def test_annotated_copies_leave_the_inputs_alone(checkpoint, photos, tmp_path, capsys):
    before = (photos / "one.jpg").read_bytes()
    code, out, _ = predict(capsys, str(photos / "one.jpg"), "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--json")
    annotated = json.loads(out)[0]["annotated"]
    assert code == 0 and annotated == str(tmp_path / "one_pred.png")
    image = cv2.imread(annotated)
    assert image.shape == (480, 640, 3) and (photos / "one.jpg").read_bytes() == before


@pytest.mark.parametrize("name", ["missing.jpg", "broken.jpg"])
def test_missing_or_unreadable_file_is_named(checkpoint, photos, capsys, name):
    code, _, err = predict(capsys, str(photos / name), "--checkpoint", str(checkpoint))
    assert code == 2 and name in err and err.startswith("error:")


def test_out_beside_the_inputs_overwrites_nothing_and_predicts_the_original_pixels(checkpoint, photos, tmp_path, capsys):
    """An input named face_pred.png is neither replaced by face.jpg's copy nor predicted on that copy."""
    import shutil
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos / "one.jpg", folder / "face.jpg")
    shutil.copy(photos / "two.png", folder / "face_pred.png")  # two faces, unlike face.jpg's one
    before = (folder / "face_pred.png").read_bytes()
    code, out, _ = predict(capsys, str(folder / "face.jpg"), str(folder / "face_pred.png"), "--checkpoint",
                           str(checkpoint), "--out", str(folder), "--json")
    face, face_pred = json.loads(out)
    assert code == 0 and (folder / "face_pred.png").read_bytes() == before
    assert len(face["faces"]) == 1 and len(face_pred["faces"]) == 2
    assert face["annotated"] == str(folder / "face_pred_1.png") and face_pred["annotated"] == str(folder / "face_pred_pred.png")


def test_inputs_with_the_same_stem_get_distinct_copies(checkpoint, photos, tmp_path, capsys):
    from PIL import Image
    image = Image.open(photos / "one.jpg")
    image.save(tmp_path / "face.gif")
    image.save(tmp_path / "face.webp")
    out_dir = tmp_path / "out"
    (out_dir).mkdir()
    (out_dir / "face_pred.png").write_bytes(b"an earlier run's copy")
    code, out, _ = predict(capsys, str(tmp_path / "face.gif"), str(tmp_path / "face.webp"), "--checkpoint",
                           str(checkpoint), "--out", str(out_dir), "--json")
    annotated = [r["annotated"] for r in json.loads(out)]
    assert code == 0 and annotated == [str(out_dir / "face_pred_1.png"), str(out_dir / "face_pred_2.png")]
    assert (out_dir / "face_pred.png").read_bytes() == b"an earlier run's copy"
    assert all(cv2.imread(a).shape == (480, 640, 3) for a in annotated)


def test_bad_images_are_reported_one_line_each_and_the_rest_predicted(checkpoint, photos, capsys):
    code, out, err = predict(capsys, str(photos / "one.jpg"), str(photos / "missing.jpg"), str(photos / "broken.jpg"),
                             str(photos / "two.png"), "--checkpoint", str(checkpoint), "--json")
    results = json.loads(out)
    assert code == 2 and [r["image"] for r in results] == [str(photos / "one.jpg"), str(photos / "two.png")]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "missing.jpg" in lines[0] and "broken.jpg" in lines[1]
    code, out, err = predict(capsys, str(photos / "one.jpg"), "--checkpoint", str(checkpoint), "--out", str(photos / "one.jpg"))
    assert code == 2 and out == "" and err == f"error: --out {photos / 'one.jpg'} is a file, not a folder\n"


# ---------------------------------------------------------------- the notebook's upload widget
@pytest.fixture(scope="module")
def uploader(checkpoint):
    import matplotlib
    matplotlib.use("Agg")
    from fercore.train import load_model
    from fercore.viz.widgets import PredictUpload

    return PredictUpload(load_model(checkpoint), EMOTIONS_7)


def test_bundled_sample_photo_is_the_documented_synthetic_face(uploader):
    from fercore.faces import read_image
    from fercore.predict import SAMPLE_PHOTO, synthetic_photo

    diff = np.abs(read_image(SAMPLE_PHOTO).astype(int) - synthetic_photo().astype(int))
    assert diff.mean() < 3  # the same picture, up to JPEG
    result = uploader.predict_file(SAMPLE_PHOTO)
    (face,) = result["faces"]
    left, top, right, bottom = face["box"]
    assert 200 <= left < right <= 440 and 120 <= top < bottom <= 360  # the face sits at (220..420, 140..340)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    boxes = [p for p in uploader.figure.axes[0].patches]
    assert len(boxes) == 1 and boxes[0].get_width() == right - left
    assert "<svg" in uploader.output.outputs[0]["data"]["image/svg+xml"]
    (label,) = uploader.figure.axes[0].texts  # drawn over the photo: outlined so it reads on any background
    assert label.get_path_effects() and label.get_text() == f"0: {face['label']}"


def test_upload_event_predicts_in_both_ipywidgets_formats(uploader, photos):
    data = (photos / "two.png").read_bytes()
    uploader._uploaded({"new": ({"name": "two.png", "type": "image/png", "size": len(data), "content": memoryview(data)},)})
    assert uploader.last_result["image"] == "two.png" and len(uploader.last_result["faces"]) == 2
    uploader._uploaded({"new": {"one.jpg": {"content": (photos / "one.jpg").read_bytes(), "metadata": {}}}})  # ipywidgets 7
    assert uploader.last_result["image"] == "one.jpg" and len(uploader.last_result["faces"]) == 1
    assert uploader._repr_mimebundle_()["image/svg+xml"]


def test_upload_of_a_blank_or_broken_file_says_so(uploader, photos):
    blank = uploader.predict_bytes((photos / "blank.png").read_bytes(), "blank.png")
    assert blank["faces"] == [] and "no face found" in blank["message"]
    broken = uploader.predict_bytes(b"not a jpeg", "holiday.jpg")
    assert broken["faces"] == [] and "holiday.jpg" in broken["message"] and "cannot read" in broken["message"]
    assert "holiday.jpg" in uploader.output.outputs[0]["text"]


@pytest.mark.parametrize("background", [0, 255])
def test_the_label_on_an_annotated_copy_reads_on_dark_and_light_photos(tmp_path, background):
    from fercore.predict import annotate

    photo = tmp_path / "plain.png"
    cv2.imwrite(str(photo), np.full((400, 400, 3), background, np.uint8))
    result = {"faces": [{"box": [100, 150, 300, 350], "label": "happy", "probabilities": {"happy": 0.9}}]}
    out = cv2.imread(str(annotate(photo, result, tmp_path / "out")))
    band = out[100:146, 100:300].astype(int)  # the label sits just above the box
    green = (band[..., 1] > 150) & (band[..., 0] < 100) & (band[..., 2] < 100)
    black = band.max(-1) < 60
    assert green.sum() > 20 and black.sum() > green.sum() / 2  # green letters in a black outline, on either photo


def test_reserved_outputs_share_the_first_number_free_for_every_suffix(tmp_path):
    from fercore.predict import reserve_outputs

    (tmp_path / "clip_pred.jsonl").write_text("the user's")  # only the .jsonl of number 0 is taken
    first = reserve_outputs(tmp_path, "clip", (".mp4", ".jsonl"))
    assert [p.name for p in first] == ["clip_pred_1.mp4", "clip_pred_1.jsonl"]
    assert not (tmp_path / "clip_pred.mp4").exists() and (tmp_path / "clip_pred.jsonl").read_text() == "the user's"
    second = reserve_outputs(tmp_path, "clip", (".mp4", ".jsonl"))  # a second run in the same folder
    assert [p.name for p in second] == ["clip_pred_2.mp4", "clip_pred_2.jsonl"]
