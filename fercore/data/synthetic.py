"""Synthetic faces: the offline default dataset (procedural, FERG-like cartoon faces).

Every notebook and test can run with no download. A face is decided by a ``FaceParams``:
  * a character (face width, chin, skin, hair, eye size; ``CHARACTERS``);
  * action-unit-like muscles (``AUS``: brow raise, brow lowering, inner-brow raise, eye
    openness, lip-corner pull up/down, mouth opening, lip stretch, nose wrinkle). An
    expression is a prototype mix of them (``PROTOTYPES``) times a random intensity, so weak
    expressions look almost neutral, fear and surprise share raised brows and an open mouth,
    angry and disgust share lowered brows;
  * pose and photometry: roll, scale, shift, a lighting ramp, noise, an optional occluder.
The geometry is built in a face frame (origin at the face centre, y down, face half-height
1) for a whole batch at once with numpy, mapped to pixels by one similarity transform per
face, and drawn with OpenCV polygons. The 68 iBUG landmarks are points of the very curves
that are drawn, so they follow every expression and pose.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from types import SimpleNamespace

import cv2
import numpy as np
import torch

from ..labels import EMOTIONS_7
from . import register_dataset
from .base import FERDataset


@dataclass(frozen=True)
class Character:
    name: str
    width: float         # face half-width (the half-height is 1)
    chin: float          # how much the jaw narrows towards the chin
    skin: tuple          # RGB
    hair: tuple          # RGB
    style: str           # a key of HAIR
    eye: float           # eye size
    iris: tuple          # RGB
    mouth: float = 0.27  # mouth half-width


CHARACTERS = (
    Character("ada", 0.80, 0.30, (245, 205, 175), (110, 60, 30), "long", 1.20, (60, 110, 170)),
    Character("bo", 0.92, 0.08, (200, 145, 105), (35, 30, 25), "short", 0.90, (70, 45, 25)),
    Character("cy", 0.74, 0.38, (250, 222, 198), (235, 195, 95), "spiky", 1.05, (60, 140, 80), 0.24),
    Character("dee", 0.84, 0.22, (135, 90, 62), (25, 20, 20), "bun", 1.10, (55, 35, 20), 0.29),
    Character("eli", 0.96, 0.16, (228, 182, 142), (160, 65, 30), "bangs", 0.80, (100, 80, 45), 0.30),
    Character("fay", 0.78, 0.26, (185, 132, 98), (95, 95, 110), "long", 0.95, (80, 60, 40), 0.25),
)

# Fringe height, fringe zigzag, spike length, length of hair behind the head, bun radius.
HAIR = {
    "short": (-0.62, 0.0, 0.0, 0.0, 0.0),
    "bangs": (-0.58, 0.06, 0.0, 0.35, 0.0),
    "spiky": (-0.62, 0.0, 0.20, 0.0, 0.0),
    "long": (-0.55, 0.0, 0.0, 0.95, 0.0),
    "bun": (-0.70, 0.0, 0.0, 0.0, 0.28),
}

AUS = ("brow_raise", "brow_lower", "inner_brow_raise", "eye_open",
       "lip_corner", "mouth_open", "lip_stretch", "nose_wrinkle")

# Each expression's action units at intensity 1 (FACS-inspired, exaggerated like a cartoon).
PROTOTYPES = {
    "angry": dict(brow_lower=1.0, eye_open=0.25, lip_corner=-0.3, lip_stretch=-0.35),
    "disgust": dict(brow_lower=0.55, eye_open=-0.5, lip_corner=-0.45, mouth_open=0.12, lip_stretch=0.15,
                    nose_wrinkle=1.0),
    "fear": dict(brow_raise=0.55, brow_lower=0.3, inner_brow_raise=0.8, eye_open=1.0, lip_corner=-0.2,
                 mouth_open=0.45, lip_stretch=1.0),
    "happy": dict(eye_open=-0.4, lip_corner=1.0, mouth_open=0.35, lip_stretch=0.3),
    "sad": dict(brow_lower=0.3, inner_brow_raise=1.0, eye_open=-0.4, lip_corner=-0.9),
    "surprise": dict(brow_raise=1.0, eye_open=0.9, mouth_open=1.0, lip_stretch=-0.45),
    "neutral": dict(),
}
_PROTO = np.array([[PROTOTYPES[e].get(a, 0.0) for a in AUS] for e in EMOTIONS_7])
_U = np.linspace(-1, 1, 13)  # parameter across eyes and lips; landmarks take some of these points
# Character traits as arrays indexed by character, hair style unpacked.
_TRAITS = {t: np.array([getattr(ch, t) for ch in CHARACTERS], float)
           for t in ("width", "chin", "skin", "hair", "eye", "iris", "mouth")}
_TRAITS |= dict(zip(("fringe", "zigzag", "spikes", "back", "bun"), np.array([HAIR[ch.style] for ch in CHARACTERS]).T))


@dataclass
class FaceParams:
    """Everything that decides one face. Action units are about -1..1 (0 is neutral)."""
    character: int = 0
    brow_raise: float = 0.0
    brow_lower: float = 0.0
    inner_brow_raise: float = 0.0
    eye_open: float = 0.0        # -1 squint .. +1 wide open
    lip_corner: float = 0.0      # +1 pulled up (smile) .. -1 pulled down
    mouth_open: float = 0.0      # 0 closed .. 1 jaw dropped
    lip_stretch: float = 0.0     # +1 wide .. -1 narrow, rounded
    nose_wrinkle: float = 0.0
    roll: float = 0.0            # degrees, positive tilts the head counter-clockwise
    scale: float = 1.0
    shift: tuple = (0.0, 0.0)    # (x, y) as a fraction of the image size
    light: float = 0.0           # strength of a linear brightness ramp across the image
    light_angle: float = 0.0     # its direction, radians
    noise: float = 0.0           # std of the pixel noise, in grey levels
    background: tuple = (200, 200, 200)  # RGB
    occluder: tuple | None = None  # (x, y, half-width, half-height, angle deg, grey) in face units

    @classmethod
    def expression(cls, name: str, intensity: float = 1.0, **kw) -> "FaceParams":
        """Params of expression ``name`` at ``intensity``; ``kw`` sets any other field."""
        if name not in PROTOTYPES:
            raise ValueError(f"unknown expression {name!r}; valid: {', '.join(EMOTIONS_7)}")
        return cls(**{a: v * intensity for a, v in PROTOTYPES[name].items()} | kw)


def _pts(x, y) -> np.ndarray:
    """Stack x and y (broadcast, e.g. (N, 1) with (k,)) into (..., k, 2) points."""
    return np.stack(np.broadcast_arrays(x, y), -1).astype(np.float64)


def _ellipse(cx, cy, rx, ry, n=16) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return _pts(cx + rx * np.cos(t), cy + ry * np.sin(t))


def _outline(t, c, jaw_drop) -> np.ndarray:
    """Face contour at angles ``t``: an ellipse whose lower half narrows to the chin."""
    y = np.sin(t)
    low = y.clip(0)
    return _pts(c.width * np.cos(t) * (1 - c.chin * low**2), y * (1 + jaw_drop * low))


# Each part below takes the params ``q`` and the character traits ``c`` as (N, 1) columns and
# returns face-frame shapes to draw (N, ..., 2) plus the landmarks it owns.

def _head(q, c):
    """Face, ears, neck and hair; landmarks 0-16 (the jaw), which drops as the mouth opens."""
    n, jaw_drop = len(q.roll), 0.12 * q.mouth_open.clip(0)
    top, alt = np.linspace(np.pi - 0.05, 2 * np.pi + 0.05, 25), np.arange(25) % 2
    r = 1.09 + c.spikes * alt
    fx = np.linspace(0.9, -0.9, 11) * c.width
    g = {
        "face": _outline(np.linspace(0, 2 * np.pi, 48, endpoint=False), c, jaw_drop),
        "ears": np.stack([_ellipse(s * c.width * 0.97, -0.05, 0.11, 0.19) for s in (-1, 1)], 1),
        "neck": np.broadcast_to(_pts([-0.32, 0.32, 0.42, -0.42], [0.5, 0.5, 1.6, 1.6]), (n, 4, 2)),
        # A cap over the top of the head that ends in a fringe across the forehead.
        "hair": np.concatenate([_pts(c.width * 1.06 * r * np.cos(top), r * np.sin(top)),
                                _pts(fx, c.fringe + 0.3 * (fx / c.width) ** 4 + c.zigzag * alt[:11])], 1),
        # Hair hanging behind the head down to ``c.back``, and a bun (drawn only for styles with them).
        "hair_back": _pts(c.width * np.r_[-1.0, -1.15, 1.15 * np.cos(top), 1.15, 1.0],
                          np.r_[0, -0.1, 1.1 * np.sin(top), -0.1, 0] + c.back * np.r_[1, 1, np.zeros(25), 1, 1]),
        "bun": _ellipse(0, -1.12, c.bun, c.bun * 0.9),
    }
    return g, _outline(np.linspace(np.pi + 0.3, -0.3, 17), c, jaw_drop)


def _eyes_and_brows(q, c):
    """Almond eyes with iris and pupil clipped between the lids; tapered brows.

    Landmarks 17-26 (brows, each from the image-left end) and 36-47 (eyes: corner, two upper-lid
    points, corner, two lower-lid points).
    """
    ew, eh = 0.17 * c.eye, 0.095 * c.eye
    up, lo = eh * (1 + 0.75 * q.eye_open).clip(0.12), eh * (0.6 + 0.2 * q.eye_open).clip(0.15)
    parts = {name: [] for name in ("eyes", "lids", "irises", "pupils", "brows", "lm_brows", "lm_eyes")}
    for s in (-1, 1):  # image-left, then image-right
        cx, cy = s * 0.34, -0.12
        upper_at = lambda u: cy - up * (1 - u**2) ** 0.7  # noqa: E731  (lid heights at u in -1..1)
        lower_at = lambda u: cy + lo * (1 - u**2) ** 0.8  # noqa: E731
        upper, lower = _pts(cx + ew * _U, upper_at(_U)), _pts(cx + ew * _U, lower_at(_U))
        for part, radius in (("irises", 0.075), ("pupils", 0.035)):
            circle = _ellipse(cx, cy + 0.01, radius * c.eye, radius * c.eye)
            u = ((circle[..., 0] - cx) / ew).clip(-1, 1)
            circle[..., 1] = circle[..., 1].clip(upper_at(u), lower_at(u))
            parts[part].append(circle)
        lash = _pts(upper[..., 0] * 1.02 - 0.01 * s, upper[..., 1] - 0.022 * (1 - 0.6 * _U**2))
        parts["eyes"].append(np.concatenate([upper, lower[:, ::-1]], 1))
        parts["lids"].append(np.concatenate([upper, lash[:, ::-1]], 1))  # a thick upper lash line
        parts["lm_eyes"].append(np.concatenate([upper[:, [0, 4, 8, 12]], lower[:, [8, 4]]], 1))
        # Brows from the inner (v=0) to the outer (v=1) end; lowering pulls the inner ends down and together.
        v = np.linspace(0, 1, 9)
        bx = s * (0.17 + 0.38 * v - 0.05 * q.brow_lower * (1 - v))
        by = (-0.36 - 0.05 * np.sin(np.pi * v) - 0.13 * q.brow_raise * (0.7 + 0.3 * v)
              + q.brow_lower * (0.02 + 0.10 * (1 - v)) - 0.13 * q.inner_brow_raise * (1 - v) ** 2)
        half = 0.03 * (1 - 0.45 * v)
        parts["brows"].append(np.concatenate([_pts(bx, by - half), _pts(bx, by + half)[:, ::-1]], 1))
        parts["lm_brows"].append(_pts(bx, by)[:, [8, 6, 4, 2, 0] if s < 0 else [0, 2, 4, 6, 8]])
    g = {name: np.stack(parts[name], 1) for name in ("eyes", "lids", "irises", "pupils", "brows")}
    return g, np.concatenate(parts["lm_brows"], 1), np.concatenate(parts["lm_eyes"], 1)


def _nose_and_mouth(q, c):
    """Nose, lips, mouth opening and teeth; landmarks 27-35 (nose) and 48-67 (lips)."""
    n, mouth_open, wrinkle = len(q.roll), q.mouth_open.clip(0), q.nose_wrinkle.clip(0)
    # The nose wrinkle lifts and widens the nostrils and raises the upper lip.
    nb, nw = 0.27 - 0.04 * wrinkle, 0.09 * (1 + 0.15 * wrinkle)
    nx = np.linspace(-1.3, 1.3, 11) * nw
    nose = _pts(nx, nb + 0.03 * (1 - (nx / nw) ** 2))
    lm_nose = np.concatenate([_pts(0.0, -0.13 + (nb + 0.08) * np.linspace(0, 1, 4)), nose[:, 1:10:2]], 1)
    # The lips lie along a centre line that the lip corners bend; opening parts the inner lips.
    hw = c.mouth * (1 + 0.25 * q.lip_stretch + 0.15 * q.lip_corner.clip(0)).clip(0.4)
    mid = 0.56 - 0.11 * q.lip_corner * _U**2
    env, env2 = (1 - _U**2) ** 0.6, (1 - _U**2) ** 0.5
    in_up = _pts(0.85 * hw * _U, mid - (0.03 * mouth_open + 0.04 * wrinkle) * env)
    in_lo = _pts(0.85 * hw * _U, mid + 0.24 * mouth_open * env)
    out_up = _pts(hw * _U, in_up[..., 1] - 0.05 * env2 * (1 - 0.4 * np.exp(-(_U / 0.2) ** 2)))
    out_lo = _pts(hw * _U, in_lo[..., 1] + 0.065 * env2)
    teeth_edge = _pts(in_up[..., 0], np.minimum(in_up[..., 1] + 0.06 * env, in_lo[..., 1]))
    lm_mouth = np.concatenate([out_up[:, ::2], out_lo[:, [10, 8, 6, 4, 2]],
                               in_up[:, [0, 3, 6, 9, 12]], in_lo[:, [9, 6, 3]]], 1)
    g = {"nose": nose, "bridge": np.broadcast_to(_pts([0.04, 0.05, 0.07], [-0.05, 0.1, 0.21]), (n, 3, 2)),
         "lips": np.concatenate([out_up, out_lo[:, ::-1]], 1), "inner": np.concatenate([in_up, in_lo[:, ::-1]], 1),
         "teeth": np.concatenate([in_up, teeth_edge[:, ::-1]], 1), "lipline": in_up,
         # Wrinkles, coloured by their strength: smile folds, nose creases, frown and forehead lines.
         "folds": np.stack([_pts(s * np.c_[nw + 0.05, hw + 0.02, hw + 0.06],
                                 np.c_[nb - 0.05, np.full(n, 0.45), mid[:, :1] + 0.04]) for s in (-1, 1)], 1),
         "creases": np.broadcast_to([[[s * 0.06, -0.06], [s * 0.11, -0.01]] for s in (-1, 1)], (n, 2, 2, 2)),
         "frown": np.broadcast_to([[[s * 0.05, -0.33], [s * 0.04, -0.22]] for s in (-1, 1)], (n, 2, 2, 2)),
         "forehead": np.broadcast_to(np.stack([_pts(np.linspace(-0.3, 0.3, 5), y + 0.03 * np.linspace(-1, 1, 5) ** 2)
                                               for y in (-0.6, -0.7)]), (n, 2, 5, 2))}
    return g, lm_nose, lm_mouth


def _occluder(q) -> np.ndarray:
    """A rotated rectangle (x, y, half-width, half-height, angle) in face units."""
    x, y, w, h, angle = (q.occluder[:, i:i + 1] for i in range(5))
    lx, ly = np.array([-1, 1, 1, -1]) * w, np.array([-1, -1, 1, 1]) * h
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return _pts(x + lx * cos - ly * sin, y + lx * sin + ly * cos)


def _geometry(q, c) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All shapes to draw and the (N, 68, 2) iBUG landmarks, in the face frame."""
    head, jaw = _head(q, c)
    eyes, lm_brows, lm_eyes = _eyes_and_brows(q, c)
    mouth, lm_nose, lm_mouth = _nose_and_mouth(q, c)
    shapes = head | eyes | mouth | {"occluder": _occluder(q)}
    return shapes, np.concatenate([jaw, lm_brows, lm_nose, lm_eyes, lm_mouth], 1)


