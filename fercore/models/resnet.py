"""ResNet18 for small faces, with CBAM inside its blocks and a linear or A-Softmax head.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016); Woo et al., "CBAM:
Convolutional Block Attention Module" (ECCV 2018), whose official code
(Jongchan/attention-module, ``MODELS/cbam.py``, ``model_resnet.py``) this follows; the A-Softmax
head of SphereFace (Liu et al. 2017) is in ``heads.py``.

Backbone: the small-image ResNet18 of CBAM's CIFAR setting, a 3x3 stride-1 stem conv with batch
norm and ReLU, no max-pool, then BasicBlocks [2, 2, 2, 2] at 64-128-256-512 channels (times
``width``), stride 2 at the first block of stages 2-4: a 44-px face gives maps of 44, 22, 11, 6 px.

CBAM, after the block's second batch norm and before the residual addition, as in the official code:

- channel gate: the map's average- and max-pooled descriptors ``(N, C)`` through ONE shared MLP
  (C -> C/16 -> C, ReLU, with biases), summed, sigmoid: one weight per channel;
- spatial gate: the channel-max and channel-mean maps ``(N, 2, H, W)``, a 7x7 conv (no bias),
  batch norm, sigmoid: one weight per position. As in the official code its batch-norm weight
  starts at 0, so every position starts at 0.5 and the spatial gate grows only where it helps.
- ``cbam_order``: ``channel_first`` (the paper's choice, its Table 3's best), ``spatial_first``,
  or ``parallel``: both gates computed from the same block output and applied together,
  ``x * Mc(x) * Ms(x)``.

The gates are written here rather than taken from timm: timm is not a fercore dependency (nor
installed here), and its ``CbamModule`` differs from the official code (an MLP without biases,
batch-norm momentum 0.1 instead of 0.01, no zero start of the spatial gate).

What differs from the official code, and why:

- Global average pooling before the head. The CIFAR code pools with ``avg_pool2d(x, 4)``, which
  fits its 4x4 last map (32 px / 8); a 44-px face leaves a 6x6 map, where a 4x4 pool would keep
  one window and drop the last two rows and columns. Global pooling averages all 36 positions and
  is what a 4x4 pool of a 4x4 map is anyway.
- ``width`` scales every stage (``width=0.25``: 16-32-64-128): at width 1 this 2-core CPU trains
  only about 28 faces per second. The MLP keeps at least one hidden unit (8 channels // 16 = 0).
- Input ``(1, 44, 44)`` grey. The 48-px faces are not resized: training takes random 44-px crops
  (``augment={"output_size": 44}``), and ``fercore.transforms.ModelInput`` centre-crops 44 px
  at test time, or ``evaluate --tta ten_crop`` averages the ten 44-px crops. So the model sees
  pixels at the scale it was trained on; ``crop_pct`` (a resize to 44 / crop_pct) is not wanted.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..recipes import Recipe
from . import register_model
from .heads import build_head

CBAM_ORDERS = ("channel_first", "spatial_first", "parallel")


class ChannelGate(nn.Module):
    """Channel weights ``(N, C, 1, 1)``: sigmoid(MLP(avg-pool(x)) + MLP(max-pool(x))), one shared MLP."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg, peak = x.mean((2, 3)), x.amax((2, 3))
        return torch.sigmoid(self.mlp(avg) + self.mlp(peak))[:, :, None, None]


class SpatialGate(nn.Module):
    """Spatial weights ``(N, 1, H, W)``: sigmoid(BN(conv7x7([max_c x, mean_c x])))."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)  # the official code's momentum
        nn.init.zeros_(self.bn.weight)  # every position starts at 0.5, as in the official code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        return torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel then spatial gate (or ``cbam_order``); returns the gated map and both gates."""

    def __init__(self, channels: int, reduction: int = 16, order: str = "channel_first"):
        super().__init__()
        if order not in CBAM_ORDERS:
            raise ValueError(f"cbam_order must be one of {', '.join(CBAM_ORDERS)}, got {order!r}")
        self.channel, self.spatial, self.order = ChannelGate(channels, reduction), SpatialGate(), order

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if self.order == "channel_first":
            wc = self.channel(x)
            ws = self.spatial(x * wc)
        elif self.order == "spatial_first":
            ws = self.spatial(x)
            wc = self.channel(x * ws)
        else:  # parallel: both from the same input
            wc, ws = self.channel(x), self.spatial(x)
        return x * wc * ws, {"channel": wc.flatten(1), "spatial": ws[:, 0]}


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (-CBAM), plus the shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, cbam: CBAM | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.cbam = cbam
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        maps = {}
        if self.cbam is not None:
            out, maps = self.cbam(out)
        return F.relu(out + self.shortcut(x)), maps


