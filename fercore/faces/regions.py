"""Face regions: the landmark blocks of Prior Attention, and the crops of the Region Attention Network.

**Prior Attention** (Turner & Gat, "Facial Expression Recognition Using Prior Attention", 2022)
attends before the network: two blocks are cut out of the face, brows+eyes (iBUG points 17-26
and 36-47) and mouth (48-67), each the box around its points' extremes plus a margin, clipped to
the image and resized to 32x32 grey (the aspect ratio is not kept, as in the authors' code).

The margin. The paper says "10 units"; the authors' code adds 30 px on FERG's 256-px images,
0.117 of the image side. Here the margin is a fraction of the *face size*, the larger side of
the box around all 68 points, so that one setting cuts the same relative box at 48 px and at
256 px. FERG-like faces span about 0.6 of their frame (our synthetic ones do; FER2013's dlib fits
about 0.87), so the authors' 30 px is about 0.117 / 0.6 = 0.2 of the face size: ``MARGIN``.

A **plausible fit** (``plausible``) has finite points; a face size between 0.3 and 1.5 of the
image side (the datasets hold cropped faces); points 17-67 inside the image grown by 10% of its
side (the jaw may stray further); an inter-ocular distance (eye centres) between 0.25 and 0.65 of
the face size; and, along the normal to the eye line (so a tilted head passes), brows above eyes
above the nose tip above the mouth's centre. A face without one is cut at the dataset's **mean
shape** (the mean of its plausible fits), so no image is dropped; their count is reported.

**The authors' bugs, on request** (``AUTHORS_BUGS``; never by default). Their code cut every
block from a leftover global image, the last one it loaded, at each face's own landmarks
(``"leftover_image"``: the box moves, the face does not), and took a box's top edge from its
right-most point instead of its smallest y (``"top_from_rightmost"``). A loader's data argument
``regions_bug`` (``--data-arg regions_bug=leftover_image``; several joined by commas) marks its
faces (``meta["regions_bug"]``) so that ``model_regions`` cuts them the authors' way, in training
and in ``evaluate`` (which reuses the checkpoint's data arguments) alike, so their effect on
accuracy can be measured. ``predict`` cuts every face from its own image.

``model_regions(dataset, cfg)`` is the one hook: the dataset as the model named by ``cfg`` eats it
(unchanged for whole-face models), called by ``run_experiment`` and ``evaluate`` alike; its photo
counterpart ``face_regions(faces, points, cfg)`` does the same for aligned faces from ``predict``, the
video path and the widgets, with the points moved into the aligned face by ``aligned_points``. Both
cut with ``cut_blocks``. A face from a photo always has dlib's fit (the detector found it), so it
is cut at its own points, plausible or not.

**RAN's crops** (Wang et al., "Region Attention Networks for Pose and Occlusion Robust Facial
Expression Recognition", TIP 2020) are cut inside the model, batched, from the face tensor it is
given (after augmentation, on the training device), so the dataset, the ten-crop test and
``predict`` need nothing new. ``RAN_CROPS`` holds the paper's fixed set as fractions of the face:
top-left, top-right and centre-down crops of 0.75 of the side, and two centre crops of 0.9 and 0.85,
then the whole face, last as in the authors' code. The authors cut theirs from files with a script
they did not publish; these are the paper's description. ``landmark_boxes`` gives the alternative,
squares centred on the eyes, the nose and the mouth. ``crop_regions`` cuts and resizes any boxes
with torchvision's ``roi_align``. A model trained on the landmark crops (``ran_landmarks``) cannot
cut them itself, for they move with each face's points: ``model_regions`` cuts them once per
dataset (``landmark_regions``, at the landmark cache's points, the mean shape for a face without a
plausible fit) and stacks them as channels, as it stacks Prior Attention's blocks.
"""
from __future__ import annotations

import re

import cv2
import numpy as np
import torch

from ..data.base import FERDataset
from ..data.cache import cached_arrays
from .align import alignment_matrix
from .landmarks import _image_digest, dataset_landmarks

EYES = np.r_[17:27, 36:48]  # brows and eyes
MOUTH = np.r_[48:68]
BLOCKS = {"eyes": EYES, "mouth": MOUTH}  # channel order of the stacked blocks
MARGIN = 0.2     # of the face size (see the module docstring)
BLOCK_SIZE = 32  # the authors' block side
CACHE_FORMAT = 1  # bump when what dataset_blocks computes changes
AUTHORS_BUGS = {
    "leftover_image": "every face's blocks cut from one leftover image (the dataset's last) at that face's landmarks",
    "top_from_rightmost": "a box's top edge at the y of its right-most point, not its smallest y",
}


