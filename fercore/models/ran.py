"""Region Attention Network: one shared backbone per face region, self- and relation-attention.

Wang, Peng, Yang, Meng, Qiao, "Region Attention Networks for Pose and Occlusion Robust Facial
Expression Recognition" (IEEE TIP 2020). The face is cut into K regions, the last the whole face
(``fercore.faces.regions.RAN_CROPS``: five fixed crops and the face); one shared backbone turns
region i into a feature F_i, and

- self-attention ``mu_i = sigmoid(FC(F_i))`` weighs the regions into ``F_m = sum mu_i F_i / sum mu_i``;
- relation attention ``nu_i = sigmoid(FC([F_i ; F_m]))`` weighs each region against that summary;
- the face is ``P = sum mu_i nu_i [F_i ; F_m] / sum mu_i nu_i`` and a linear classifier reads ``P``.

``penalty()`` is the region-biased loss (``fercore.losses.region_biased_loss``: the best crop's mu
must beat the whole face's by ``rb_margin``), which the Trainer adds to the classification loss.

The backbone is the small-face ResNet18 of notebook 04 (``fercore.models.resnet.ResNetFER``, with
its ``width`` and optional ``cbam``), its head removed. The crops are cut inside ``forward`` with
``roi_align`` from the face the model is given (44 px, as the ResNet), each resized to
``crop_size``, so the Trainer's batched augmentation, ``evaluate --tta ten_crop`` and ``predict``
work unchanged. ``forward(x, boxes)`` takes other boxes per face, such as
``fercore.faces.regions.landmark_boxes`` (eyes, nose, mouth, face). ``ran_landmarks`` trains on
those: its crops move with each face's points, so they are cut before the model, once per dataset
(``model_regions``), and arrive stacked as channels (``precut``).

What differs from the authors' code (kaiwang960112/Challenge-condition-FER-dataset, ``FERplus_dir``),
and why:

- Their code applies a softmax over the regions after each sigmoid (of mu and of nu); the paper does
  not. ``region_softmax=True`` does it.
- Their crops are read from image files cut by a script that was never published, and their
  ``CaffeCrop`` transform computes a crop but returns the uncropped image. Here the crops are
  computed, from the paper's description of them.
- Their checkpoint is chosen on the FERPlus test list; here on ``FER2013Valid`` (the Trainer
  selects on validation only).
- Their backbone is a 224-px ResNet18 or an iResNet50 pretrained on face recognition (MS-Celeb-1M);
  no such weights can be downloaded here. The backbone starts from scratch, or from any fercore
  checkpoint of a ``resnet18_*`` model through ``train --init`` (``load_backbone``).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..faces.regions import LANDMARK_CROPS, RAN_CROPS, crop_regions, ran_boxes
from ..losses import region_biased_loss
from ..recipes import Recipe
from . import register_model
from .resnet import ResNetFER


class RAN(nn.Module):
    """Shared backbone over ``crops`` (fractions of the face, the whole face last), mu and nu, a linear classifier."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1, width: float = 1.0, cbam: bool = False,
                 crop_size: int = 44, region_softmax: bool = False, rb_margin: float = 0.1, rb_weight: float = 1.0,
                 crops: dict | None = None, precut: bool = False):
        super().__init__()
        if crop_size < 8:
            raise ValueError(f"crop_size is the side the regions are resized to and must be >= 8, got {crop_size!r}")
        self.crops = dict(crops or RAN_CROPS)
        self.crop_size, self.region_softmax = int(crop_size), bool(region_softmax)
        self.rb_margin, self.rb_weight = float(rb_margin), float(rb_weight)
        self.precut = bool(precut)  # x is (N, K, s, s): the K grey regions, cut before the model
        self.backbone = ResNetFER(num_classes, 1 if precut else in_chans, width, cbam=cbam)
        self.backbone.head = nn.Identity()  # features only: the classifier reads P
        dim = self.backbone.blocks[-1].conv2.out_channels  # 512 x width
        self.alpha = nn.Linear(dim, 1)     # self-attention, mu
        self.beta = nn.Linear(2 * dim, 1)  # relation attention, nu
        self.fc = nn.Linear(2 * dim, num_classes)
        self._mu = None  # the last training forward's mu, for penalty()

    def _log_weights(self, logits: torch.Tensor) -> torch.Tensor:
        """log mu (or log nu): log sigmoid, or the log of the authors' softmax over regions of the sigmoids."""
        return torch.log_softmax(torch.sigmoid(logits), 1) if self.region_softmax else F.logsigmoid(logits)

    def forward_with_attention(self, x: torch.Tensor, boxes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Logits and ``{"mu": (N, K), "nu": (N, K), "boxes": (N, K, 4)}`` (pixel boxes, the whole face last;
        None for a ``precut`` model)."""
        n = len(x)
        if self.precut:  # the regions themselves, stacked as channels; no boxes in this view
            regions, boxes = x[:, :, None], None
        else:
            if boxes is None:
                boxes = ran_boxes(n, x.shape[-2], x.shape[-1], self.crops, device=x.device)
            regions = crop_regions(x, boxes, self.crop_size)              # (N, K, C, s, s)
        k = regions.shape[1]
        f = self.backbone.features(regions.flatten(0, 1))[0].view(n, k, -1)  # one backbone, every region
        # The weighted means are taken as softmaxes of the log-weights: the paper's sum mu_i F_i / sum mu_i
        # exactly, but finite when every sigmoid underflows to 0 (which 0 / 0 is not).
        log_mu = self._log_weights(self.alpha(f))                          # (N, K, 1)
        f_m = (log_mu.softmax(1) * f).sum(1, keepdim=True)                 # sum mu_i F_i / sum mu_i
        pairs = torch.cat([f, f_m.expand_as(f)], 2)                        # [F_i ; F_m]
        log_nu = self._log_weights(self.beta(pairs))
        p = ((log_mu + log_nu).softmax(1) * pairs).sum(1)                  # sum mu nu [F_i ; F_m] / sum mu nu
        mu, nu = log_mu.exp(), log_nu.exp()
        if self.training:
            self._mu = mu[..., 0]
        return self.fc(p), {"mu": mu[..., 0], "nu": nu[..., 0], "boxes": boxes}

    def forward(self, x: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_attention(x, boxes)[0]

    def penalty(self) -> torch.Tensor:
        """The region-biased loss of the last training batch, times ``rb_weight`` (0 turns it off)."""
        if self._mu is None or self.rb_weight == 0:
            return torch.zeros(())
        return self.rb_weight * region_biased_loss(self._mu, self.rb_margin)

    def load_backbone(self, state: dict) -> list[str]:
        """Copy a ``resnet18_*`` state dict's backbone tensors (all but its head) into ``self.backbone``; returns their names."""
        theirs = self.backbone_tensors(state)
        self.backbone.load_state_dict({**self.backbone.state_dict(), **theirs})
        return sorted(theirs)

    def backbone_tensors(self, state: dict) -> dict:
        """The tensors of ``state`` that ``load_backbone`` copies, checked to fit: the same ``width`` and ``cbam``,
        else a ValueError naming the first that do not."""
        own = self.backbone.state_dict()
        theirs = {k: v for k, v in state.items() if not k.startswith("head.") and not k.startswith("embed.")}
        bad = [k for k in own if k not in theirs or theirs[k].shape != own[k].shape]
        extra = [k for k in theirs if k not in own]
        if bad or extra:
            raise ValueError(f"the backbone does not fit this RAN (another width or cbam?): "
                             f"{', '.join((bad + extra)[:3])}{' ...' if len(bad) + len(extra) > 3 else ''}")
        return theirs


# Recipes. Six regions through the backbone cost six backbones. Trainer speed on this 2-core CPU,
# batch 64 (benchmarks/throughput.py --model ran --model-arg width=W --model-arg crop_size=S):
# 207 / 117 / 31 img/s at width 0.125 / 0.25 / 0.5 with 32-px crops, 52 img/s at width 0.25 with 44 px.
# `standard`: width 0.25, 32-px crops, 12 epochs: about 45 min on FERPlus's 25,000 training faces.
# `full`, the authors' FERPlus recipe: SGD 0.1 (they decay it 10x at 30%, 50% and 80% of the epochs;
# cosine here, as notebook 04), momentum 0.9, weight decay 5e-4 (their defaults), 70 epochs as the report.
_AUG = {"output_size": 44, "hflip": True}
_SGD = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, scheduler="cosine", augment=_AUG)
_RECIPES = {
    "smoke": Recipe(epochs=6, batch_size=32, optimizer="adam", lr=2e-3, scheduler="cosine", augment=_AUG,
                    train_subset=1200, val_subset=300, model_args={"width": 0.125, "crop_size": 32}),
    "standard": Recipe(epochs=12, batch_size=64, model_args={"width": 0.25, "crop_size": 32}, **_SGD),
    "full": Recipe(epochs=70, batch_size=64, **_SGD),
}


