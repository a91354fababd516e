"""The one model-input path: a model's ``default_cfg`` -> "uint8 faces -> the tensor this model eats".

``resolve_data_config(model)`` reads the model's config (timm's function of the same name is
the model), ``ModelInput(model)`` turns images into the model's input with it, and
``predict_logits`` / ``predict_proba`` are the one prediction function. The Trainer, the
visualisations, ``fercore.predict`` and the widgets all call these, so a model with another
input size or channel count works everywhere at once.

The steps, in order (each is skipped when it would change nothing):

1. uint8 ``(N, C, H, W)`` -> float in [0, 1] on the model's device (floats must already be in [0, 1]);
2. **resize** (bilinear, antialiased) to ``resize_size``: with ``crop_pct`` in the config,
   timm's rule ``input_size / crop_pct``; without it, images at least as large as the
   input keep their size (step 4 cuts the centre: a 44-px model trained on random 44-px
   crops of 48-px faces sees the central 44 px) and smaller ones are resized to the input;
3. the training augmentation, when one is given (it may crop to the input size itself);
4. **centre crop** to ``input_size`` (or the test-time views: ``flip``, ``ten_crop``);
5. grey -> colour: one channel is repeated when the model takes three (every FER dataset is grey);
6. ``(x - mean) / std``, then channels-last memory format when asked.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from .data.augment import tta_views

__all__ = ["resolve_data_config", "ModelInput", "as_images", "evaluating", "predict_logits", "predict_proba"]


def resolve_data_config(model) -> dict:
    """A model's (or a ``default_cfg`` dict's) input settings, filled in and checked.

    Returns ``input_size`` (``(C, H, W)``, or None for a bare module: images are then used
    at their own size), ``mean`` and ``std`` (one value per channel), ``crop_pct`` (None or a
    fraction in (0, 1]).
    """
    cfg = model if isinstance(model, dict) else (getattr(model, "default_cfg", None) or {})
    input_size = tuple(int(v) for v in cfg["input_size"]) if cfg.get("input_size") else None
    mean, std = tuple(float(v) for v in cfg.get("mean", (0.5,))), tuple(float(v) for v in cfg.get("std", (0.5,)))
    if input_size is not None:
        channels = input_size[0]
        mean, std = (mean * channels, std * channels) if len(mean) == 1 else (mean, std)
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"default_cfg has {len(mean)} mean and {len(std)} std values for {channels}-channel input")
    crop_pct = cfg.get("crop_pct")
    if crop_pct is not None and not 0 < float(crop_pct) <= 1:
        raise ValueError(f"default_cfg crop_pct is the fraction of the resized image kept, in (0, 1]; got {crop_pct}")
    return {"input_size": input_size, "mean": mean, "std": std,
            "crop_pct": None if crop_pct is None else float(crop_pct)}


def as_images(images, where: str = "images") -> torch.Tensor:
    """A batch ``(N, C, H, W)`` from a tensor or array (one ``(C, H, W)`` image becomes a batch of one).

    uint8 means 0..255; floats must lie in [0, 1] (``images.float()`` of uint8 data is the usual
    mistake, and it would silently feed the model values up to 255).
    """
    x = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{where}: expected images (N, C, H, W) or one image (C, H, W), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"{where}: expected uint8 images (0..255) or floats in [0, 1], got {x.dtype}")
    if x.is_floating_point() and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{where}: float images must lie in [0, 1], got {x.min().item():.3g}..{x.max().item():.3g}; "
                         "pass the uint8 images or divide by 255")
    return x


def model_device(model) -> torch.device:
    """Where the model's first parameter or buffer lives (the CPU for a config dict or a module without any)."""
    for tensor in (*model.parameters(), *model.buffers()) if isinstance(model, nn.Module) else ():
        return tensor.device
    return torch.device("cpu")