# RAN's fixed crops: (left, top, right, bottom) as fractions of the face; the whole face last.
RAN_CROPS = {
    "top_left": (0.0, 0.0, 0.75, 0.75),
    "top_right": (0.25, 0.0, 1.0, 0.75),
    "centre_down": (0.125, 0.25, 0.875, 1.0),
    "centre_90": (0.05, 0.05, 0.95, 0.95),
    "centre_85": (0.075, 0.075, 0.925, 0.925),
    "face": (0.0, 0.0, 1.0, 1.0),
}
# RAN's landmark-centred crops: iBUG points whose centre each square is centred on
LANDMARK_CROPS = {"right_eye": np.r_[36:42], "left_eye": np.r_[42:48], "nose": np.r_[27:36], "mouth": np.r_[48:68]}
LANDMARK_CROP_SIDE = 0.5  # of the face size: an eye's square holds the eye and its brow
REGION_KINDS = ("prior_attention", "ran_landmarks")  # default_cfg["regions"] values model_regions knows


def check_bugs(bugs) -> tuple[str, ...]:
    """``bugs`` (None, ``"a,b"`` or a list of names of ``AUTHORS_BUGS``) as a sorted tuple; unknown names are an error."""
    names = [b.strip() for b in (bugs.split(",") if isinstance(bugs, str) else bugs or ()) if b.strip()]
    unknown = [b for b in names if b not in AUTHORS_BUGS]
    if unknown:
        raise ValueError(f"regions_bug: unknown {', '.join(map(repr, unknown))}; valid: {', '.join(AUTHORS_BUGS)} "
                         "(several joined by commas)")
    return tuple(sorted(set(names)))


def bug_meta(n: int, bugs) -> dict[str, np.ndarray]:
    """The ``meta`` entry a loader given ``regions_bug=bugs`` adds to its ``n`` faces (none without bugs)."""
    names = check_bugs(bugs)
    return {"regions_bug": np.full(n, ",".join(names))} if names else {}


# iBUG index of each point's mirror image (the subject's right eye becomes the left one, and so on)
MIRROR = np.r_[16:-1:-1, 26:16:-1, 27:31, 35:30:-1, 45:41:-1, 47, 46, 39:35:-1, 41, 40,
               54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]


def mirror_points(points, width: int) -> np.ndarray:
    """The landmarks of the horizontally flipped image (``width`` px wide), in iBUG order."""
    p = _check_points(points)[..., MIRROR, :].copy()
    p[..., 0] = width - 1 - p[..., 0]
    return p


def _check_points(points) -> np.ndarray:
    p = np.asarray(points, np.float32)
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"expected 68 iBUG landmarks as (68, 2) or (N, 68, 2) (x, y) points, got shape {p.shape}")
    return p


def face_size(points) -> np.ndarray:
    """The larger side of the box around all 68 points, per face."""
    p = _check_points(points)
    return (p.max(-2) - p.min(-2)).max(-1)