def _to_pixels(pts: np.ndarray, q, size: int) -> np.ndarray:
    """Map face-frame points (N, ..., 2) to image pixels: rotate by ``roll``, scale, shift."""
    a, k = np.radians(q.roll[:, 0]), 0.37 * size * q.scale[:, 0]
    cos, sin = (k * np.cos(a))[:, None], (k * np.sin(a))[:, None]
    centre = size * (np.array([0.5, 0.54]) + q.shift)
    x, y = pts.reshape(len(a), -1, 2).transpose(2, 0, 1)
    return np.stack([cos * x + sin * y + centre[:, :1], cos * y - sin * x + centre[:, 1:]], -1).reshape(pts.shape)


# What to draw, in order: (shape, colour, filled?). Left and right eyes and brows are drawn by one call.
_STEPS = [("hair_back", "hair", True), ("bun", "hair", True), ("neck", "shade", True), ("ears", "shade", True),
          ("face", "skin", True), ("face", "shade", False), ("forehead", "forehead", False),
          ("hair", "hair", True), ("hair", "hair_line", False),
          ("eyes", "white", True), ("irises", "iris", True), ("pupils", "black", True), ("eyes", "ink", False),
          ("lids", "ink", True), ("brows", "brow", True),
          ("frown", "frown", False), ("creases", "creases", False), ("folds", "folds", False),
          ("bridge", "shade", False), ("nose", "nostril", False),
          ("lips", "lips", True), ("inner", "mouth", True), ("teeth", "teeth", True), ("lipline", "lipline", False),
          ("occluder", "occluder", True)]
