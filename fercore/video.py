"""Expressions in a video or a webcam stream, face by face over time (``python -m fercore predict clip.mp4``).

Each frame goes through the photo pipeline (``fercore.faces`` then ``fercore.predict.classify_faces``,
i.e. ``fercore.transforms.predict_proba``); what video adds is identity and time:

* **Tracking.** Faces are detected every ``detect_every`` frames (detection is the slow stage).
  Detected boxes are matched to the existing tracks greedily by IoU (the pair with the highest
  IoU first, pairs under ``IOU_MATCH`` never); an unmatched box starts a track with a new id (ids
  are never reused), and a track unmatched for more than ``max_age`` frames is dropped. Only tracks matched at the last
  detection are shown. Between detections each shown track keeps its box; landmarks are found
  in it every frame, so the aligned face still follows small movements.
* **Smoothing.** Each track keeps an exponential moving average of its probabilities,
  ``p <- alpha * p_frame + (1 - alpha) * p`` (``smooth=alpha``; 1 turns smoothing off), started at
  the track's first frame. A frame ``k`` frames old weighs ``alpha * (1 - alpha) ** k``: the time
  constant is ``-1 / ln(1 - alpha)`` frames, about 4.5 frames (0.15 s at 30 fps) for the default
  0.2, and a sure switch of expression moves the label after 4 frames. The label is the smoothed argmax.

Output: ``OUT/STEM_pred.mp4`` (boxes, labels, a probability bar per class and face) and
``OUT/STEM_pred.jsonl``, one JSON line per frame; without ``out_dir`` the lines go to stdout.
Neither file ever replaces an existing one: the pair gets a number, ``STEM_pred_1.mp4``, ...
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .faces import Box, align_face, faces_in, predict_landmarks
from .faces.regions import aligned_points
from .predict import FACE_SIZE, classify_faces, draw_label, reserve_outputs, synthetic_photo

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DETECT_EVERY = 5  # detection is ~30 ms of a 640x480 frame; 5: ~40 fps with vgg_fer on one core (every frame: ~20)
SMOOTH = 0.2
MAX_AGE = 15      # frames a lost track is remembered (0.5 s at 30 fps), so a missed detection keeps its id
IOU_MATCH = 0.3


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def iou(a: Box, b: Box) -> float:
    w, h = min(a.right, b.right) - max(a.left, b.left), min(a.bottom, b.bottom) - max(a.top, b.top)
    inter = max(w, 0) * max(h, 0)
    return inter / (a.area + b.area - inter) if inter else 0.0


@dataclass
class Track:
    id: int
    box: Box
    seen: int                       # frame of the last detection matched to it
    probs: np.ndarray | None = None  # smoothed probabilities


class Tracker:
    """Greedy IoU matching of each detection's boxes to the tracks (see the module docstring)."""

    def __init__(self, max_age: int = MAX_AGE):
        self.max_age, self.tracks, self.shown, self.next_id = max_age, [], [], 1

    def update(self, boxes: list[Box], frame: int) -> list[Track]:
        """The track of each box, in ``boxes``' order; they are the tracks shown until the next update."""
        self.tracks = [t for t in self.tracks if frame - t.seen <= self.max_age]
        pairs = sorted(((iou(t.box, b), i, j) for i, t in enumerate(self.tracks) for j, b in enumerate(boxes)),
                       reverse=True)
        of_box, used = {}, set()
        for v, i, j in pairs:
            if v >= IOU_MATCH and i not in used and j not in of_box:
                used.add(i)
                of_box[j] = self.tracks[i]
        for j, box in enumerate(boxes):
            if j not in of_box:
                of_box[j] = Track(self.next_id, box, frame)
                self.tracks.append(of_box[j])
                self.next_id += 1
            of_box[j].box, of_box[j].seen = box, frame
        self.shown = [of_box[j] for j in range(len(boxes))]
        return self.shown


def write_synthetic_video(path, expressions=("happy", "surprise"), frames_each: int = 20, fps: float = 30,
                          step: int = 2) -> Path:
    """A 640x480 mp4 of ``synthetic_photo(e)`` for each expression in turn, the face moving ``step`` px per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    if not writer.isOpened():
        raise ValueError(f"OpenCV cannot write {path} with the mp4v codec")
    for k, (e, i) in enumerate(itertools.product(expressions, range(frames_each))):
        writer.write(np.roll(cv2.cvtColor(synthetic_photo(e), cv2.COLOR_RGB2BGR), step * k, axis=1))
    writer.release()
    return Path(path)


def _open(source) -> cv2.VideoCapture:
    """An opened capture of a video file or camera index, or a one-line error that names it."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own lines would follow our one-line error
    if isinstance(source, int):
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # OpenCV's V4L2 warnings, same reason
        cap = cv2.VideoCapture(source)
        cv2.utils.logging.setLogLevel(level)
        if not cap.isOpened():
            raise ValueError(f"camera {source} cannot be opened (is it connected, and free?)")
        return cap
    if not Path(source).is_file():
        raise FileNotFoundError(f"no video file at {source}")
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise ValueError(f"cannot read {source} as a video (OpenCV could not open it: corrupt, or not a video?)")
    return cap


