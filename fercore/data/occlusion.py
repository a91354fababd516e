"""Synthetic occluders placed from the 68 landmarks, to test robustness as RAN does (Wang et al., TIP 2020).

RAN's claim is robustness to occlusion; its authors test on faces occluded in the wild (see
``ferplus_lists``). Drawing occluders at known places on any test set gives a controlled version
of that test: cover the eyes or the mouth and see which model, and which region weights, cope.

``OCCLUDERS`` names the kinds:

- ``"grey"``: a flat mid-grey rectangle; ``"texture"``: a rectangle of uniform noise (from the
  ``torch.Generator`` given), which a model cannot mistake for skin. Both go on the eyes (iBUG
  36-47), the mouth (48-67) or, with ``where=None``, at a random centre inside the face's box.
- ``"sunglasses"``: two dark ellipses over the eyes, joined by a bridge; always over the eyes.
- ``"mask"``: a light surgical mask from just above the nose tip (30) to the chin (8), wider than
  the mouth corners, its lower corners rounded; always over the nose and mouth.

Sunglasses and masks are built in a face frame (origin between the eye centres, ``u`` along the
eye line, ``v`` down), so they follow head roll, and are sized from the inter-ocular distance and
the points they must cover, so the eye (or mouth and chin) points are always inside.

Everything is batched on the images' device: masks are compared on coordinate grids ``(N, H, W)``,
no loop over faces or pixels. Colours are fractions of the full range: 255 for uint8 images,
1.0 for float ones (assumed in ``[0, 1]``, not normalised).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

from .base import FERDataset

Tensor = torch.Tensor
WHERE = (None, "eyes", "mouth")
REGIONS = {"eyes": slice(36, 48), "mouth": slice(48, 68)}
MARGIN = 0.1        # of the face size, around a region's points (grey and texture patches)
RANDOM_SIZE = 0.35  # side of a randomly placed patch, of the face size
CHUNK = 2048        # faces per batch in occlude_dataset, to bound the (N, H, W) grids


def _frame(p: Tensor):
    """Origin (N, 2) between the eye centres, unit axes e1 (along the eyes) and e2 (down), inter-ocular distance."""
    right, left = p[:, 36:42].mean(1), p[:, 42:48].mean(1)
    d = left - right
    iod = d.norm(dim=1).clamp_min(1e-6)
    e1 = d / iod[:, None]
    return (right + left) / 2, e1, torch.stack([-e1[:, 1], e1[:, 0]], 1), iod


def _grid(shape, device) -> tuple[Tensor, Tensor]:
    h, w = shape
    return (torch.arange(w, device=device, dtype=torch.float32)[None, None, :],
            torch.arange(h, device=device, dtype=torch.float32)[None, :, None])


def _in_frame(p: Tensor, shape):
    """Landmarks (N, 68) and pixel centres (N, H, W) as (u, v) face-frame coordinates, and the iod."""
    o, e1, e2, iod = _frame(p)
    x, y = _grid(shape, p.device)
    col = lambda t: t[:, None, None]  # noqa: E731
    dx, dy = x - col(o[:, 0]), y - col(o[:, 1])
    rel = p - o[:, None]
    pu, pv = (rel * e1[:, None]).sum(-1), (rel * e2[:, None]).sum(-1)
    return pu, pv, dx * col(e1[:, 0]) + dy * col(e1[:, 1]), dx * col(e2[:, 0]) + dy * col(e2[:, 1]), iod


def _sunglasses(p, shape, where, size, generator) -> Tensor:
    pu, pv, u, v, iod = _in_frame(p, shape)
    col = lambda t: t[:, None, None]  # noqa: E731
    mask = torch.zeros(u.shape, dtype=torch.bool, device=p.device)
    centres = []
    for eye in (slice(36, 42), slice(42, 48)):
        cu, cv = pu[:, eye].mean(1), pv[:, eye].mean(1)
        a = torch.maximum(0.4 * iod, 1.3 * (pu[:, eye] - cu[:, None]).abs().amax(1) + 0.5)  # lenses hold the eye points
        b = torch.maximum(0.28 * iod, 1.6 * (pv[:, eye] - cv[:, None]).abs().amax(1) + 0.5)
        mask |= ((u - col(cu)) / col(a)) ** 2 + ((v - col(cv)) / col(b)) ** 2 <= 1
        centres.append((cu, cv))
    (ru, rv), (lu, lv) = centres
    bridge_v = (rv + lv) / 2 - 0.1 * iod
    mask |= (u >= col(ru)) & (u <= col(lu)) & ((v - col(bridge_v)).abs() <= col(0.05 * iod + 0.5))
    return mask


def _surgical_mask(p, shape, where, size, generator) -> Tensor:
    pu, pv, u, v, iod = _in_frame(p, shape)
    col = lambda t: t[:, None, None]  # noqa: E731
    mouth = slice(48, 68)
    uc = pu[:, mouth].mean(1)
    half = (pu[:, mouth] - uc[:, None]).abs().amax(1) + 0.5 * iod  # the mouth corners' width, extended
    top = pv[:, 30] - 0.15 * iod
    bottom = torch.maximum(pv[:, 8], pv[:, mouth].amax(1)) + 0.05 * iod + 0.5
    rect = ((u - col(uc)).abs() <= col(half)) & (v >= col(top)) & (v <= col(bottom))
    rounded = ((u - col(uc)) / col(1.25 * half)) ** 2 + ((v - col(top)) / col(bottom - top)) ** 2 <= 1
    return rect & rounded


def _patch(p, shape, where, size, generator) -> Tensor:
    """An axis-aligned rectangle: the region's box plus ``MARGIN``, or a square of ``size`` x the face size."""
    lo, hi = p.amin(1), p.amax(1)
    face = (hi - lo).amax(1)
    if where is None:
        r = torch.rand((len(p), 2), generator=generator).to(p.device)
        centre, half = lo + r * (hi - lo), (RANDOM_SIZE if size is None else size) * face / 2
        lo, hi = centre - half[:, None], centre + half[:, None]
    else:
        q = p[:, REGIONS[where]]
        lo, hi = q.amin(1), q.amax(1)
        if size is None:
            lo, hi = lo - MARGIN * face[:, None], hi + MARGIN * face[:, None]
        else:
            centre, half = (lo + hi) / 2, size * face[:, None] / 2
            lo, hi = centre - half, centre + half
    x, y = _grid(shape, p.device)
    col = lambda t: t[:, None, None]  # noqa: E731
    return (x >= col(lo[:, 0])) & (x <= col(hi[:, 0])) & (y >= col(lo[:, 1])) & (y <= col(hi[:, 1]))


