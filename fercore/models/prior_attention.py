"""Prior Attention: a CNN+MLP branch per landmark block, their features joined by an MLP.

Turner & Gat, "Facial Expression Recognition Using Prior Attention" (2022). The attention is done
before the network: 68 landmarks cut a brows+eyes block and a mouth block out of the face
(``fercore.faces.regions``), each resized to 32x32, and each block goes through its own branch;
the two 100-d features are concatenated and classified by an MLP. Layers as in the authors'
``architecture.py``: per branch conv 1->32 (3x3, pad 1), BN, ReLU, conv 32->64 (3x3, pad 1), ReLU,
max-pool 2, dropout 0.1, FC 16384->1024, ReLU, 1024->512, ReLU, dropout 0.1, 512->100; head
dropout 0.1, FC 200->1024, ReLU, 1024->512, ReLU, dropout 0.1, 512->7. The branches do not share
weights: 35,480,655 parameters for 7 classes (all but 1% in the two FC 16384->1024 layers).

Input: one stacked tensor ``(N, 2, 32, 32)``, brows+eyes in channel 0 and mouth in channel 1,
rather than a dict. The blocks are then a dataset's ``images`` like any other, so the Trainer,
``ModelInput`` (one mean/std per block), ``predict_logits``, ``evaluate`` and the batched
augmentation work unchanged. Of the augmentations only the horizontal flip is consistent with the
blocks: the mirrored landmarks give the mirrored boxes (the point sets are left-right symmetric),
so flipping every block equals cutting the blocks of the flipped face. A rotation, shift or crop
of the whole face is not (the boxes would move with the face): the recipes use the flip alone.

What differs from the authors' code, and why: the blocks are cut from each face's own image (their
code cuts every block from the last image it loaded) and a box's top edge is its points' smallest
y (theirs took the right-most point's); the margin is a fraction of the face size (see regions.py).
Both bugs can be reproduced to measure them: ``--data-arg regions_bug=leftover_image`` (or
``top_from_rightmost``, or both joined by a comma) on the ``synthetic`` and ``ferg`` loaders; their
random split is ``split_mode=random`` and the held-out characters ``split_mode=character``.

Ablations with the same design and training budget: ``prior_attention_eyes`` and
``prior_attention_mouth`` see one block (the same stacked input, one branch, a 100->1024 head),
and ``prior_attention_face`` sees the whole face resized to 32x32 through one branch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..recipes import Recipe
from . import register_model

BLOCK_CHANNELS = {"eyes": 0, "mouth": 1}  # the stacked input's channels (fercore.faces.regions.BLOCKS)


def branch(in_chans: int = 1, features: int = 100, dropout: float = 0.1, size: int = 32) -> nn.Sequential:
    """One block's CNN+MLP: ``(N, in_chans, size, size)`` -> ``(N, features)``."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Flatten(), nn.Linear(64 * (size // 2) ** 2, 1024), nn.ReLU(inplace=True),
        nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(512, features),
    )


class PriorAttention(nn.Module):
    """One unshared ``branch`` per input channel named in ``channels``, then the MLP head.

    ``channels=None``: the whole input (a face of ``in_chans`` channels) through one branch.
    """

    def __init__(self, channels=(0, 1), num_classes: int = 7, dropout: float = 0.1, in_chans: int = 1):
        super().__init__()
        self.channels = None if channels is None else tuple(channels)
        n, c_in = (1, in_chans) if channels is None else (len(self.channels), 1)
        self.branches = nn.ModuleList(branch(c_in, 100, dropout) for _ in range(n))
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(100 * n, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(512, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated branch features ``(N, 100 * branches)``."""
        if self.channels is None:
            return self.branches[0](x)
        return torch.cat([b(x[:, c:c + 1]) for c, b in zip(self.channels, self.branches)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _blocks_model(blocks, num_classes: int, in_chans: int, dropout: float) -> PriorAttention:
    if in_chans != len(BLOCK_CHANNELS):
        raise ValueError(f"it eats the stacked blocks (brows+eyes, mouth) as {len(BLOCK_CHANNELS)} channels "
                         f"(fercore.faces.regions.model_regions), got in_chans={in_chans}")
    return PriorAttention([BLOCK_CHANNELS[b] for b in blocks], num_classes, dropout)


# The paper's recipe (Adam 1e-3, batch 64, 50 epochs; it names no augmentation) is `full`; the
# smaller scales add the flip, the one augmentation consistent with the blocks (module docstring).
# `standard` is 15 epochs because the two 16384->1024 layers cap this 2-core CPU at about 137 img/s
# (3.5 min per FER2013 epoch): 15 epochs fit in about an hour. `smoke` is a run that learns the
# synthetic faces (125 steps, 75 s alone here: 84% test); the 30 steps it had before stayed near chance.
_FLIP = {"hflip": True}
_RECIPES = {
    "smoke": Recipe(epochs=5, batch_size=64, lr=1e-3, train_subset=1600, val_subset=300, augment=_FLIP),
    "standard": Recipe(epochs=15, batch_size=64, lr=1e-3, scheduler="cosine", patience=6, augment=_FLIP),
    "full": Recipe(epochs=50, batch_size=64, lr=1e-3),
}
_BLOCKS = dict(input_size=(2, 32, 32), mean=(0.5, 0.5), std=(0.5, 0.5), regions="prior_attention", recipes=_RECIPES)


@register_model(**_BLOCKS)
def prior_attention(num_classes: int = 7, in_chans: int = 2, dropout: float = 0.1) -> PriorAttention:
    """Prior Attention (Turner & Gat 2022): brows+eyes and mouth blocks, two branches, 35.5 M parameters."""
    return _blocks_model(("eyes", "mouth"), num_classes, in_chans, dropout)


@register_model(**_BLOCKS)
def prior_attention_eyes(num_classes: int = 7, in_chans: int = 2, dropout: float = 0.1) -> PriorAttention:
    """Ablation: the brows+eyes block alone, one branch."""
    return _blocks_model(("eyes",), num_classes, in_chans, dropout)


@register_model(**_BLOCKS)
def prior_attention_mouth(num_classes: int = 7, in_chans: int = 2, dropout: float = 0.1) -> PriorAttention:
    """Ablation: the mouth block alone, one branch."""
    return _blocks_model(("mouth",), num_classes, in_chans, dropout)


@register_model(input_size=(1, 32, 32), crop_pct=1.0, recipes=_RECIPES)
def prior_attention_face(num_classes: int = 7, in_chans: int = 1, dropout: float = 0.1) -> PriorAttention:
    """Ablation: no prior attention, the whole face resized to 32x32 through one branch of the same design."""
    return PriorAttention(None, num_classes, dropout, in_chans)
