"""Batched augmentation on the training device, and test-time augmentation (TTA) views.

Augmenting a whole float batch ``(B, C, H, W)`` at once on the device that trains is what
lets a small model train at its compute ceiling (DESIGN.md, principle 1): no PIL, no
per-sample Python loop, no worker processes. Each op follows the torchvision transform of
the same name, sample by sample:

* random parameters are drawn on the CPU from the ``torch.Generator`` passed in (the global
  CPU generator when None), so a run can save and restore its augmentation RNG exactly and
  the same seed gives the same batch on a CPU or a GPU;
* the parameters then move to ``x.device`` and one vectorised call does the work (tensor
  indexing for crops and erasing, one ``grid_sample`` for resized crops and affine warps).

Each op exposes ``get_params(shape, generator)`` (like torchvision's) and a functional twin
(``crop``, ``resized_crop``, ``hflip``, ``affine``, ``erase``) that applies given parameters,
so tests and notebooks can check them against torchvision image by image.

Values are in the units of ``x``: erasing with 0 is black on ``[0, 1]`` images and the mean
grey on normalised ones.
"""
from __future__ import annotations

import inspect
import math
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

Tensor = torch.Tensor
TTA_MODES = (None, "none", "flip", "ten_crop")


# ---------------------------------------------------------------- random parameters (CPU)
def _uniform(generator: torch.Generator | None, shape, low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _offsets(generator: torch.Generator | None, high: Tensor) -> Tensor:
    """One uniform integer in ``0..high[k]`` (inclusive) per sample, like ``torch.randint(0, high + 1)``."""
    return (torch.rand(high.shape, generator=generator) * (high + 1)).long()


def _sample_boxes(n, height, width, scale, ratio, generator, tries: int = 10):
    """torchvision's area/aspect rejection sampling, all samples and all ``tries`` at once.

    An area fraction is drawn from ``scale`` and a log-uniform aspect from ``ratio``; returns
    the rounded side lengths ``sqrt(area * aspect)`` and ``sqrt(area / aspect)``, each ``(n, tries)``.
    """
    area = height * width * _uniform(generator, (n, tries), *scale)
    aspect = torch.exp(_uniform(generator, (n, tries), math.log(ratio[0]), math.log(ratio[1])))
    return torch.round(torch.sqrt(area * aspect)).long(), torch.round(torch.sqrt(area / aspect)).long()


def _first_valid(values: Tensor, ok: Tensor) -> Tensor:
    """Per row, the value at the first try where ``ok`` holds (argmax returns the first maximum)."""
    return values.gather(1, ok.int().argmax(1, keepdim=True))[:, 0]


def _range(value, name: str) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name} must be a (low, high) range with low <= high, got {tuple(value)}")
    return low, high


def _probability(p: float, name: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} is a probability in [0, 1], got {p}")
    return float(p)


def _out_size(size: int | None, x: Tensor) -> tuple[int, int]:
    return tuple(x.shape[-2:]) if size is None else (int(size), int(size))


# ---------------------------------------------------------------- functional ops (batched)
def crop(x: Tensor, top: Tensor, left: Tensor, height: int, width: int) -> Tensor:
    """Cut a ``height x width`` window at ``(top[k], left[k])`` from each sample ``k``, with one gather."""
    b, c, _, w = x.shape
    rows = top.to(x.device)[:, None] + torch.arange(height, device=x.device)   # (B, h)
    cols = left.to(x.device)[:, None] + torch.arange(width, device=x.device)   # (B, w)
    # One gather of flat pixel indices: several times faster on a CPU than indexing rows and columns.
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, -1).expand(b, c, -1)
    return x.flatten(2).gather(2, flat).view(b, c, height, width)


