"""Landmarks per second of ``dataset_landmarks`` on synthetic 48x48 faces, and their pixel error; prints JSON.

Each image is one pre-cropped face (``box="whole"``, as for FER2013), so the time is dlib's
68-point predictor plus the upsampling of the 48x48 crop to ``MIN_FACE`` px. The synthetic
faces know their true landmarks, so the mean point-to-point error (pixels at 48x48) and the
same error divided by the true inter-ocular distance are printed beside the speed. ``--box
detect`` times detection (dlib HOG, then Haar) as well. No cache is read or written.

    python benchmarks/landmark_speed.py --n 500
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from fercore.data import load_dataset
from fercore.faces import dataset_landmarks, predict_landmarks
from fercore.faces.detect import Box
from fercore.faces.landmarks import landmark_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of faces (default 500)")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels (default 48, FER2013's)")
    parser.add_argument("--box", default="whole", choices=("whole", "detect"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    faces = load_dataset("synthetic", None, "test", n=args.n, size=args.size, seed=args.seed)
    predict_landmarks(faces.images[0, 0].numpy(), Box(0, 0, args.size, args.size))  # loads dlib's model
    start = time.perf_counter()
    points = dataset_landmarks(faces, box=args.box, cache_dir=False, progress=False)
    seconds = time.perf_counter() - start

    result = {"images": args.n, "size": f"{args.size}x{args.size}", "box": args.box, "seconds": round(seconds, 3),
              "landmarks_per_second": round(args.n / seconds, 1), "ms_per_image": round(1000 * seconds / args.n, 3),
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    truth = faces.meta.get("landmarks")
    if truth is not None:
        found = ~np.isnan(points).any((1, 2))
        dist = np.linalg.norm(points[found] - truth[found], axis=2).mean(1)  # per face
        mean_shape = np.linalg.norm(truth.mean(0) - truth, axis=2).mean()
        result |= {"found": int(found.sum()), "mean_error_px": round(float(dist.mean()), 3),
                   "median_error_px": round(float(np.median(dist)), 3),
                   "p90_error_px": round(float(np.percentile(dist, 90)), 3),
                   "mean_error_over_interocular": round(float(landmark_error(points[found], truth[found]).mean()), 4),
                   "mean_shape_error_px": round(float(mean_shape), 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
