"""Align faces to FER2013's framing, and cut boxes when there are no landmarks.

``align_face`` is the usual similarity alignment on eye centres (as in dlib's ``get_face_chip``
and most FER preprocessing): rotate about the eyes' midpoint so that the eye line is level, scale
so that the eyes are ``EYE_DISTANCE`` of the output width apart, and place their midpoint at
``(0.5, EYE_Y)`` of the output. With these fractions a face fills the frame roughly from the brows
(~0.2 of the height) to the chin (~0.97), which is how FER2013's 48x48 faces are framed.
"""
from __future__ import annotations

import cv2
import numpy as np

from .detect import Box, _gray, detect_faces
from .landmarks import predict_landmarks

EYE_DISTANCE = 0.42  # distance between the eye centres, as a fraction of the output width
EYE_Y = 0.38         # height of the eye line, as a fraction of the output height
RIGHT_EYE, LEFT_EYE = slice(36, 42), slice(42, 48)  # iBUG order: the subject's right eye is on image left


def alignment_matrix(points, size: int = 48) -> np.ndarray:
    """The 2x3 similarity transform taking ``points``' eye centres to their place in the output."""
    p = np.asarray(points, np.float64).reshape(68, 2)
    a, b = p[RIGHT_EYE].mean(0), p[LEFT_EYE].mean(0)
    dx, dy = b - a
    angle = np.degrees(np.arctan2(dy, dx))
    scale = EYE_DISTANCE * size / max(np.hypot(dx, dy), 1e-6)
    centre = (a + b) / 2
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), float(scale))
    m[:, 2] += np.array([0.5 * size, EYE_Y * size]) - 0.5 - centre  # pixel centres are at k + 0.5
    return m


def align_face(image: np.ndarray, points, size: int = 48, gray: bool = True) -> np.ndarray:
    """Eye-aligned ``(size, size)`` uint8 grayscale face (``(size, size, 3)`` RGB if ``gray=False``)."""
    img = _gray(image) if gray else np.asarray(image)
    return cv2.warpAffine(img, alignment_matrix(points, size), (size, size), flags=cv2.INTER_AREA
                          if size < 64 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_box(image: np.ndarray, box: Box, size: int = 48, margin: float = 0.1, gray: bool = True) -> np.ndarray:
    """The square around ``box`` grown by ``margin`` of its size on each side, resized to ``size``.

    Parts outside the image are filled by replicating the border.
    """
    img = _gray(image) if gray else np.asarray(image)
    side = max(box.width, box.height) * (1 + 2 * margin)
    cx, cy = (box.left + box.right) / 2 - 0.5, (box.top + box.bottom) / 2 - 0.5  # pixel k spans [k-.5, k+.5]
    s = size / side
    m = np.array([[s, 0, (size - 1) / 2 - s * cx], [0, s, (size - 1) / 2 - s * cy]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def faces_in(image: np.ndarray, method: str = "auto", size: int = 48, gray: bool = True) -> list[dict]:
    """Detect -> landmarks -> align for every face: ``[{"box", "points", "face"}]``, largest first."""
    return [{"box": b, "points": (p := predict_landmarks(image, b)), "face": align_face(image, p, size, gray)}
            for b in detect_faces(image, method)]