class ModelInput:
    """``ModelInput(model)(images)``: the tensor ``model`` eats for uint8 (or [0, 1] float) ``images``.

    ``model`` may also be a ``default_cfg`` dict. ``device`` defaults to the model's; ``channels_last`` gives that memory format (faster
    convolutions on CPUs and GPUs). ``config`` is ``resolve_data_config(model)``.
    """

    def __init__(self, model, device=None, channels_last: bool = False):
        self.config = resolve_data_config(model)
        self.device = torch.device(device) if device is not None else model_device(model)
        self.channels_last = channels_last
        self.mean = torch.tensor(self.config["mean"], device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(self.config["std"], device=self.device).view(1, -1, 1, 1)
        size = self.config["input_size"]
        self.input_hw = tuple(size[1:]) if size else None

    def resize_hw(self, hw) -> tuple[int, int]:
        """The size images of size ``hw`` are resized to before the crop (step 2 of the module docstring)."""
        hw = tuple(hw)
        if self.input_hw is None:
            return hw
        if self.config["crop_pct"] is not None:
            return tuple(round(s / self.config["crop_pct"]) for s in self.input_hw)
        return hw if all(a >= b for a, b in zip(hw, self.input_hw)) else self.input_hw

    def scale(self, images) -> torch.Tensor:
        """Steps 1-2: float [0, 1] on the device, at the size augmentation and cropping start from."""
        x = as_images(images).to(self.device, non_blocking=True)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        size = self.resize_hw(x.shape[-2:])
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 4-6 on a float batch: centre crop, grey -> colour, normalise, memory format."""
        if self.input_hw and tuple(x.shape[-2:]) != self.input_hw:
            x = TF.center_crop(x, list(self.input_hw))
        channels = len(self.config["mean"]) if self.input_hw else x.shape[1]
        if x.shape[1] != channels:
            if x.shape[1] != 1:
                raise ValueError(f"the model takes {channels}-channel input and the images have {x.shape[1]} channels; "
                                 "only grey images are converted (repeated) for a colour model")
            x = x.expand(-1, channels, -1, -1)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, images, augment=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """The model's input; ``augment`` (a ``BatchAugment``) runs between resize and crop, drawing from ``generator``."""
        x = self.scale(images)
        if augment is not None:
            x = augment(x, generator=generator)
        return self.finish(x)

    def views(self, images, tta=None) -> tuple[torch.Tensor, int]:
        """Test-time views as one batch ``(N * V, C, h, w)`` (image by image, ``V`` views each) and ``V``."""
        x = self.scale(images)
        size = self.input_hw[0] if self.input_hw else None
        views = tta_views(x, tta, size)  # (N, V, C, s, s); None -> the centre crop
        return self.finish(views.flatten(0, 1)), views.shape[1]

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Model input back to [0, 1] pixels (CPU float): what the model sees, as an image."""
        return (x.detach().float() * self.std.to(x.device) + self.mean.to(x.device)).clamp(0, 1).cpu()


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode inside the block; afterwards every submodule is back in the mode it was in."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@torch.no_grad()
def predict_logits(model: nn.Module, images, tta=None, batch_size: int = 256, *, model_input: ModelInput | None = None,
                   amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Float logits ``(N, K)`` on the model's device, in eval mode; TTA views are averaged in logit space.

    ``tta``: None, ``"flip"`` or ``"ten_crop"`` (``fercore.data.augment.tta_views``).
    ``model_input`` reuses a ``ModelInput`` (the Trainer's, on its device); ``amp_dtype`` runs
    the forward pass under autocast.
    """
    model_input = model_input or ModelInput(model)
    images = as_images(images, "predict")
    out = []
    with evaluating(model):
        for chunk in images.split(batch_size):
            x, v = model_input.views(chunk, tta)
            with torch.autocast(model_input.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            out.append(logits.float().view(len(chunk), v, -1).mean(1))
    return torch.cat(out)


def predict_proba(model: nn.Module, images, tta=None, batch_size: int = 256, **kw) -> torch.Tensor:
    """Class probabilities ``(N, K)`` (CPU float) of ``images``: ``predict_logits`` then softmax."""
    return predict_logits(model, images, tta, batch_size, **kw).softmax(1).cpu()