_CLOSED = ("face", "hair", "eyes")  # outlines that are closed curves


def _colours(q, c, rgb: bool) -> dict[str, list]:
    """Each face's colour per part (a wrinkle's colour goes from skin to shade with its strength)."""
    n, shade = len(q.roll), c.skin * 0.7
    mix = lambda t: c.skin + (shade - c.skin) * t.clip(0, 1)  # noqa: E731
    const = lambda value: np.broadcast_to(np.array(value, float), (n, 3))  # noqa: E731
    table = dict(hair=c.hair, hair_line=c.hair * 0.6, skin=c.skin, shade=shade, white=const((250, 250, 250)),
                 iris=c.iris, black=const((10, 10, 15)), ink=const((45, 30, 25)), brow=c.hair * 0.55,
                 forehead=mix(q.brow_raise), frown=mix(q.brow_lower), creases=mix(q.nose_wrinkle),
                 folds=mix(0.6 * q.lip_corner + 0.3 * q.nose_wrinkle), nostril=c.skin * 0.55,
                 lips=c.skin * [0.85, 0.5, 0.5], mouth=const((70, 20, 30)), teeth=const((245, 245, 240)),
                 lipline=c.skin * [0.4, 0.2, 0.2], occluder=q.occluder[:, 5:6] * np.ones(3), background=q.background)
    to_channels = (lambda v: v) if rgb else (lambda v: v @ np.array([[0.299], [0.587], [0.114]]))
    return {k: to_channels(np.asarray(v, float)).tolist() for k, v in table.items()}


