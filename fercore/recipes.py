"""Training recipes: the numbers a scale changes (epochs, subset, batch, lr), never the code.

Each model registers ``smoke``, ``standard`` and ``full`` recipes with ``register_model``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

SCALES = ("smoke", "standard", "full")


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int = 64
    optimizer: str = "adam"          # "adam" | "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9            # for sgd
    scheduler: str | None = None     # None | "cosine" | "plateau" | "step"
    patience: int | None = None      # early stopping on the validation metric
    train_subset: int | None = None  # first N training images (after a seeded shuffle)
    val_subset: int | None = None
    augment: dict = field(default_factory=dict)  # kwargs for fercore.data.augment.build_augment
    monitor: str = "val_accuracy"    # validation metric that picks best.pt and drives early stopping

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kw) -> "Recipe":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})