def block_box(points, which: str, shape, margin: float = MARGIN, bugs=()) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixel slice bounds of block ``which`` in an image of ``shape`` (H, W).

    The box around the block's extreme points grown by ``margin`` x the face size, clipped to the
    image. Pixel ``i`` is centred on coordinate ``i`` (dlib's and OpenCV's convention); the block
    holds the pixels whose centres lie in the box, so a mirrored face gives the mirrored slice.
    ``bugs=("top_from_rightmost",)`` puts the top edge where the authors' code did.
    """
    p = _check_points(points)
    pts, m = p[BLOCKS[which]], margin * float(face_size(p))
    (x0, y0), (x1, y1) = pts.min(0) - m, pts.max(0) + m
    if "top_from_rightmost" in check_bugs(bugs):
        y0 = pts[pts[:, 0].argmax(), 1] - m
    h, w = shape[:2]
    left, top = min(max(int(np.ceil(x0)), 0), w - 1), min(max(int(np.ceil(y0)), 0), h - 1)
    right, bottom = max(min(int(np.floor(x1)), w - 1), left), max(min(int(np.floor(y1)), h - 1), top)
    return left, top, right + 1, bottom + 1


def cut_blocks(image, points, margin: float = MARGIN, size: int = BLOCK_SIZE, bugs=()) -> np.ndarray:
    """The stacked blocks ``(2, size, size)`` uint8 (brows+eyes, mouth) of one face image (H, W[, C])."""
    img = np.asarray(image)
    img = img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    out = np.empty((len(BLOCKS), size, size), np.uint8)
    for k, which in enumerate(BLOCKS):
        left, top, right, bottom = block_box(points, which, gray.shape, margin, bugs)
        crop = np.ascontiguousarray(gray[top:bottom, left:right])  # OpenCV wants unit strides
        shrink = crop.shape[0] > size or crop.shape[1] > size
        out[k] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


def aligned_points(points, size: int) -> np.ndarray:
    """``points`` (68, 2) of a photo in the coordinates of the face ``align_face(photo, points, size)`` cuts."""
    p, m = _check_points(points), alignment_matrix(points, size)
    return (p @ m[:, :2].T + m[:, 2]).astype(np.float32)


def ran_boxes(n: int, height: int, width: int, crops=None, device=None) -> torch.Tensor:
    """Pixel boxes ``(n, K, 4)`` (x0, y0, x1, y1) of ``crops`` (default ``RAN_CROPS``) in ``height`` x ``width`` faces.

    Continuous coordinates, pixel ``i`` spanning ``[i, i + 1)``: ``(0, 0, W, H)`` is the whole face
    (``crop_regions``' convention, roi_align's ``aligned=True``).
    """
    frac = torch.tensor(list((crops or RAN_CROPS).values()), dtype=torch.float32, device=device)
    return (frac * torch.tensor([width, height, width, height], dtype=torch.float32, device=device)).expand(n, -1, -1)


def landmark_boxes(points, height: int, width: int, side: float = LANDMARK_CROP_SIDE) -> torch.Tensor:
    """Squares ``(N, 5, 4)`` of ``side`` x the face size centred on each of ``LANDMARK_CROPS``, then the whole face.

    ``points`` (N, 68, 2) in the faces' pixel coordinates (pixel centres at integers, dlib's
    convention); the boxes are in ``crop_regions``' (pixel ``i`` spans ``[i, i + 1)``), may reach
    outside the face (roi_align reads zeros there) and are float32 like ``ran_boxes``.
    """
    p = _check_points(points).reshape(-1, 68, 2)
    half = (side * face_size(p) / 2)[:, None, None]
    centres = np.stack([p[:, idx].mean(1) for idx in LANDMARK_CROPS.values()], 1) + 0.5
    boxes = np.concatenate([centres - half, centres + half], -1)
    whole = np.broadcast_to(np.array([0, 0, width, height], np.float32), (len(p), 1, 4))
    return torch.from_numpy(np.concatenate([boxes, whole], 1).astype(np.float32))


def crop_regions(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The regions ``boxes`` (N, K, 4) of faces ``x`` (N, C, H, W), each resized to ``size``: ``(N, K, C, size, size)``.

    torchvision's ``roi_align`` (bilinear, adaptive sampling: a region shrunk to half its side
    averages 2x2 samples per output pixel; one the output's size is copied exactly), batched on
    ``x``'s device, differentiable with respect to ``x``.
    """
    from torchvision.ops import roi_align

    n, k = boxes.shape[:2]
    out = roi_align(x, list(boxes.to(x.dtype).unbind(0)), output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)
    return out.view(n, k, x.shape[1], size, size)