def _draw(frame: np.ndarray, box: list[int], track: Track, label: str, classes) -> None:
    """Box and label (as ``annotate`` draws them), and a bar per class beside the box: the smoothed probabilities."""
    l, t, r, _ = box
    thick = max(1, round(max(frame.shape[:2]) / 400))  # as annotate's
    draw_label(frame, box, f"#{track.id} {label} {track.probs.max():.0%}", thick)
    x = r + 6 if r + 116 <= frame.shape[1] else max(0, l - 116)  # right of the box, or left at the image's edge
    for k, (name, p) in enumerate(zip(classes, track.probs)):
        y = t + 12 * k
        cv2.putText(frame, name[:8], (x, y + 9), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(frame, (x + 50, y + 1), (x + 110, y + 9), (110, 110, 110), 1)
        cv2.rectangle(frame, (x + 50, y + 1), (x + 50 + round(60 * float(p)), y + 9),
                      (0, 200, 0) if name == label else (110, 110, 110), -1)


def predict_video(model, source, classes, out_dir=None, method: str = "auto", detect_every: int = DETECT_EVERY,
                  smooth: float = SMOOTH, max_age: int = MAX_AGE, face_size: int = FACE_SIZE) -> dict:
    """Track and classify the faces of video file or camera index ``source``; returns a summary.

    Writes the annotated mp4 and the JSON lines under ``out_dir``, or the lines to stdout. Each
    line: ``frame``, ``time`` (s; the wall clock for a camera), ``faces`` with ``track``, ``box``,
    ``label``, ``probabilities`` (smoothed) and ``raw``. Ctrl-C ends the run cleanly, the files
    complete up to the last whole frame. A camera shows a window (q quits) when there is a
    display and no ``out_dir``, and OpenCV has a GUI.
    """
    if detect_every < 1 or not 0 < smooth <= 1:
        raise ValueError(f"--detect-every must be 1 or more and --smooth in (0, 1]; got {detect_every}, {smooth}")
    camera = isinstance(source, int)
    name = f"camera {source}" if camera else str(source)
    cap = _open(source)
    ok, frame = cap.read()
    if not ok:
        cap.release()
        raise ValueError(f"{name}: no frame could be read (an empty or corrupt video, or a camera that sends nothing)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else 30.0  # webcams often report 0
    mp4 = jsonl = writer = None
    if out_dir is not None:
        mp4, jsonl_path = reserve_outputs(out_dir, f"camera{source}" if camera else Path(source).stem, (".mp4", ".jsonl"))
        jsonl = open(jsonl_path, "w")
        writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
        if not writer.isOpened():
            jsonl.close()
            Path(jsonl.name).unlink()
            mp4.unlink()
            raise ValueError(f"OpenCV cannot write {mp4} with the mp4v codec (an OpenCV built without FFmpeg?)")
    show = camera and out_dir is None and bool(os.environ.get("DISPLAY"))
    tracker, index, stopped, start = Tracker(max_age), 0, False, time.monotonic()
    try:
        while ok:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if index % detect_every == 0:
                found = faces_in(rgb, method, size=face_size)
                tracks = tracker.update([f["box"] for f in found], index)
            else:
                tracks = tracker.shown
                found = [{"points": (p := predict_landmarks(rgb, t.box)), "face": align_face(rgb, p, face_size)}
                         for t in tracks]
            raw = classify_faces(model, [f["face"] for f in found],
                                 [aligned_points(f["points"], face_size) for f in found]).numpy() if found else []
            line = {"frame": index, "time": round(time.monotonic() - start if camera else index / fps, 3), "faces": []}
            for track, p in zip(tracks, raw):
                track.probs = p if track.probs is None else smooth * p + (1 - smooth) * track.probs
                label, b = classes[int(track.probs.argmax())], track.box
                box = [b.left, b.top, b.right, b.bottom]
                line["faces"].append({"track": track.id, "box": box, "label": label,
                                      "probabilities": {c: round(float(v), 4) for c, v in zip(classes, track.probs)},
                                      "raw": {c: round(float(v), 4) for c, v in zip(classes, p)}})
                if writer is not None or show:
                    _draw(frame, box, track, label, classes)
            if writer is not None:
                writer.write(frame)
            print(json.dumps(line), file=jsonl or sys.stdout, flush=jsonl is None)
            index += 1
            if show:
                try:
                    cv2.imshow("fercore", frame)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
                except cv2.error:  # opencv-python-headless has no GUI: keep printing the lines
                    print("note: this OpenCV has no GUI (opencv-python-headless); no window", file=sys.stderr)
                    show = False
            ok, frame = cap.read()
    except KeyboardInterrupt:
        stopped = True
    finally:
        cap.release()
        if writer is not None:
            writer.release()
            jsonl.close()
        if show:
            cv2.destroyAllWindows()
    seconds = time.monotonic() - start
    return {"video": name, "frames": index, "seconds": round(seconds, 3), "fps": round(index / max(seconds, 1e-9), 1),
            "tracks": tracker.next_id - 1, "annotated": mp4 and str(mp4), "jsonl": jsonl and jsonl.name,
            "stopped": stopped}
