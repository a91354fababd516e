"""Predict expressions in photos: read -> detect -> landmarks -> align -> model (``python -m fercore predict``).

``predict_image`` returns, for every face found, its box, the predicted label and all class
probabilities. A photo without a face is a result with an empty ``faces`` list and a
``message``, not an error; a missing or unreadable file raises an error that names it.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from .data.images import SIZE as FACE_SIZE
from .faces import faces_in, read_image
from .faces.regions import aligned_points, face_regions
from .transforms import predict_proba

# A 640x480 JPEG of one synthetic happy face, shipped with the package so that notebooks and
# tests can run the whole pipeline offline; written by ``synthetic_photo`` (see its docstring).
SAMPLE_PHOTO = Path(__file__).parent / "assets" / "synthetic_face.jpg"


def synthetic_photo(expression: str = "happy", character: int = 2) -> np.ndarray:
    """A 640x480 RGB "photo": one 200-px synthetic face on a plain grey background.

    ``SAMPLE_PHOTO`` is ``cv2.imwrite(path, cv2.cvtColor(synthetic_photo(), cv2.COLOR_RGB2BGR),
    [cv2.IMWRITE_JPEG_QUALITY, 90])``.
    """
    from .data.synthetic import FaceParams, render_face

    face, _ = render_face(FaceParams.expression(expression, 1.0, character=character), size=200, rgb=True)
    image = np.full((480, 640, 3), 190, np.uint8)
    image[140:340, 220:420] = face
    return image


def predict_image(model: nn.Module, path, classes, method: str = "auto", face_size: int = FACE_SIZE) -> dict:
    """Faces in the image at ``path`` with their boxes, labels and probabilities.

    ``model``: a trained model (``fercore.train.load_model``), on any device. Faces are aligned
    at ``face_size`` px in grey, the form of every dataset's images, so that a face from a photo
    looks like those the model was trained on; ``fercore.transforms.predict_proba`` then gives
    it to the model exactly as the Trainer does (crop or resize, channels, normalisation). A model
    that eats landmark regions (Prior Attention) gets them cut from that aligned face at its
    landmarks, by the function that cuts a dataset's (``fercore.faces.regions.cut_blocks``).
    """
    image = read_image(path)
    found = faces_in(image, method=method, size=face_size)
    result = {"image": str(path), "width": image.shape[1], "height": image.shape[0], "faces": []}
    if not found:
        result["message"] = f"no face found in {path}"
        return result
    probs = classify_faces(model, [f["face"] for f in found], [aligned_points(f["points"], face_size) for f in found])
    for f, p in zip(found, probs):
        b = f["box"]
        result["faces"].append({"box": [b.left, b.top, b.right, b.bottom], "detector": b.method,
                                "label": classes[int(p.argmax())],
                                "probabilities": {c: round(float(v), 4) for c, v in zip(classes, p)}})
    return result


def classify_faces(model: nn.Module, faces, points=None) -> torch.Tensor:
    """Class probabilities ``(N, K)`` of aligned grey faces (``(s, s)`` uint8 arrays) via ``predict_proba``.

    ``points``: each face's 68 landmarks in its own coordinates, needed by models that eat
    landmark regions (``fercore.faces.regions.face_regions`` turns the faces into their input).
    """
    return predict_proba(model, face_regions(np.stack(faces), points, getattr(model, "default_cfg", None) or {}))


def draw_label(image: np.ndarray, box, text: str, thick: int) -> None:
    """Draw ``box`` (left, top, right, bottom) and ``text`` above it on the BGR ``image``, in place."""
    left, top, right, bottom = box
    cv2.rectangle(image, (left, top), (right, bottom), (0, 200, 0), thick)
    origin, scale = (left, max(top - 4 * thick, 12)), 0.5 * thick
    # A black outline under the green label keeps it readable on light and dark photos alike.
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3 * thick, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 220, 0), thick, cv2.LINE_AA)


def annotate(path, result: dict, out_dir) -> Path:
    """Write a copy of the image with each face's box and label as ``out_dir/STEM_pred.png``; return its path.

    Never writes over an existing file (an input, an earlier run's output, another input's copy
    with the same stem such as ``face.gif`` and ``face.webp``): the name then gets a number,
    ``STEM_pred_1.png``, ``STEM_pred_2.png``, ...
    """
    image = cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(image.shape[:2]) / 400))
    for face in result["faces"]:
        draw_label(image, face["box"], f'{face["label"]} {face["probabilities"][face["label"]]:.0%}', thick)
    (target,) = reserve_outputs(out_dir, Path(path).stem, (".png",))
    target.write_bytes(cv2.imencode(".png", image)[1].tobytes())  # our own empty file, created just now
    return target


def reserve_outputs(out_dir, stem: str, suffixes=(".png",)) -> list[Path]:
    """Create, empty, ``out_dir/STEM_pred[_N]SUFFIX`` for every suffix, with the first N free for all of them.

    Each is created with mode ``x``, which fails if the file exists, even one another process
    created a moment ago: what a user or an earlier run left there is never written over, and
    two runs writing to one folder get distinct names. Photos and videos both name their outputs here.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        paths, made = [out_dir / f"{stem}_pred{f'_{n}' if n else ''}{suffix}" for suffix in suffixes], []
        try:
            for target in paths:
                open(target, "xb").close()
                made.append(target)
            return paths
        except FileExistsError:
            for target in made:  # give back this number's files that we took
                target.unlink()
