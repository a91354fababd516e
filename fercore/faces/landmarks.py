"""68 facial landmarks (iBUG 300-W order) from dlib's shape predictor.

The predictor is Kazemi & Sullivan's ensemble of regression trees (CVPR 2014), as trained by dlib
on iBUG 300-W and shipped by the ``face-recognition-models`` package. It was trained on faces
~100-200 px wide, so faces smaller than ``MIN_FACE`` (FER2013's 48x48 crops) are upsampled first
and the points mapped back to the input's pixel coordinates.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..env import landmark_model_path
from .detect import Box, _gray

MIN_FACE = 150  # faces narrower than this (px) are upsampled to it before predicting
_PREDICTOR: dict = {}


def _predictor():
    """Lazy singleton; a clear error when the model file is not installed."""
    if "p" not in _PREDICTOR:
        path = landmark_model_path()
        if path is None:
            raise FileNotFoundError(
                "dlib's shape_predictor_68_face_landmarks.dat was not found: install the "
                "face-recognition-models package (pip install face-recognition-models)")
        import dlib
        _PREDICTOR["p"] = dlib.shape_predictor(str(path))
    return _PREDICTOR["p"]


def predict_landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """``(68, 2)`` float32 (x, y) landmarks of the face in ``box``, in ``image``'s pixel coordinates."""
    import dlib

    predictor = _predictor()
    gray = _gray(image)
    h, w = gray.shape
    f = max(1.0, MIN_FACE / max(min(box.width, box.height), 1))
    if f > 1:  # cut the face with a margin, upsample that region only, predict, map back
        m = max(box.width, box.height) // 2 + 1
        x0, y0 = max(0, box.left - m), max(0, box.top - m)
        x1, y1 = min(w, box.right + m), min(h, box.bottom + m)
        gray = cv2.resize(gray[y0:y1, x0:x1], (round((x1 - x0) * f), round((y1 - y0) * f)),
                          interpolation=cv2.INTER_CUBIC)
    else:
        x0 = y0 = 0
    rect = dlib.rectangle(round((box.left - x0) * f), round((box.top - y0) * f),
                          round((box.right - x0) * f) - 1, round((box.bottom - y0) * f) - 1)
    shape = predictor(gray, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    return pts / f + np.array([x0, y0], np.float32)
