"""A small baseline CNN, the course's first model (no paper).

A stem conv at full resolution, then two blocks of conv-BN-ReLU x2 at half and quarter
resolution (48 -> 24 -> 12 -> 6), a 3x3 average pool, dropout, a linear classifier.
Widths stay small at high resolution, where a conv costs the most. The 3x3 pool keeps
*where* features are (brows high or low, mouth corners up or down); a global pool throws
that away, and the same model with one learned several times slower on the synthetic faces. It exists so that the data, augmentation, Trainer
and CLI can be exercised end to end in seconds on a CPU; the paper models follow the same
pattern.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..recipes import Recipe
from . import register_model


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SimpleCNN(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: int = 16, dropout: float = 0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(in_chans, w), nn.MaxPool2d(2),
            conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * 9, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


_AUG = dict(crop_padding=4, hflip=True, rotate=10.0, erasing=0.25)


@register_model(recipes={
    "smoke": Recipe(epochs=6, batch_size=64, lr=2e-3, train_subset=3500, val_subset=700, augment=_AUG),
    "standard": Recipe(epochs=30, batch_size=64, lr=1e-3, scheduler="cosine", patience=8, augment=_AUG),
    "full": Recipe(epochs=100, batch_size=128, lr=1e-3, weight_decay=1e-4, scheduler="cosine", patience=20, augment=_AUG),
})
def simple_cnn(num_classes: int = 7, in_chans: int = 1, **kw) -> SimpleCNN:
    """The baseline CNN at width 16 (about 74 k parameters)."""
    return SimpleCNN(num_classes=num_classes, in_chans=in_chans, **kw)