class Occluder(NamedTuple):
    description: str
    wheres: tuple           # valid ``where`` values
    fill: float | None      # fraction of the full range; None: uniform noise
    shape: Callable[..., Tensor]


OCCLUDERS = {
    "grey": Occluder("a flat mid-grey rectangle", WHERE, 0.5, _patch),
    "texture": Occluder("a rectangle of uniform noise", WHERE, None, _patch),
    "sunglasses": Occluder("dark sunglasses (two ellipses and a bridge)", (None, "eyes"), 0.08, _sunglasses),
    "mask": Occluder("a light surgical mask from the nose tip to the chin", (None, "mouth"), 0.92, _surgical_mask),
}


def _check(kind: str, where, size) -> Occluder:
    if kind not in OCCLUDERS:
        raise ValueError(f"unknown occluder {kind!r}; valid: {', '.join(OCCLUDERS)}")
    occ = OCCLUDERS[kind]
    if where not in occ.wheres:
        raise ValueError(f"where={where!r} is not valid for {kind!r}; valid: {', '.join(map(repr, occ.wheres))}")
    if size is not None and (occ.shape is not _patch or not 0 < size <= 2):
        raise ValueError(f"size={size!r}: a patch side as a fraction of the face size in (0, 2], "
                         f"for {', '.join(k for k, o in OCCLUDERS.items() if o.shape is _patch)} only")
    return occ


