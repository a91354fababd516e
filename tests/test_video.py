"""``python -m fercore predict clip.mp4`` and ``--camera``: tracking, smoothing, output files, clean stops, errors.

The video is synthetic: a happy face for 20 frames, then a surprised one, moving 2 px per frame.
The model is a test double that tells those two faces apart by the brightness of the aligned
face's mouth region (dark where surprise opens the mouth wide), so that the label switch is
known without training; everything around it is the real code.
"""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from fercore.cli import main
from fercore.faces import Box
from fercore.labels import EMOTIONS_7
from fercore.models import MODELS, ModelInfo
from fercore.predict import synthetic_photo
from fercore.video import Tracker, write_synthetic_video

pytestmark = pytest.mark.usefixtures("one_thread")
HAPPY, SURPRISE = EMOTIONS_7.index("happy"), EMOTIONS_7.index("surprise")


class MouthStub(nn.Module):
    """Logits from the mean of rows 40-47, columns 18-29 of the 48x48 input (in [-1, 1]): the open mouth darkens it."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(30.0))  # a state_dict and a device, like any model

    def forward(self, x):
        d = self.gain * (0.1 - x[:, 0, 40:48, 18:30].mean((1, 2)))  # happy: about 0.47, surprise: -0.3
        logits = torch.full((len(x), len(EMOTIONS_7)), -10.0)
        logits[:, HAPPY], logits[:, SURPRISE] = -d, d
        return logits


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(MODELS, "mouth_stub", ModelInfo("mouth_stub", MouthStub))
        path = tmp_path_factory.mktemp("stub") / "best.pt"
        torch.save({"format_version": 1, "model": MouthStub().state_dict(),
                    "config": {"model_name": "mouth_stub", "classes": list(EMOTIONS_7)}}, path)
        yield path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_synthetic_video(tmp_path_factory.mktemp("videos") / "clip.mp4")


def predict(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def frame_count(path) -> int:
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    return n


def test_video_is_tracked_smoothed_and_written(checkpoint, clip, tmp_path, capsys):
    code, out, err = predict(capsys, clip, "--checkpoint", checkpoint, "--out", tmp_path)
    assert code == 0 and err == ""
    assert re.fullmatch(rf"{clip}: 40 frames, 1 face tracks, [\d.]+ fps; wrote {tmp_path / 'clip_pred.mp4'} "
                        rf"and {tmp_path / 'clip_pred.jsonl'}\n", out)
    assert frame_count(tmp_path / "clip_pred.mp4") == 40
    lines = [json.loads(line) for line in (tmp_path / "clip_pred.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in lines] == list(range(40)) and lines[30]["time"] == 1.0
    assert all(len(f["faces"]) == 1 for f in lines)
    faces = [f["faces"][0] for f in lines]
    assert {f["track"] for f in faces} == {1}  # one face, one id, while it moves 80 px
    assert faces[-1]["box"][0] - faces[0]["box"][0] > 60
    raw = [max(f["raw"], key=f["raw"].get) for f in faces]
    assert raw == ["happy"] * 20 + ["surprise"] * 20  # the stub sees the switch at once...
    # ...the moving average (alpha 0.2) lags: 1 - 0.8 ** k passes 1/2 at the 4th surprised frame.
    assert [f["label"] for f in faces] == ["happy"] * 23 + ["surprise"] * 17
    for before, f in zip(faces, faces[1:]):
        assert f["probabilities"]["surprise"] == pytest.approx(
            0.2 * f["raw"]["surprise"] + 0.8 * before["probabilities"]["surprise"], abs=2e-4)
    for f in faces:
        assert f["label"] == max(f["probabilities"], key=f["probabilities"].get)
        assert sum(f["probabilities"].values()) == pytest.approx(1, abs=1e-3)


def test_smooth_1_is_the_raw_prediction_and_lines_go_to_stdout(checkpoint, clip, capsys):
    code, out, err = predict(capsys, clip, "--checkpoint", checkpoint, "--smooth", "1", "--detect-every", "1")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 40 and err.startswith(f"{clip}: 40 frames") and "wrote" not in err
    assert all(f["faces"][0]["probabilities"] == f["faces"][0]["raw"] for f in lines)


def test_earlier_outputs_are_never_overwritten(checkpoint, tmp_path, capsys):
    short = write_synthetic_video(tmp_path / "clip.mp4", ("neutral",), frames_each=3)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "clip_pred.mp4").write_bytes(b"an earlier run's video")
    (out_dir / "clip_pred_1.jsonl").write_text("an earlier run's lines\n")  # so _1 is taken as a pair too
    code, out, _ = predict(capsys, short, "--checkpoint", checkpoint, "--out", out_dir)
    assert code == 0 and out.endswith(f"wrote {out_dir / 'clip_pred_2.mp4'} and {out_dir / 'clip_pred_2.jsonl'}\n")
    assert (out_dir / "clip_pred.mp4").read_bytes() == b"an earlier run's video"
    assert (out_dir / "clip_pred_1.jsonl").read_text() == "an earlier run's lines\n"
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip_pred.mp4", "clip_pred_1.jsonl", "clip_pred_2.jsonl",
                                                         "clip_pred_2.mp4"]
    assert frame_count(out_dir / "clip_pred_2.mp4") == 3


def test_an_mp4_writer_that_does_not_open_is_one_error_line_and_leaves_no_file(checkpoint, clip, tmp_path, capsys,
                                                                              monkeypatch):
    class Unopened:  # an OpenCV without the mp4v encoder
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(cv2, "VideoWriter", Unopened)
    code, out, err = predict(capsys, clip, "--checkpoint", checkpoint, "--out", tmp_path / "out")
    assert code == 2 and out == "" and err.startswith("error: OpenCV cannot write") and err.count("\n") == 1
    assert not any((tmp_path / "out").iterdir())


def no_frames_video(path):
    """An mp4 OpenCV opens (its index is intact) but cannot decode a single frame of (the data is zeroed)."""
    data = write_synthetic_video(path, ("neutral",), frames_each=3).read_bytes()
    start, index = data.index(b"mdat") + 4, data.index(b"moov") - 4
    path.write_bytes(data[:start] + bytes(index - start) + data[index:])
    assert cv2.VideoCapture(str(path)).isOpened()
    return path


@pytest.mark.parametrize("kind", ["missing", "random bytes", "no frames"])
def test_missing_or_corrupt_video_is_one_error_line(checkpoint, tmp_path, capsys, kind):
    path = tmp_path / "bad.mp4"
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "no frames":
        no_frames_video(path)
    code, out, err = predict(capsys, path, "--checkpoint", checkpoint, "--out", tmp_path / "out")
    assert code == 2 and out == "" and err.startswith("error: ") and str(path) in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no empty output left


class FakeCamera:
    """cv2.VideoCapture stand-in: ``frames`` synthetic frames, then Ctrl-C (KeyboardInterrupt), as a user would."""
    frames, opened = 5, True

    def __init__(self, index):
        self.index, self.reads = index, 0

    def isOpened(self):
        return self.opened

    def read(self):
        self.reads += 1
        if self.reads > self.frames:
            raise KeyboardInterrupt
        return True, cv2.cvtColor(synthetic_photo("happy"), cv2.COLOR_RGB2BGR)

    def get(self, prop):
        return 0.0  # what many webcams report for the frame rate

    def release(self):
        pass


@pytest.mark.parametrize("out", [False, True])
def test_camera_stops_cleanly_on_ctrl_c(checkpoint, tmp_path, capsys, monkeypatch, out):
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    monkeypatch.delenv("DISPLAY", raising=False)
    code, stdout, stderr = predict(capsys, "--camera", "0", "--checkpoint", checkpoint,
                                   *(["--out", tmp_path] if out else []))
    summary = stdout if out else stderr
    assert code == 0 and summary.startswith("camera 0: 5 frames, 1 face tracks") and "(stopped by Ctrl-C)" in summary
    if out:  # the video file is finished, not cut off: every frame before Ctrl-C is in it
        monkeypatch.undo()
        assert frame_count(tmp_path / "camera0_pred.mp4") == 5
        assert len((tmp_path / "camera0_pred.jsonl").read_text().splitlines()) == 5
    else:
        assert [json.loads(line)["frame"] for line in stdout.splitlines()] == list(range(5))


@pytest.mark.parametrize("gui", [True, False])
def test_camera_window_quits_on_q_or_falls_back_to_lines_without_a_gui(checkpoint, capsys, monkeypatch, gui):
    keys = iter([-1, -1, ord("q")])
    def imshow(title, frame):
        if not gui:  # what opencv-python-headless does
            raise cv2.error("The function is not implemented")
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", imshow)
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    code, out, err = predict(capsys, "--camera", "0", "--checkpoint", checkpoint)
    assert code == 0 and len(out.splitlines()) == (3 if gui else 5)  # q after the 3rd frame; else Ctrl-C after 5
    assert ("no GUI" in err) != gui and err.splitlines()[-1].startswith(f"camera 0: {3 if gui else 5} frames")


def test_camera_that_cannot_be_opened_is_one_error_line(checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(FakeCamera, "opened", False)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    code, out, err = predict(capsys, "--camera", "3", "--checkpoint", checkpoint)
    assert code == 2 and out == "" and err.startswith("error: camera 3 cannot be opened") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [[], ["--camera", "0", "clip.mp4"]])
def test_files_or_camera_not_both_nor_neither(capsys, argv):
    code, out, err = predict(capsys, *argv)
    assert code == 2 and out == "" and err.startswith("error: give image or video files, or --camera N")


def test_tracker_keeps_ids_by_overlap_and_forgets_lost_faces():
    a, b = Box(100, 100, 200, 200), Box(400, 100, 500, 200)
    tracker = Tracker(max_age=10)
    assert [t.id for t in tracker.update([a, b], 0)] == [1, 2]
    moved = Box(a.left + 20, a.top, a.right + 20, a.bottom)
    assert [t.id for t in tracker.update([b, moved], 5)] == [2, 1]  # matched by IoU, not by order
    assert [t.id for t in tracker.update([b], 10)] == [2] and tracker.shown[0].box == b
    assert [t.id for t in tracker.update([b, moved], 15)] == [2, 1]  # lost for 10 frames: still remembered
    tracker.update([b], 20)
    assert [t.id for t in tracker.update([b, moved], 29)] == [2, 3]  # lost for 14 > max_age frames: a new face