class ResNetFER(nn.Module):
    """ResNet18 (``layers=(2, 2, 2, 2)``) at ``width``, CBAM in every block when ``cbam``, ``head`` on top.

    ``head``: ``"linear"`` or ``"asoftmax"`` (``fercore.models.heads``; ``head_args`` go to it).
    ``embed_dim``: a linear layer from the pooled features to ``embed_dim`` before the head, as
    SphereFace's fc5; ``embed_dim=2`` gives features that can be drawn on the circle (notebook 04).
    ``forward(x, targets=None)``: the A-Softmax head uses ``targets`` in training (``takes_targets``).
    """

    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: float = 1.0, cbam: bool = False,
                 cbam_order: str = "channel_first", reduction: int = 16, head: str = "linear", head_args=None,
                 layers=(2, 2, 2, 2), embed_dim: int | None = None):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width multiplies the channels 64-128-256-512 and must be > 0, got {width!r}")
        if cbam_order not in CBAM_ORDERS:
            raise ValueError(f"cbam_order must be one of {', '.join(CBAM_ORDERS)}, got {cbam_order!r}")
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        blocks, c_in = [], widths[0]
        for stage, (c_out, n) in enumerate(zip(widths, layers)):
            for i in range(n):
                gate = CBAM(c_out, reduction, cbam_order) if cbam else None
                blocks.append(BasicBlock(c_in, c_out, 2 if stage and not i else 1, gate))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.block_names = [f"layer{s + 1}.{i}" for s, n in enumerate(layers) for i in range(n)]
        self.embed = nn.Linear(c_in, embed_dim) if embed_dim else nn.Identity()
        self.head = build_head(head, embed_dim or c_in, num_classes, **(head_args or {}))
        for m in self.modules():  # He initialisation, as the official code and torchvision
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def takes_targets(self) -> bool:
        """Whether training should call ``model(x, targets)`` (a margin head); the Trainer asks this."""
        return self.head.takes_targets

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Pooled features ``(N, C)`` (``(N, embed_dim)`` with an embedding) and every block's CBAM gates."""
        x, maps = self.stem(x), {}
        for name, block in zip(self.block_names, self.blocks):
            x, gates = block(x)
            maps.update({f"{name}.{k}": v for k, v in gates.items()})
        return self.embed(x.mean((2, 3))), maps  # global average pooling (module docstring)

    def forward_with_attention(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Logits and the CBAM gates by block: ``"layer1.0.channel"`` ``(N, C)``, ``"layer1.0.spatial"`` ``(N, H, W)``.

        Without CBAM the dict is empty.
        """
        feats, maps = self.features(x)
        return self.head(feats, targets), maps

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_attention(x, targets)[0]


# The paper trains 300 epochs at batch 64 from random initialisation and names no optimiser: `full`
# uses the usual recipe of this small-image ResNet18 (SGD, momentum 0.9, lr 0.1 cosine, weight decay
# 5e-4, as for CIFAR in kuangliu/pytorch-cifar), a strong L2 because 28k faces are few for 11 M weights.
# Every scale trains on random 44-px crops of the 48-px faces and their mirrors, and tests on the centre.
# `smoke` and `standard` shrink the width through the recipe's model_args (--model-arg width=1 undoes it).
# `smoke` is Adam: in its 300 steps SGD barely leaves chance (resnet18_fer at width 0.25, 200 steps on the
# synthetic faces: val 29% with SGD 0.05, 52% with Adam 1e-3). At width 0.125 resnet18_cbam_asoftmax took
# 56 s for it on one shared thread here (val 55%); CBAM's element-wise gates, not the convs, set its pace.
_AUG = {"output_size": 44, "hflip": True}
_SGD = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, scheduler="cosine", augment=_AUG)
_RECIPES = {
    "smoke": Recipe(epochs=6, batch_size=32, optimizer="adam", lr=2e-3, scheduler="cosine", augment=_AUG,
                    train_subset=1600, val_subset=300, model_args={"width": 0.125}),
    # Trainer speed here, 2 threads, batch 64 (benchmarks/throughput.py --scale standard --model-arg width=W):
    # resnet18_fer 26 / 80 / 256 img/s and resnet18_cbam_asoftmax 23 / 61 / 153 img/s at width 1 / 0.5 / 0.25.
    # An hour buys 7 FER2013 epochs at width 0.5 or 15+ at 0.25: 15 epochs at 0.25 (about 50 min with CBAM).
    "standard": Recipe(epochs=15, batch_size=64, model_args={"width": 0.25}, **_SGD),
    "full": Recipe(epochs=300, batch_size=64, **_SGD),
}
_CFG = dict(input_size=(1, 44, 44), recipes=_RECIPES)


@register_model(**_CFG)
def resnet18_fer(num_classes: int = 7, in_chans: int = 1, width: float = 1.0, embed_dim: int | None = None) -> ResNetFER:
    """ResNet18 for 44-px faces, no attention, linear head: 11.2 M parameters at width 1."""
    return ResNetFER(num_classes, in_chans, width, embed_dim=embed_dim)


@register_model(**_CFG)
def resnet18_cbam(num_classes: int = 7, in_chans: int = 1, width: float = 1.0, cbam_order: str = "channel_first",
                  reduction: int = 16, embed_dim: int | None = None) -> ResNetFER:
    """ResNet18 with CBAM in every block (Woo et al. 2018), linear head."""
    return ResNetFER(num_classes, in_chans, width, cbam=True, cbam_order=cbam_order, reduction=reduction,
                     embed_dim=embed_dim)


@register_model(**_CFG)
def resnet18_cbam_asoftmax(num_classes: int = 7, in_chans: int = 1, width: float = 1.0,
                           cbam_order: str = "channel_first", reduction: int = 16, m: int = 4,
                           lambda_min: float = 5.0, gamma: float = 0.12, embed_dim: int | None = None) -> ResNetFER:
    """ResNet18 with CBAM and SphereFace's A-Softmax head (margin ``m``, lambda annealed to ``lambda_min``)."""
    return ResNetFER(num_classes, in_chans, width, cbam=True, cbam_order=cbam_order, reduction=reduction,
                     head="asoftmax", head_args={"m": m, "lambda_min": lambda_min, "gamma": gamma}, embed_dim=embed_dim)