def resized_crop(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, size) -> Tensor:
    """Crop box ``k`` of each sample and resize it bilinearly to ``size``, with one ``grid_sample``.

    Equals torchvision's ``resized_crop(..., antialias=False)`` per sample: output pixel centres
    map into the box (``align_corners=False``) and are clamped to the box's edge pixels.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    in_h, in_w = x.shape[-2:]

    def axis(start, length, n_out, n_in):  # normalised source coordinate of each output pixel, (B, n_out)
        start, length = start.to(x.device, x.dtype)[:, None], length.to(x.device, x.dtype)[:, None]
        src = start + (torch.arange(n_out, device=x.device, dtype=x.dtype) + 0.5) * length / n_out - 0.5
        src = torch.minimum(torch.maximum(src, start), start + length - 1)
        return (2 * src + 1) / n_in - 1

    gy, gx = axis(top, height, out_h, in_h), axis(left, width, out_w, in_w)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, out_h, out_w, 2)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def affine_grid(theta: Tensor, size) -> Tensor:
    """``F.affine_grid(theta, size, align_corners=False)`` for a 4-D ``size``, several times faster on a CPU.

    torch multiplies each sample's ``(H*W, 3)`` pixel coordinates by its own ``(3, 2)`` matrix,
    many tiny products that a CPU runs slowly (longer than the ``grid_sample`` that follows);
    one ``(H*W, 3) @ (3, 2N)`` product gives the same grid, up to float rounding.
    """
    n, _, h, w = size
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1  # pixel centres in [-1, 1]
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones_like(xs).expand(h, w)], -1)
    grid = torch.einsum("pk,nik->npi", base.view(h * w, 3), theta).reshape(n, h, w, 2)
    return grid.contiguous()  # grid_sample reads a contiguous grid about twice as fast


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror the samples where ``flip`` (bool, ``(B,)``) is True."""
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def affine(x: Tensor, angle: Tensor, translate: Tensor, scale: Tensor, interpolation: str = "bilinear") -> Tensor:
    """Rotate (degrees), scale and translate (pixels, ``(B, 2)`` as x, y) each sample about its centre.

    The same map as torchvision's ``affine(img, angle, translate, scale, shear=0, fill=None)``
    (its inverse matrix, rewritten in ``affine_grid``'s [-1, 1] units), so a positive angle turns
    the image clockwise as displayed, as in ``affine``; torchvision's ``rotate`` turns the other way.
    """
    h, w = x.shape[-2:]
    rad = torch.deg2rad(angle.double())
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    tx, ty = translate.double().unbind(1)
    # Output pixel -> input pixel, both centred on the image: input = M (output - t), M = R(-angle) / scale.
    theta = torch.stack([
        torch.stack([cos, sin * h / w, -(cos * tx + sin * ty) * 2 / w], 1),
        torch.stack([-sin * w / h, cos, (sin * tx - cos * ty) * 2 / h], 1),
    ], 1)
    grid = affine_grid(theta.to(x.device, x.dtype), x.shape)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)


def erase(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, value: float = 0.0) -> Tensor:
    """Set box ``k`` (rows ``top..top+height``, columns ``left..left+width``) of sample ``k`` to ``value``.

    A box of height 0 leaves its sample unchanged.
    """
    top, left, height, width = (t.to(x.device)[:, None] for t in (top, left, height, width))
    rows = torch.arange(x.shape[-2], device=x.device)
    cols = torch.arange(x.shape[-1], device=x.device)
    in_rows = (rows >= top) & (rows < top + height)   # (B, H)
    in_cols = (cols >= left) & (cols < left + width)  # (B, W)
    return x.masked_fill(in_rows[:, None, :, None] & in_cols[:, None, None, :], value)


# ---------------------------------------------------------------- random ops
class RandomCropPad(nn.Module):
    """torchvision's ``RandomCrop(size, padding)``: zero-pad every side, crop at a uniform offset.

    ``size=None`` keeps the input size (the usual "pad 4, crop back" jitter).
    """

    def __init__(self, size: int | None = None, padding: int = 0):
        super().__init__()
        self.size, self.padding = size, int(padding)

    def get_params(self, shape, generator=None) -> tuple[Tensor, Tensor]:
        """Offsets ``(top, left)`` into the padded image, each ``(B,)``."""
        b, _, h, w = shape
        th, tw = (h, w) if self.size is None else (self.size, self.size)
        ph, pw = h + 2 * self.padding, w + 2 * self.padding
        if th > ph or tw > pw:
            raise ValueError(f"crop {th}x{tw} is larger than the padded image {ph}x{pw}")
        return _offsets(generator, torch.full((b,), ph - th)), _offsets(generator, torch.full((b,), pw - tw))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        top, left = self.get_params(x.shape, generator)
        th, tw = _out_size(self.size, x)
        return crop(F.pad(x, [self.padding] * 4), top, left, th, tw)

    def extra_repr(self) -> str:
        return f"size={self.size}, padding={self.padding}"


