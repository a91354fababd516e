"""A VGG-style CNN for 48x48 faces: stacked 3x3 convolutions between max-pools.

Ohlsen, "Facial Expression Recognition with Convolutional Neural Networks" (course report,
FER2013 with FERPlus majority labels, 73.2%): conv 32,32 | pool | conv 64,64 | pool |
conv 128,128,128 | pool | conv 256,256,256 | pool | FC 1024 | FC 7, all 3x3 with ReLU.
Two stacked 3x3 convs see a 5x5 window with fewer weights and one more non-linearity than a
single 5x5 conv, which is why the stacks beat alternating conv and pool (Simonyan &
Zisserman, 2015).

What differs from the report, and why: dropout (0.5) before each FC layer, which the report
does not list; without it the 2.4 M-weight FC layer memorises FER2013 within a few epochs.
Pass ``dropout=0`` for the plain network.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..recipes import Recipe
from . import register_model


def conv_stack(c_in: int, widths: list[int]) -> list[nn.Module]:
    """3x3 conv + ReLU per width, then a 2x2 max-pool."""
    layers = []
    for c_out in widths:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
        c_in = c_out
    return layers + [nn.MaxPool2d(2)]


class VGGFER(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, stages=((32, 32), (64, 64), (128, 128, 128), (256, 256, 256)),
                 fc: int = 1024, dropout: float = 0.5, input_size: int = 48):
        super().__init__()
        layers, c_in = [], in_chans
        for widths in stages:
            layers += conv_stack(c_in, list(widths))
            c_in = widths[-1]
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(stages)  # 48 -> 3 after four pools
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * side * side, fc),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(fc, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


_AUG = dict(crop_padding=4, hflip=True, rotate=10.0)


@register_model(recipes={
    "smoke": Recipe(epochs=4, batch_size=64, lr=1e-3, train_subset=1500, val_subset=700, monitor="val_loss", augment=_AUG),
    "standard": Recipe(epochs=25, batch_size=64, lr=1e-3, patience=6, monitor="val_loss", augment=_AUG),
    "full": Recipe(epochs=100, batch_size=128, lr=1e-3, patience=10, monitor="val_loss", augment=_AUG),
})
def vgg_fer(num_classes: int = 7, in_chans: int = 1, **kw) -> VGGFER:
    """Ohlsen's VGG-style CNN, about 4.0 M parameters; Adam 1e-3, early stopping on validation loss."""
    return VGGFER(num_classes=num_classes, in_chans=in_chans, **kw)
