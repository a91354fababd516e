"""68 facial landmarks (iBUG 300-W order) from dlib's shape predictor.

The predictor is Kazemi & Sullivan's ensemble of regression trees (CVPR 2014), as trained by dlib
on iBUG 300-W and shipped by the ``face-recognition-models`` package. It was trained on faces
~100-200 px wide, so faces smaller than ``MIN_FACE`` (FER2013's 48x48 crops) are upsampled first
and the points mapped back to the input's pixel coordinates.

``dataset_landmarks`` runs it over a whole ``FERDataset`` and caches the result per dataset.
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import cv2
import numpy as np

from ..data.cache import cached_arrays, content_digest, default_cache_dir, fingerprint
from ..env import landmark_model_path
from .detect import DETECT_SIZE, Box, _gray, detect_faces

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


# --------------------------------------------------------------------------- whole datasets
BOXES = ("whole", "detect")
CACHE_FORMAT = 1  # bump when what dataset_landmarks computes changes, so old caches are not read


def _image_digest(images) -> str:
    """sha1 of the images' bytes, shape and dtype: the dataset's identity in the cache key."""
    array = np.ascontiguousarray(images.numpy() if hasattr(images, "numpy") else np.asarray(images))
    h = hashlib.sha1(f"{array.shape}|{array.dtype}|".encode())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _model_digest(path: str, size: int, mtime_ns: int) -> str:
    """blake2b of the predictor file's bytes, once per process and file version (about 0.4 s for its 100 MB)."""
    return content_digest([path])


def _cache_key(dataset, box: str) -> tuple[str, list[Path], dict]:
    """``(tag, files, extra)`` for ``cached_arrays``: dataset name and split in the file name, the
    image bytes, the settings and the predictor file's bytes in the hash."""
    model = landmark_model_path()
    if model is None:
        _predictor()  # raises the clear "install face-recognition-models" error
    label = "-".join(s for s in (getattr(dataset, "name", ""), getattr(dataset, "split", "")) if s)
    tag = "landmarks" + (f"-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}" if label else "")
    extra = {"what": "landmarks68", "format": CACHE_FORMAT, "images": _image_digest(dataset.images),
             "box": box, "min_face": MIN_FACE}
    if box == "detect":
        extra |= {"detect": "auto", "detect_size": DETECT_SIZE}
    st = Path(model).stat()
    extra["predictor"] = _model_digest(str(Path(model).resolve()), st.st_size, st.st_mtime_ns)
    return tag, [], extra


def _check_box(box: str) -> None:
    if box not in BOXES:
        raise ValueError(f"unknown box {box!r}; valid: {', '.join(BOXES)}")


def landmarks_cache_path(dataset, *, box: str = "whole", cache_dir=None) -> Path | None:
    """Where ``dataset_landmarks(dataset, box=box, cache_dir=cache_dir)`` keeps its result
    (the file may not exist yet); None when ``cache_dir=False``."""
    _check_box(box)
    if cache_dir is False:
        return None
    tag, files, extra = _cache_key(dataset, box)
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / f"{tag}-{fingerprint(files, extra)}.npz"


def _compute(images, box: str, progress: bool, desc: str) -> np.ndarray:
    from tqdm.auto import tqdm

    out = np.full((len(images), 68, 2), np.nan, np.float32)
    for i in tqdm(range(len(images)), desc=desc, unit="img", disable=not progress):
        image = images[i].permute(1, 2, 0).numpy()  # (H, W, C) view, no copy of the dataset
        image = image[..., 0] if image.shape[2] == 1 else image
        if box == "whole":
            face = Box(0, 0, image.shape[1], image.shape[0])
        else:
            faces = detect_faces(image, "auto")
            if not faces:
                continue  # no face: the row stays NaN
            face = faces[0]  # the largest
        out[i] = predict_landmarks(image, face)
    return out


def dataset_landmarks(dataset, *, box: str = "whole", cache_dir=None, progress: bool = True,
                      store: bool = False) -> np.ndarray:
    """68 landmarks of every image of a ``FERDataset``: ``(N, 68, 2)`` float32 (x, y) in the image's pixels.

    ``box="whole"`` takes the whole image as the face box (datasets of pre-cropped faces: FER2013,
    FERPlus, CK+48, the synthetic faces); ``box="detect"`` runs ``detect_faces(image, "auto")``
    (dlib HOG, then OpenCV Haar) and uses the largest face. A row is all NaN where no face was
    found (only possible with ``box="detect"``); ``np.isnan(points).any((1, 2))`` marks those.
    Points are not clipped: the predictor may put the jaw a pixel or two past the image's edge.

    The result is cached per dataset as ``landmarks-<name>-<split>-<hash>.npz`` in ``cache_dir``
    (default ``$FERCORE_CACHE`` or ``~/.cache/fercore``, never the data folder); the hash covers
    the images' bytes, ``box`` and the predictor file, so a second call reads the file and never
    runs dlib. ``cache_dir=False`` computes without reading or writing a cache.
    ``landmarks_cache_path`` says where the file is.

    ``store=True`` also puts the result in ``dataset.meta["landmarks"]``, replacing what was
    there (the synthetic faces keep their true landmarks under that key: leave ``store`` off to
    compare against them).
    """
    _check_box(box)
    desc = f"landmarks {getattr(dataset, 'name', '')} {getattr(dataset, 'split', '')}".rstrip()
    build = lambda: {"landmarks": _compute(dataset.images, box, progress, desc)}  # noqa: E731
    if cache_dir is False:
        points = build()["landmarks"]
    else:
        tag, files, extra = _cache_key(dataset, box)
        points = cached_arrays(tag, files, build, cache_dir, extra)["landmarks"]
    if store:
        dataset.meta["landmarks"] = points
    return points


def landmark_error(points, truth, idx=slice(None)) -> np.ndarray:
    """Per-face mean distance of ``points`` from ``truth`` (both ``(N, 68, 2)``) over the landmarks ``idx``,
    divided by the true inter-ocular distance (eye centres): the usual normalised mean error (NME)."""
    points, truth = np.asarray(points, float), np.asarray(truth, float)
    iod = np.linalg.norm(truth[:, 36:42].mean(1) - truth[:, 42:48].mean(1), axis=1)
    return np.linalg.norm(points[:, idx] - truth[:, idx], axis=2).mean(1) / iod

