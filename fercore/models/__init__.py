"""Models: one entry point, ``create_model(name, **kwargs)``.

Each model file registers small constructor functions with ``@register_model``, giving the
model's default config (input size, classes, normalisation) and its recipes per scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..recipes import SCALES, Recipe


@dataclass
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    input_size: tuple[int, int, int] = (1, 48, 48)
    num_classes: int = 7
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    recipes: dict[str, Recipe] = field(default_factory=dict)

    def default_cfg(self) -> dict:
        return {"input_size": self.input_size, "num_classes": self.num_classes, "mean": self.mean, "std": self.std}


MODELS: dict[str, ModelInfo] = {}


def register_model(*, input_size=(1, 48, 48), num_classes=7, mean=(0.5,), std=(0.5,), recipes=None):
    """Decorator: register ``fn`` under its function name with its config and recipes."""

    def wrap(fn):
        missing = set(SCALES) - set(recipes or {})
        if missing:
            raise ValueError(f"model {fn.__name__} lacks recipes for {sorted(missing)}")
        MODELS[fn.__name__] = ModelInfo(fn.__name__, fn, tuple(input_size), num_classes, tuple(mean), tuple(std), dict(recipes))
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return MODELS[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name``; keyword arguments (``num_classes``, ``in_chans``...) override defaults.

    The returned module carries ``default_cfg`` (input size, classes, mean/std) and
    ``model_name``, which checkpoints store so that a model can be rebuilt from them.
    """
    info = get_model_info(name)
    model = info.build(**kwargs)
    cfg = info.default_cfg()
    cfg["num_classes"] = kwargs.get("num_classes", cfg["num_classes"])
    if "in_chans" in kwargs:
        cfg["input_size"] = (kwargs["in_chans"], *cfg["input_size"][1:])
        cfg["mean"] = cfg["mean"][:1] * kwargs["in_chans"]
        cfg["std"] = cfg["std"][:1] * kwargs["in_chans"]
    model.default_cfg = cfg
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


from . import deep_emotion, simple_cnn, vgg  # noqa: E402,F401

__all__ = ["MODELS", "register_model", "create_model", "list_models", "get_model_info"]