# `train --model ran --init RUN/best.pt` with a checkpoint of one of these starts the backbone from it.
BACKBONES = {"resnet18_fer": {"cbam": False}, "resnet18_cbam": {"cbam": True}}


@register_model(input_size=(1, 44, 44), num_classes=8, recipes=_RECIPES, backbones=BACKBONES)
def ran(num_classes: int = 8, in_chans: int = 1, width: float = 1.0, cbam: bool = False, crop_size: int = 44,
        region_softmax: bool = False, rb_margin: float = 0.1, rb_weight: float = 1.0) -> RAN:
    """RAN over the paper's five fixed crops and the face, ResNet18 backbone (``width``), region-biased loss."""
    return RAN(num_classes, in_chans, width, cbam, crop_size, region_softmax, rb_margin, rb_weight)


@register_model(input_size=(1, 44, 44), num_classes=8, recipes=_RECIPES, backbones=BACKBONES)
def ran_face_only(num_classes: int = 8, in_chans: int = 1, width: float = 1.0, cbam: bool = False,
                  crop_size: int = 44) -> RAN:
    """The same network given the whole face alone (one region, no region-biased loss): RAN's baseline."""
    return RAN(num_classes, in_chans, width, cbam, crop_size, rb_weight=0.0, crops={"face": RAN_CROPS["face"]})


