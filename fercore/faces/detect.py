"""Face detection: dlib's HOG detector, OpenCV's Haar cascade as fallback, or the whole image.

* ``"hog"``: ``dlib.get_frontal_face_detector()`` (Dalal & Triggs HOG + linear SVM, King 2009).
* ``"haar"``: OpenCV's Viola-Jones cascade ``haarcascade_frontalface_default.xml``.
* ``"auto"``: HOG, then Haar when HOG finds nothing.
* ``"whole"``: the whole image is the face, for datasets of pre-cropped faces (FER2013's 48x48).

Images whose long side exceeds ``DETECT_SIZE`` are downscaled for detection and the boxes scaled
back, so a 12 MP photo costs about what a 640x480 frame does.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DETECT_SIZE = 640  # long side, in pixels, that detection runs at
METHODS = ("auto", "hog", "haar", "whole")
_DETECTORS: dict = {}


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the input image (right/bottom exclusive)."""
    left: int
    top: int
    right: int
    bottom: int
    score: float = 1.0
    method: str = "whole"

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def contains(self, points, tol: float = 0.0) -> bool:
        """Whether every ``(x, y)`` row of ``points`` lies inside the box (grown by ``tol`` px)."""
        p = np.asarray(points, float).reshape(-1, 2)
        return bool(np.all((p[:, 0] >= self.left - tol) & (p[:, 0] <= self.right + tol)
                           & (p[:, 1] >= self.top - tol) & (p[:, 1] <= self.bottom + tol)))


def _detector(name: str):
    """Module-level lazy singletons: building a detector costs more than running it once."""
    if name not in _DETECTORS:
        if name == "hog":
            import dlib
            _DETECTORS[name] = dlib.get_frontal_face_detector()
        else:
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            if cascade.empty():
                raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")
            _DETECTORS[name] = cascade
    return _DETECTORS[name]


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
    return image


def _hog(gray: np.ndarray, upsample: int) -> list[tuple]:
    rects, scores, _ = _detector("hog").run(gray, upsample, 0.0)
    return [(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s)) for r, s in zip(rects, scores)]


def _haar(gray: np.ndarray, upsample: int) -> list[tuple]:
    f = 2 ** upsample
    g = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR) if f > 1 else gray
    found = _detector("haar").detectMultiScale(cv2.equalizeHist(g), scaleFactor=1.1, minNeighbors=5,
                                              minSize=(24, 24))
    return [(x / f, y / f, (x + w) / f, (y + h) / f, 1.0) for x, y, w, h in np.reshape(found, (-1, 4))]


def detect_faces(image: np.ndarray, method: str = "auto", upsample: int | None = None) -> list[Box]:
    """Faces in ``image`` (uint8 RGB or gray) as ``Box`` es, largest first.

    ``upsample`` doubles the detection image that many times to find small faces; by default 1 for
    images whose long side is under ``DETECT_SIZE`` / 2 and 0 otherwise. Boxes are clipped to the image.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    gray = _gray(image)
    h, w = gray.shape
    if method == "whole":
        return [Box(0, 0, w, h, 1.0, "whole")]
    scale = min(1.0, DETECT_SIZE / max(h, w))
    small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else gray
    if upsample is None:
        upsample = 1 if max(small.shape) < DETECT_SIZE // 2 else 0
    found, used = [], method
    for used in (("hog", "haar") if method == "auto" else (method,)):
        found = (_hog if used == "hog" else _haar)(small, upsample)
        if found:
            break
    boxes = [Box(max(0, round(l / scale)), max(0, round(t / scale)), min(w, round(r / scale)),
                 min(h, round(b / scale)), s, used) for l, t, r, b, s in found]
    return sorted((b for b in boxes if b.area > 0), key=lambda b: b.area, reverse=True)
