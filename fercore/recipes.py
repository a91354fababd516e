"""Training recipes: the numbers a scale changes (epochs, subset, batch, lr), never the code.

Each model registers ``smoke``, ``standard`` and ``full`` recipes with ``register_model``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

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
    class_weights: str | None = None  # None | "balanced": cross-entropy weight n / (K * n_k) per class

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kw) -> "Recipe":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def with_args(self, args: dict | None) -> "Recipe":
        """This recipe with fields replaced, e.g. ``{"class_weights": "balanced"}``.

        A dotted key changes one entry of a dict field and keeps the rest:
        ``{"augment.rotate": 0}`` turns rotation off but keeps the flips and crops.
        """
        valid = {f.name for f in fields(self)}
        changes: dict = {}
        for key, value in (args or {}).items():
            name, _, sub = key.partition(".")
            if name not in valid:
                raise ValueError(f"unknown recipe field {name!r} in {key!r}; valid: {', '.join(sorted(valid))}")
            if sub:
                if not isinstance(getattr(self, name), dict):
                    raise ValueError(f"{key!r}: recipe field {name!r} is not a dict, set it as {name}=VALUE")
                changes[name] = {**changes.get(name, getattr(self, name)), sub: value}
            else:
                changes[name] = None if value in ("none", "None") else value  # as typed on a command line
        if changes.get("class_weights", self.class_weights) not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {changes['class_weights']!r}")
        return replace(self, **changes)


CLASS_WEIGHTS = (None, "balanced")
