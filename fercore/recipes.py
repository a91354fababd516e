"""Training recipes: the numbers a scale changes (epochs, subset, batch, lr), never the code.

Each model registers ``smoke``, ``standard`` and ``full`` recipes with ``register_model``, and
may register its own recipes for one dataset (``dataset_recipes``): ``vgg_fer`` on ``ferplus``
trains the way the Ohlsen report did, with the dataset settings (label mode, classes) that this
needs in the recipe's ``data_args``. Likewise ``model_args``: the ResNets' ``smoke`` and ``standard``
recipes train a narrower network (``width``) than ``full``, through the same code.
``ModelInfo.recipe(scale, dataset)`` picks one.
"""
from __future__ import annotations

import numbers
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
    data_args: dict = field(default_factory=dict)  # load_dataset settings this recipe trains with; --data-arg overrides each
    model_args: dict = field(default_factory=dict)  # create_model settings (a ResNet's width); --model-arg overrides each

    def __post_init__(self):
        # Each field holds the type its annotation names ("int", "float", "str | None", ...), so a
        # mistyped --recipe-arg (lr=abc) stops here with its name, not in the optimizer with a traceback.
        for f in fields(self):
            value, allowed = getattr(self, f.name), f.type.split(" | ")
            if not any(fits_type(value, name) for name in allowed):
                raise ValueError(f"recipe field {f.name} must be {' or '.join(allowed)}, got {value!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")

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
        if "augment" in changes:
            check_augment(changes["augment"])
        return replace(self, **changes)


def check_augment(options: dict) -> None:
    """Build the augmentation once, so an unknown option or a wrong value is named before any data is read."""
    from .data.augment import build_augment

    if not isinstance(options, dict):
        raise ValueError(f"recipe field augment must be a dict of build_augment options, got {options!r}")
    try:
        build_augment(**options)
    except (TypeError, ValueError) as err:  # build_augment lists its valid options for an unknown one
        raise ValueError(f"recipe augment {options}: {err}") from err


def fits_type(value, type_name: str) -> bool:
    """Whether ``value`` fits ``type_name`` (None, int, float, str, dict, bool): an int is a float, a bool is not an int.

    Other names (``tuple[int, int]``) are not checked here: True.
    """
    if type_name == "None":
        return value is None
    if type_name == "float":  # numbers.Real and Integral take NumPy's scalars too
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    kinds = {"str": str, "dict": dict, "bool": bool}
    return isinstance(value, kinds[type_name]) if type_name in kinds else True


CLASS_WEIGHTS = (None, "balanced")