def landmark_regions(images: torch.Tensor, points, size: int, chunk: int = 2048) -> torch.Tensor:
    """RAN's landmark crops of grey faces ``images`` (N, 1, H, W) uint8 at ``points`` (N, 68, 2), stacked as
    channels: ``(N, 5, size, size)`` uint8 (``LANDMARK_CROPS``' squares, then the whole face)."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey faces (N, 1, H, W), got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    boxes = landmark_boxes(points, h, w)
    if len(boxes) != len(images):
        raise ValueError(f"{len(images)} faces but {len(boxes)} sets of landmarks")
    out = [crop_regions(images[i:i + chunk].float(), boxes[i:i + chunk], size)[:, :, 0]
           for i in range(0, len(images), chunk)]
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


def face_regions(faces, points, cfg: dict, margin: float = MARGIN) -> torch.Tensor:
    """Grey faces ``(N, s, s)`` uint8 as the model of ``cfg`` eats them: the photo path's ``model_regions``.

    ``(N, 1, s, s)`` for whole-face models; for ``"prior_attention"`` the stacked blocks that
    ``cut_blocks`` cuts, for ``"ran_landmarks"`` the crops ``landmark_regions`` cuts, at ``points`` (N, 68, 2), each face's landmarks in its own coordinates
    (``aligned_points`` for faces from ``align_face``).
    """
    faces = np.asarray(faces)
    if faces.ndim != 3:
        raise ValueError(f"expected grey faces as (N, H, W) uint8, got shape {faces.shape}")
    kind = cfg.get("regions")
    if kind is None:
        return torch.from_numpy(faces)[:, None]
    if kind not in REGION_KINDS:
        raise ValueError(f"unknown regions {kind!r} in the model's default_cfg; valid: {', '.join(REGION_KINDS)}")
    if points is None or len(points) != len(faces):
        noun = "blocks" if kind == "prior_attention" else "crops"
        raise ValueError(f"the model eats {kind} {noun}: give the 68 landmarks of each of the {len(faces)} faces")
    if kind == "ran_landmarks":
        return landmark_regions(torch.from_numpy(faces)[:, None], points, cfg["input_size"][-1])
    return torch.from_numpy(np.stack([cut_blocks(f, p, margin, cfg["input_size"][-1]) for f, p in zip(faces, points)]))


def plausible(points, shape) -> np.ndarray:
    """Which fits of ``points`` (N, 68, 2) pass the checks of the module docstring, in an image of ``shape`` (H, W)."""
    p = _check_points(points).reshape(-1, 68, 2).astype(np.float64)
    h, w = shape[:2]
    side = min(h, w)
    with np.errstate(invalid="ignore"):  # NaN rows (no face found) fail every test
        size = face_size(p)
        inner = p[:, 17:]
        inside = ((inner >= -0.1 * side) & (inner <= np.array([w, h]) - 1 + 0.1 * side)).all((1, 2))
        right_eye, left_eye = p[:, 36:42].mean(1), p[:, 42:48].mean(1)
        eye_line = left_eye - right_eye
        iod = np.linalg.norm(eye_line, axis=1)
        down = np.stack([-eye_line[:, 1], eye_line[:, 0]], 1) / np.maximum(iod, 1e-6)[:, None]  # y grows downwards
        depth = lambda q: (q * down).sum(1)  # noqa: E731  (distance down the face)
        order = ((depth(p[:, 17:27].mean(1)) < depth((right_eye + left_eye) / 2))
                 & (depth((right_eye + left_eye) / 2) < depth(p[:, 30])) & (depth(p[:, 30]) < depth(p[:, 48:68].mean(1))))
        ok = (np.isfinite(p).all((1, 2)) & (size >= 0.3 * side) & (size <= 1.5 * side) & inside
              & (iod >= 0.25 * size) & (iod <= 0.65 * size) & (eye_line[:, 0] > 0) & order)
    return ok


def dataset_points(dataset, progress: bool = True) -> tuple[np.ndarray, str]:
    """``(N, 68, 2)`` landmarks of a dataset and where they came from: its own (``meta["landmarks"]``,
    the synthetic faces' true points) or dlib's, through the landmark cache (the whole image as the box)."""
    if "landmarks" in dataset.meta:
        return _check_points(dataset.meta["landmarks"]), "meta['landmarks']"
    try:
        return dataset_landmarks(dataset, box="whole", progress=progress), "dlib"
    except (FileNotFoundError, ImportError) as err:
        raise ValueError(f"{dataset.name} {dataset.split} has no meta['landmarks'] and dlib cannot fit them "
                         f"({err}); expected 68 landmarks per face for its blocks") from err


def points_or_mean_shape(dataset, progress: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """``dataset_points``, with each face that has no plausible fit given the dataset's mean shape; returns
    the points, which faces had a plausible fit (the synthetic faces' own points always do), and their source."""
    points, source = dataset_points(dataset, progress)
    if source == "meta['landmarks']":
        return points, np.ones(len(points), bool), source
    ok = plausible(points, tuple(dataset.images.shape[-2:]))
    if not ok.any():
        raise ValueError(f"no face of {dataset.name} {dataset.split} has a plausible landmark fit ({source})")
    return np.where(ok[:, None, None], points, points[ok].mean(0)), ok, source


def dataset_blocks(dataset, *, margin: float = MARGIN, size: int = BLOCK_SIZE, cache_dir=None,
                   progress: bool = True, bugs=()) -> dict[str, np.ndarray]:
    """Prior Attention blocks of every face: ``blocks`` (N, 2, size, size) uint8, ``fallback`` (N,) bool
    (cut at the mean shape), ``source`` (where the landmarks came from). Cached as
    ``blocks-<name>-<split>-<hash>.npz`` beside the landmarks; ``cache_dir=False`` turns that off.
    ``bugs``: names of ``AUTHORS_BUGS`` to reproduce (``"leftover_image"`` cuts every face's blocks
    from the dataset's last image)."""
    bugs = check_bugs(bugs)
    points, source = dataset_points(dataset, progress)
    images = dataset.images
    hw = tuple(images.shape[-2:])
    pixels = (lambda i: images[-1]) if "leftover_image" in bugs else (lambda i: images[i])  # noqa: E731

    def build():
        ok = plausible(points, hw)
        if not ok.any():
            raise ValueError(f"no face of {dataset.name} {dataset.split} has a plausible landmark fit "
                             f"({source}), so there is no mean shape to cut its blocks at")
        mean_shape = points[ok].mean(0)
        blocks = np.stack([cut_blocks(pixels(i).permute(1, 2, 0).numpy(), points[i] if ok[i] else mean_shape,
                                      margin, size, bugs) for i in range(len(images))])
        return {"blocks": blocks, "fallback": ~ok, "source": np.array(source)}

    label = "-".join(s for s in (dataset.name, dataset.split) if s)
    tag = "blocks" + (f"-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}" if label else "")
    extra = {"what": "prior_attention_blocks", "format": CACHE_FORMAT, "images": _image_digest(images),
             "landmarks": _image_digest(points), "margin": float(margin), "size": int(size)}
    extra |= {"bugs": list(bugs)} if bugs else {}
    return cached_arrays(tag, [], build, cache_dir, extra, keys=("blocks", "fallback"))


def model_regions(dataset: FERDataset, cfg: dict, *, cache_dir=None, progress: bool = True) -> FERDataset:
    """The one hook: ``dataset`` as the model of ``cfg`` (a ``default_cfg``) eats it.

    Unchanged unless ``cfg["regions"]`` names the regions the model takes: ``"prior_attention"``, the
    stacked blocks (N, 2, 32, 32); ``"ran_landmarks"``, the stacked landmark crops (N, 5, s, s) of
    ``landmark_regions``. ``meta["landmark_fallback"]`` marks the faces cut at the mean shape, and
    ``protocol`` says how the regions were made.
    """
    kind = cfg.get("regions")
    if kind is None:
        return dataset
    if kind not in REGION_KINDS:
        raise ValueError(f"unknown regions {kind!r} in the model's default_cfg; valid: {', '.join(REGION_KINDS)}")
    if kind == "ran_landmarks":
        points, ok, source = points_or_mean_shape(dataset, progress)
        images = landmark_regions(dataset.images, points, cfg["input_size"][-1])
        d = {"source": source, "fallback": ~ok}
        what = f"RAN's landmark crops ({', '.join(LANDMARK_CROPS)}, then the face; side {LANDMARK_CROP_SIDE} of the face size)"
    else:
        marks = set(dataset.meta.get("regions_bug", ()))
        if len(marks) > 1:
            raise ValueError(f"{dataset.name} {dataset.split}: its faces carry different regions_bug marks "
                             f"{sorted(marks)}; expected one for the whole dataset")
        bugs = check_bugs(marks.pop() if marks else None)
        d = dataset_blocks(dataset, size=cfg["input_size"][-1], cache_dir=cache_dir, progress=progress, bugs=bugs)
        images = torch.from_numpy(d["blocks"])
        what = f"Prior Attention blocks (brows+eyes, mouth; margin {MARGIN} of the face size)"
    fallback = np.asarray(d["fallback"]).astype(bool)
    note = (f" Model input: {what} from {d['source']}; {int(fallback.sum())} of {len(fallback)} faces had no "
            "plausible fit and were cut at the mean shape.")
    if kind == "prior_attention":
        note += "".join(f" The authors' bug reproduced ({b}): {AUTHORS_BUGS[b]}." for b in bugs)
    return FERDataset(images, dataset.targets, dataset.classes,
                      {**dataset.meta, "landmark_fallback": fallback}, name=dataset.name, split=dataset.split,
                      protocol=dataset.protocol + note, label_mode=dataset.label_mode)


def regions_report(**splits) -> dict | None:
    """``{split: {"n", "fallbacks"}}`` for datasets made by ``model_regions`` (None when none was)."""
    report = {name: {"n": len(d), "fallbacks": int(d.meta["landmark_fallback"].sum())}
              for name, d in splits.items() if d is not None and "landmark_fallback" in d.meta}
    return report or None