def occlusion_mask(points, kind: str, shape, *, where=None, size=None, generator=None, device=None) -> Tensor:
    """``(N, H, W)`` bool: the pixels that occluder ``kind`` covers on each face of ``points`` (N, 68, 2), (x, y) px.

    ``shape`` is the images' ``(H, W)`` (or a longer shape ending with them). Random placements
    draw from ``generator`` on the CPU, so a seed gives the same masks on any device.
    """
    occ = _check(kind, where, size)
    p = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points,
                        dtype=torch.float32, device=device)
    if p.ndim != 3 or p.shape[1:] != (68, 2):
        raise ValueError(f"points must be (N, 68, 2) iBUG landmarks (x, y), got shape {tuple(p.shape)}")
    bad = ~torch.isfinite(p).all(2).all(1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(p)} faces have non-finite landmarks (first: face {int(bad.nonzero()[0])})")
    return occ.shape(p, tuple(shape)[-2:], where, size, generator)


def occlude(images: Tensor, points, kind: str, *, generator=None, where=None, size=None,
            return_mask: bool = False):
    """A copy of ``images`` (N, C, H, W), uint8 or float, with occluder ``kind`` drawn on each face.

    ``points``: (N, 68, 2) landmarks in the images' pixels; ``where``: ``"eyes"``, ``"mouth"`` or None
    (random for patches; sunglasses and masks have their one place). Only the masked pixels change;
    ``return_mask=True`` returns ``(occluded, mask)``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    mask = occlusion_mask(points, kind, images.shape, where=where, size=size, generator=generator, device=images.device)
    if len(mask) != len(images):
        raise ValueError(f"{len(images)} images but {len(mask)} sets of landmarks")
    full = 255.0 if images.dtype == torch.uint8 else 1.0
    fill = OCCLUDERS[kind].fill
    if fill is None:
        value = torch.rand(images.shape, generator=generator).to(images.device) * full
    else:
        value = torch.full((), fill * full, device=images.device)
    value = value.round().to(images.dtype) if images.dtype == torch.uint8 else value.to(images.dtype)
    out = torch.where(mask[:, None], value, images)
    return (out, mask) if return_mask else out


def occlude_dataset(dataset: FERDataset, kind: str, *, where=None, seed: int = 0, size=None,
                    progress: bool = True) -> FERDataset:
    """``dataset`` with every face occluded; same targets, classes and meta, one more sentence of protocol.

    Landmarks come from ``meta["landmarks"]`` (the synthetic faces' true points) or else dlib through
    the landmark cache (``fercore.faces.regions.dataset_points``); a face without a plausible fit
    is occluded at the dataset's mean shape, as its blocks are cut. ``progress``: dlib's progress bar.
    """
    from ..faces.regions import points_or_mean_shape

    occ = _check(kind, where, size)
    points, ok, source = points_or_mean_shape(dataset, progress)
    note = f", {int((~ok).sum())} faces without a plausible fit at the mean shape" if not ok.all() else ""
    generator = torch.Generator().manual_seed(seed)
    images = torch.cat([occlude(dataset.images[i:i + CHUNK], points[i:i + CHUNK], kind, generator=generator,
                                where=where, size=size) for i in range(0, len(dataset), CHUNK)])
    place = {None: "at a random place on the face" if occ.shape is _patch else "", "eyes": "over the eyes",
             "mouth": "over the mouth"}[where]
    sentence = (f" Occluded with {occ.description}{' ' + place if place else ''} (fercore.data.occlusion, "
                f"seed {seed}; landmarks from {source}{note}).")
    return FERDataset(images, dataset.targets, dataset.classes, dict(dataset.meta), name=dataset.name,
                      split=dataset.split, protocol=dataset.protocol + sentence, label_mode=dataset.label_mode,
                      transform=dataset.transform, target_transform=dataset.target_transform)
