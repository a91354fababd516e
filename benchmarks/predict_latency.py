"""Milliseconds per image for ``fercore predict`` on a 640x480 photo with one face; prints JSON.

Stages: detection (dlib HOG), 68 landmarks, eye alignment, the model on the aligned face.
The photo is a synthetic face on a plain background (no download needed); the model's
weights do not change its speed, so an untrained model is used unless --checkpoint is given.
Target (issue 4): 50 ms or less on a 2-core CPU.

``--video`` instead times ``fercore.video.predict_video`` end to end (decode, detection every
``--detect-every`` frames, landmarks, the model, smoothing, drawing, mp4 and JSON-lines output)
on a synthetic 640x480 one-face video written to a temporary folder, and reports frames per
second. Target: 25 fps or more on a 2-core CPU.

    python benchmarks/predict_latency.py --model vgg_fer
    python benchmarks/predict_latency.py --model vgg_fer --video
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fercore.faces import align_face, detect_faces, faces_in, predict_landmarks
from fercore.labels import classes_for
from fercore.models import create_model
from fercore.predict import FACE_SIZE, synthetic_photo
from fercore.train import load_model
from fercore.transforms import predict_proba
from fercore.video import DETECT_EVERY, predict_video, write_synthetic_video


def photo() -> np.ndarray:
    return synthetic_photo("neutral")


def video_fps(model, args) -> dict:
    """Frames per second of ``predict_video`` with output files, after a warm-up that loads dlib's models."""
    predict_proba(model, torch.from_numpy(faces_in(photo())[0]["face"])[None, None])
    with tempfile.TemporaryDirectory() as tmp:
        each = max(1, args.frames // 3)
        clip = write_synthetic_video(Path(tmp) / "clip.mp4", ("neutral", "happy", "surprise"), frames_each=each)
        s = predict_video(model, clip, classes_for(model.default_cfg["num_classes"]), out_dir=tmp,
                          detect_every=args.detect_every)
    return {"model": args.checkpoint or args.model, "video": f"640x480, one moving face, {3 * each} frames",
            "detect_every": args.detect_every, "threads": torch.get_num_threads(), "frames": s["frames"],
            "tracks": s["tracks"], "seconds": s["seconds"], "fps": s["fps"],
            "ms_per_frame": round(1000 * s["seconds"] / s["frames"], 2), "target_fps": 25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg_fer")
    parser.add_argument("--checkpoint", help="a best.pt to time instead of an untrained --model")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--video", action="store_true", help="frames per second on a video instead")
    parser.add_argument("--frames", type=int, default=150, help="--video: length of the video")
    parser.add_argument("--detect-every", type=int, default=DETECT_EVERY, help="--video: as predict's option")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint) if args.checkpoint else create_model(args.model).eval()
    if args.video:
        print(json.dumps(video_fps(model, args), indent=2))
        return
    image, size = photo(), FACE_SIZE  # predict_image's alignment size; the model's input path does the rest
    stages = {"detect": [], "landmarks": [], "align": [], "model": [], "total": []}
    for i in range(args.repeats + 3):  # the first runs load dlib's models and warm up torch
        t0 = time.perf_counter()
        boxes = detect_faces(image)
        t1 = time.perf_counter()
        points = predict_landmarks(image, boxes[0])
        t2 = time.perf_counter()
        face = align_face(image, points, size)
        t3 = time.perf_counter()
        predict_proba(model, torch.from_numpy(face)[None, None])
        t4 = time.perf_counter()
        if i >= 3:
            for key, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                stages[key].append(1000 * seconds)
    result = {"model": args.checkpoint or args.model, "image": "640x480, one face", "faces_found": len(boxes),
              "repeats": args.repeats, "threads": torch.get_num_threads(),
              **{f"{k}_ms": round(statistics.median(v), 2) for k, v in stages.items()},
              "target_ms": 50}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