class RandomResizedCropBatch(nn.Module):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)``, bilinear.

    Up to 10 tries of area in ``scale`` and aspect in ``ratio`` per sample, then torchvision's
    centre-crop fallback. Resizing has no antialiasing (``grid_sample`` has none), which differs
    from torchvision's default only when a crop shrinks by more than about 2x.
    """

    def __init__(self, size: int | None = None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        super().__init__()
        self.size, self.scale, self.ratio = size, _range(scale, "scale"), _range(ratio, "ratio")

    def get_params(self, shape, generator=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Boxes ``(top, left, height, width)``, each ``(B,)``."""
        b, _, h, w = shape
        widths, heights = _sample_boxes(b, h, w, self.scale, self.ratio, generator)
        ok = (widths > 0) & (widths <= w) & (heights > 0) & (heights <= h)
        found = ok.any(1)
        fb_h, fb_w = self._fallback(h, w)
        height = torch.where(found, _first_valid(heights, ok), fb_h)
        width = torch.where(found, _first_valid(widths, ok), fb_w)
        top = torch.where(found, _offsets(generator, h - height), (h - height) // 2)
        left = torch.where(found, _offsets(generator, w - width), (w - width) // 2)
        return top, left, height, width

    def _fallback(self, h: int, w: int) -> tuple[int, int]:
        """torchvision's box when every try fails: the largest centred box with an allowed aspect."""
        if w / h < self.ratio[0]:
            return int(round(w / self.ratio[0])), w
        if w / h > self.ratio[1]:
            return h, int(round(h * self.ratio[1]))
        return h, w

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return resized_crop(x, *self.get_params(x.shape, generator), _out_size(self.size, x))

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={tuple(round(r, 4) for r in self.ratio)}"


class RandomHFlip(nn.Module):
    """torchvision's ``RandomHorizontalFlip(p)``: mirror each sample with probability ``p``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _probability(p, "p")

    def get_params(self, shape, generator=None) -> Tensor:
        return torch.rand(shape[0], generator=generator) < self.p

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return hflip(x, self.get_params(x.shape, generator))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class RandomAffineBatch(nn.Module):
    """torchvision's ``RandomAffine(degrees, translate, scale)`` about the centre, fill 0, no shear.

    ``degrees`` is a maximum ``d`` (angle in ``[-d, d]``) or a ``(low, high)`` range; ``translate``
    a fraction of the size (one number or ``(x, y)``), rounded to whole pixels like torchvision.
    Bilinear by default, where torchvision defaults to nearest: smoother small rotations of small faces.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, interpolation: str = "bilinear"):
        super().__init__()
        self.degrees = (-float(degrees), float(degrees)) if isinstance(degrees, (int, float)) else _range(degrees, "degrees")
        if isinstance(translate, (int, float)):
            translate = (translate, translate)
        self.translate = None if translate is None else tuple(float(t) for t in translate)
        self.scale = None if scale is None else _range(scale, "scale")
        self.interpolation = interpolation

    def get_params(self, shape, generator=None) -> tuple[Tensor, Tensor, Tensor]:
        """``angle`` (degrees, ``(B,)``), ``translate`` (whole pixels, ``(B, 2)`` as x, y), ``scale`` (``(B,)``)."""
        b, _, h, w = shape
        angle = _uniform(generator, b, *self.degrees)
        translate = torch.zeros(b, 2)
        if self.translate is not None:
            max_dx, max_dy = self.translate[0] * w, self.translate[1] * h
            translate = torch.round(torch.stack([_uniform(generator, b, -max_dx, max_dx),
                                                 _uniform(generator, b, -max_dy, max_dy)], 1))
        scale = torch.ones(b) if self.scale is None else _uniform(generator, b, *self.scale)
        return angle, translate, scale

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # grid_sample's zero padding equals torchvision's fill=None; its RandomAffine(fill=0) also fades the border pixels.
        return affine(x, *self.get_params(x.shape, generator), interpolation=self.interpolation)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}, interpolation={self.interpolation!r}"