# The landmark crops are cut once, before augmentation, so of the augmentations only the flip applies
# (as for Prior Attention's blocks); RAN's attention is shared across regions, so a mirrored eye is
# still an eye to it.
_FLIP = {"hflip": True}
_LANDMARK_RECIPES = {k: replace(r, augment=_FLIP, model_args={a: v for a, v in r.model_args.items() if a != "crop_size"})
                     for k, r in _RECIPES.items()}  # the crops are cut at the input size, 32 px
_K = len(LANDMARK_CROPS) + 1  # eyes, nose, mouth, then the whole face


@register_model(input_size=(_K, 32, 32), num_classes=8, mean=(0.5,) * _K, std=(0.5,) * _K, regions="ran_landmarks",
                recipes=_LANDMARK_RECIPES, backbones=BACKBONES)
def ran_landmarks(num_classes: int = 8, in_chans: int = _K, width: float = 1.0, cbam: bool = False,
                  region_softmax: bool = False, rb_margin: float = 0.1, rb_weight: float = 1.0) -> RAN:
    """RAN over squares centred on the eyes, nose and mouth (``landmark_boxes``) and the whole face, cut at 32 px
    from the 68 landmarks before the model (``fercore.faces.regions.model_regions``)."""
    if in_chans != _K:
        raise ValueError(f"it eats the {_K} stacked landmark crops as channels (fercore.faces.regions.model_regions), "
                         f"got in_chans={in_chans}")
    crops = dict.fromkeys([*LANDMARK_CROPS, "face"])
    return RAN(num_classes, 1, width, cbam, 32, region_softmax, rb_margin, rb_weight, crops=crops, precut=True)