def _render(q, size: int, rgb: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a batch: images (N, H, W, C) uint8 and landmarks (N, 68, 2) float32 in pixels."""
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    c = SimpleNamespace(**{k: v[q.character[:, 0]].reshape(len(q.roll), -1) for k, v in _TRAITS.items()})
    g, landmarks = _geometry(q, c)
    # OpenCV takes integer points; with ``shift=4`` they carry 4 fractional bits (x16): sub-pixel accuracy.
    px = {k: np.round(_to_pixels(v, q, size) * 16).astype(np.int32) for k, v in g.items()}
    colours = _colours(q, c, rgb)
    optional = {"hair_back": c.back[:, 0] > 0, "bun": c.bun[:, 0] > 0, "occluder": q.occluded[:, 0]}
    images = np.empty((len(q.roll), size, size, 3 if rgb else 1), np.uint8)
    for i, img in enumerate(images):
        img[:] = colours["background"][i]
        for shape, colour, filled in _STEPS:
            if shape in optional and not optional[shape][i]:
                continue
            pts = px[shape][i]
            polys = pts if pts.ndim == 3 else pts[None]
            if filled:
                cv2.fillPoly(img, polys, colours[colour][i], cv2.LINE_AA, 4)
            else:
                cv2.polylines(img, polys, shape in _CLOSED, colours[colour][i], 1, cv2.LINE_AA, 4)
    images = _light_and_noise(images, q, rng)
    return images, _to_pixels(landmarks, q, size).astype(np.float32)


def _light_and_noise(images: np.ndarray, q, rng: np.random.Generator) -> np.ndarray:
    """A linear brightness ramp across each image, then uniform pixel noise of std ``q.noise``.

    The noise is the same in all channels (luminance noise) and uniform rather than Gaussian:
    both make it several times cheaper to draw, and it still perturbs every pixel by ``q.noise``.
    """
    n, size = len(images), images.shape[1]
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    dx, dy = (q.light * np.cos(q.light_angle))[:, :, None, None], (q.light * np.sin(q.light_angle))[:, :, None, None]
    out = images.astype(np.float32)
    out *= (1 + dx * ramp[:, None] + dy * ramp[:, None, None]).astype(np.float32)
    out += (rng.random((n, size, size, 1), np.float32) - 0.5) * (q.noise * 12**0.5).astype(np.float32)[:, :, None, None]
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def _columns(params: list[FaceParams]) -> SimpleNamespace:
    """FaceParams as (N, k) columns, the form ``_render`` works on."""
    cols = {f.name: np.array([np.ravel(np.asarray(getattr(p, f.name), float)) for p in params])
            for f in fields(FaceParams) if f.name != "occluder"}
    cols["occluder"] = np.array([p.occluder or (0,) * 6 for p in params], float)
    cols["occluded"] = np.array([[p.occluder is not None] for p in params])
    cols["character"] = cols["character"].astype(np.int64)
    return SimpleNamespace(**cols)


def render_face(p: FaceParams, size: int = 48, rgb: bool = False, rng: np.random.Generator | None = None):
    """Draw one face: ``(H, W, C)`` uint8 image and its ``(68, 2)`` float32 (x, y) landmarks.

    ``rng`` draws the pixel noise (of std ``p.noise``); without it the noise is seeded by 0.
    """
    if not 0 <= p.character < len(CHARACTERS):
        raise ValueError(f"character {p.character} is outside 0..{len(CHARACTERS) - 1}")
    images, landmarks = _render(_columns([p]), size, rgb, rng or np.random.default_rng(0))
    return images[0], landmarks[0]


def _names_to_indices(values, names, what) -> np.ndarray:
    out = [names.index(v) if isinstance(v, str) and v in names else v for v in values]
    bad = [v for v in out if not isinstance(v, (int, np.integer)) or not 0 <= v < len(names)]
    if bad or not out:
        raise ValueError(f"unknown {what} {bad or '(empty list)'}; valid: {', '.join(names)}")
    return np.array(out, dtype=np.int64)


def render_faces(n: int, *, size: int = 48, rgb: bool = False, seed=0, characters=None,
                 expressions=None, occlusion: float = 0.0) -> dict[str, np.ndarray]:
    """Draw ``n`` random faces, classes balanced, each a random character, intensity and pose.

    ``characters`` / ``expressions`` restrict the draw (names or indices); ``occlusion`` is the
    probability of a random grey occluder. ``seed``: an int or a sequence of ints.
    Returns ``images`` uint8 (N, C, H, W), ``targets`` int64 (N,), ``landmarks`` float32
    (N, 68, 2) in pixels, ``character`` int64 (N,), ``intensity`` float32 (N,).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    chars = _names_to_indices(range(len(CHARACTERS)) if characters is None else characters,
                              [c.name for c in CHARACTERS], "characters")
    exprs = _names_to_indices(range(7) if expressions is None else expressions, list(EMOTIONS_7), "expressions")
    rng = np.random.default_rng(seed)
    targets = exprs[rng.permutation(n) % len(exprs)]
    intensity = np.where(targets == EMOTIONS_7.index("neutral"), 0.0, rng.uniform(0.2, 1.0, n))
    # Action units: the prototype at this intensity, scaled and nudged per face.
    aus = _PROTO[targets] * intensity[:, None] * rng.uniform(0.7, 1.3, (n, len(AUS)))
    aus += rng.normal(0, 0.08, (n, len(AUS)))
    col = lambda v: np.asarray(v).reshape(n, -1)  # noqa: E731
    q = SimpleNamespace(
        character=col(rng.choice(chars, n)), **{a: col(v) for a, v in zip(AUS, aus.clip(-1, 1.2).T)},
        roll=col(rng.normal(0, 6, n).clip(-15, 15)), scale=col(rng.uniform(0.88, 1.08, n)),
        shift=rng.uniform(-0.05, 0.05, (n, 2)), light=col(rng.uniform(-0.35, 0.35, n)),
        light_angle=col(rng.uniform(0, 2 * np.pi, n)), noise=col(rng.uniform(1, 8, n)),
        background=rng.uniform(30, 230, (n, 3)), occluded=col(rng.random(n) < occlusion),
        occluder=np.column_stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.4, 0.8, n), rng.uniform(0.15, 0.4, n),
                                  rng.uniform(0.1, 0.3, n), rng.uniform(0, 180, n), rng.uniform(0, 255, n)]))
    images, landmarks = [], []
    for start in range(0, n, 256):  # in chunks, to bound the memory of the float lighting step
        chunk = SimpleNamespace(**{k: v[start:start + 256] for k, v in vars(q).items()})
        img, lm = _render(chunk, size, rgb, rng)
        images.append(img.transpose(0, 3, 1, 2))
        landmarks.append(lm)
    return {"images": np.ascontiguousarray(np.concatenate(images)), "targets": targets.astype(np.int64),
            "landmarks": np.concatenate(landmarks), "character": q.character[:, 0].astype(np.int64),
            "intensity": intensity.astype(np.float32)}