class RandomErasingBatch(nn.Module):
    """torchvision's ``RandomErasing(p, scale, ratio, value)``: with probability ``p`` set one box to ``value``.

    Up to 10 tries per sample for a box smaller than the image; a sample with no fitting box is left as it is.
    """

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value: float = 0.0):
        super().__init__()
        self.p = _probability(p, "p")
        self.scale, self.ratio, self.value = _range(scale, "scale"), _range(ratio, "ratio"), float(value)

    def get_params(self, shape, generator=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Boxes ``(top, left, height, width)``, each ``(B,)``; height and width are 0 where nothing is erased."""
        b, _, h, w = shape
        erase_it = torch.rand(b, generator=generator) < self.p
        heights, widths = _sample_boxes(b, h, w, self.scale, self.ratio, generator)
        ok = (heights < h) & (widths < w)
        keep = erase_it & ok.any(1)
        height = torch.where(keep, _first_valid(heights, ok), 0)
        width = torch.where(keep, _first_valid(widths, ok), 0)
        return _offsets(generator, h - height), _offsets(generator, w - width), height, width

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return erase(x, *self.get_params(x.shape, generator), value=self.value)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value}"


# ---------------------------------------------------------------- pipeline
class BatchAugment(nn.Module):
    """A sequence of random ops applied to a float batch ``(B, C, H, W)``, sharing one generator."""

    def __init__(self, ops: Iterable[nn.Module] = ()):
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim != 4:
            got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
            raise TypeError(f"augmentation expects a float tensor (B, C, H, W), got {got}; "
                            "convert uint8 images with images.float() / 255")
        for op in self.ops:
            x = op(x, generator)
        return x


def build_augment(*, crop_padding: int = 0, resized_crop: Sequence[float] | None = None, hflip: bool = False,
                  rotate: float = 0.0, translate: float = 0.0, scale: Sequence[float] | None = None,
                  erasing: float = 0.0, output_size: int | None = None, **unknown) -> BatchAugment:
    """The training augmentation a ``Recipe.augment`` dict describes, in torchvision's usual order.

    Args:
        crop_padding: zero-pad by this many pixels, then randomly crop back (``RandomCrop``).
        resized_crop: area range, e.g. ``(0.8, 1.0)``, for ``RandomResizedCrop`` (aspect 3/4..4/3).
        hflip: mirror half of the samples.
        rotate, translate, scale: ``RandomAffine``: max degrees, max shift as a fraction, zoom range.
        erasing: probability of ``RandomErasing`` (value 0).
        output_size: side of the output; default the input's. Smaller than the input with no
            other crop gives plain random crops (e.g. 48 -> 44, evaluated with ``tta_views``).
    """
    if unknown:
        valid = [name for name in inspect.signature(build_augment).parameters if name != "unknown"]
        raise TypeError(f"build_augment got unknown option(s) {', '.join(map(repr, sorted(unknown)))}; "
                        f"valid options: {', '.join(valid)}")
    ops: list[nn.Module] = []
    if resized_crop is not None:
        ops.append(RandomResizedCropBatch(output_size, scale=resized_crop))
    if crop_padding or (output_size is not None and resized_crop is None):
        ops.append(RandomCropPad(output_size, crop_padding))
    if hflip:
        ops.append(RandomHFlip(0.5))
    if rotate or translate or scale is not None:
        ops.append(RandomAffineBatch(rotate, translate or None, scale))
    if erasing:
        ops.append(RandomErasingBatch(erasing))
    return BatchAugment(ops)


# ---------------------------------------------------------------- evaluation views
def center_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window of each sample, for models whose input is smaller than the images."""
    return TF.center_crop(x, [size, size])


def ten_crop(x: Tensor, size: int) -> Tensor:
    """torchvision's ten crops (4 corners, centre, then the same mirrored) of each sample: ``(B, 10, C, size, size)``."""
    return torch.stack(TF.ten_crop(x, [size, size]), dim=1)


def tta_views(x: Tensor, mode: str | None = None, size: int | None = None) -> Tensor:
    """Test-time views ``(B, V, C, size, size)``; average the model's outputs over ``V``.

    ``None``/``"none"``: the centre crop (V=1); ``"flip"``: it and its mirror (V=2);
    ``"ten_crop"``: ``ten_crop`` (V=10). ``size`` defaults to the image's shorter side.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; valid modes: {', '.join(map(repr, TTA_MODES))}")
    size = min(x.shape[-2:]) if size is None else int(size)
    if mode == "ten_crop":
        return ten_crop(x, size)
    view = center_crop(x, size)
    return torch.stack([view, view.flip(-1)], 1) if mode == "flip" else view[:, None]