SPLIT_SIZES = {"train": 3500, "val": 700, "test": 700}


@register_dataset("synthetic", splits=tuple(SPLIT_SIZES), needs_root=False, source="procedural, offline")
def load_synthetic(root, split, *, n=None, size=48, rgb=False, seed=0, cache_dir=None, occlusion=0.0,
                   split_mode="random", fold=0, regions_bug=None) -> FERDataset:
    """Procedural faces; ``root`` and ``cache_dir`` are ignored (drawing is faster than a cache).

    ``split_mode`` mirrors the ``ferg`` loader's protocols: ``"random"``, every character in every
    split (FERG's random split), or ``"character"``, held-out characters (fold ``k`` tests on the
    ``k``-th character, selects on the next, trains on the other four). ``regions_bug`` cuts the
    Prior Attention blocks with the authors' bugs (``fercore.faces.regions.AUTHORS_BUGS``).
    """
    from ..faces.regions import bug_meta
    from .ferg import SPLIT_MODES, _character_split

    if split_mode not in SPLIT_MODES:
        raise ValueError(f"unknown split_mode {split_mode!r} for synthetic; valid: {', '.join(SPLIT_MODES)}")
    characters, protocol = None, ("Random split of procedurally drawn faces (seeded per split); every character "
                                  "appears in every split.")
    if split_mode == "character":
        names = np.array(sorted(c.name for c in CHARACTERS))
        index, protocol = _character_split(names, split, fold)
        characters, protocol = names[index].tolist(), "Procedurally drawn FERG-like faces; " + protocol
    split_seed = (seed, list(SPLIT_SIZES).index(split))  # each split its own stream: no shared faces
    d = render_faces(SPLIT_SIZES[split] if n is None else n, size=size, rgb=rgb, seed=split_seed,
                     characters=characters, occlusion=occlusion)
    meta = {k: d[k] for k in ("character", "landmarks", "intensity")}
    return FERDataset(
        torch.from_numpy(d["images"]), torch.from_numpy(d["targets"]), EMOTIONS_7,
        meta | bug_meta(len(d["targets"]), regions_bug), name="synthetic", split=split, protocol=protocol,
    )
