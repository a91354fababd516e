"""Models: one entry point, ``create_model(name, **kwargs)``.

Each model file registers small constructor functions with ``@register_model``, giving the
model's default config (input size, classes, normalisation) and its recipes per scale.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..recipes import SCALES, Recipe, fits_type


@dataclass
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    input_size: tuple[int, int, int] = (1, 48, 48)
    num_classes: int = 7
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    recipes: dict[str, Recipe] = field(default_factory=dict)
    dataset_recipes: dict[str, dict[str, Recipe]] = field(default_factory=dict)  # dataset -> scale -> recipe
    regions: str | None = None  # the face regions the model eats instead of the face (fercore.faces.regions)
    crop_pct: float | None = None  # resize faces to input_size / crop_pct before the centre crop (ModelInput)
    backbones: dict[str, dict] = field(default_factory=dict)  # models whose checkpoints can start its backbone

    def recipe(self, scale: str, dataset: str | None = None) -> Recipe:
        """The recipe for ``scale``: this model's own for ``dataset`` if it has one, else its general one."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
        return self.dataset_recipes.get(dataset, self.recipes)[scale]

    def recipe_name(self, scale: str, dataset: str | None = None) -> str:
        """``vgg_fer/ferplus/standard`` for a dataset's own recipe, ``vgg_fer/standard`` for the general one."""
        return "/".join([self.name] + ([dataset] if dataset in self.dataset_recipes else []) + [scale])

    def default_cfg(self) -> dict:
        cfg = {"input_size": self.input_size, "num_classes": self.num_classes, "mean": self.mean, "std": self.std}
        return cfg | {k: v for k, v in (("regions", self.regions), ("crop_pct", self.crop_pct)) if v is not None}


MODELS: dict[str, ModelInfo] = {}


def register_model(*, input_size=(1, 48, 48), num_classes=7, mean=(0.5,), std=(0.5,), recipes=None,
                   dataset_recipes=None, regions=None, crop_pct=None, backbones=None):
    """Decorator: register ``fn`` under its function name with its config and recipes.

    ``dataset_recipes`` (``{"ferplus": {"smoke": ..., "standard": ..., "full": ...}}``) are used
    instead of ``recipes`` when the model trains on that dataset. ``regions`` names the face
    regions the model eats (``"prior_attention"``: ``fercore.faces.regions.model_regions`` turns a
    dataset's faces into them); ``crop_pct=1.0`` resizes whole faces to ``input_size``.
    ``backbones`` (``{"resnet18_cbam": {"cbam": True}}``) names the models whose checkpoints can start
    this model's backbone through ``train --init`` (the model's ``load_backbone``), each with the model
    arguments that make the backbone fit it; their ``width`` is the checkpoint's.
    """

    def wrap(fn):
        for where, table in [("", recipes or {})] + [(f" on {d}", t) for d, t in (dataset_recipes or {}).items()]:
            missing = set(SCALES) - set(table)
            if missing:
                raise ValueError(f"model {fn.__name__} lacks recipes{where} for {sorted(missing)}")
        MODELS[fn.__name__] = ModelInfo(fn.__name__, fn, tuple(input_size), num_classes, tuple(mean), tuple(std),
                                        dict(recipes), {d: dict(t) for d, t in (dataset_recipes or {}).items()},
                                        regions, crop_pct, dict(backbones or {}))
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return MODELS[name]


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments model ``name`` accepts, by name.

    A registered constructor is a few lines that pass ``**kw`` on to the model's class or
    builder function; the arguments are the constructor's own and those of the class or
    function of its module that it calls (its ``__code__.co_names``).
    """
    build = get_model_info(name).build
    own = inspect.signature(build).parameters
    accepted = {k: p for k, p in own.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind == p.VAR_KEYWORD for p in own.values()):
        for callee in (build.__globals__.get(n) for n in build.__code__.co_names):
            if callable(callee) and getattr(callee, "__module__", None) == build.__module__:
                for k, p in inspect.signature(callee).parameters.items():
                    if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                        accepted.setdefault(k, p)
    return accepted


def check_model_args(name: str, kwargs: dict) -> None:
    """A ValueError naming an argument model ``name`` does not take, or a text given for a number or a flag."""
    accepted = model_arguments(name)
    for key, value in kwargs.items():
        if key not in accepted:
            raise ValueError(f"model {name} has no argument {key!r}; it accepts: {', '.join(accepted)}")
        # Annotations are text here (``from __future__ import annotations``). Plain scalars are
        # checked; anything else (tuples, unions) is left to building the model.
        expected = str(accepted[key].annotation)
        if expected in ("int", "float", "bool") and not fits_type(value, expected):
            raise ValueError(f"model {name}: argument {key} must be {expected}, got {value!r}")


def create_model(name: str, *, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build model ``name``; keyword arguments (``num_classes``, ``in_chans``...) override defaults.

    The returned module carries ``default_cfg`` (input size, classes, mean/std) and
    ``model_name``, which checkpoints store so that a model can be rebuilt from them. An
    argument the model does not take, or a value of the wrong type, is a ValueError that names it.
    ``pretrained=True`` loads the weights shipped with fercore (``fercore.pretrained``: sha256
    checked, float32, eval mode, ``model.classes`` set); a model without them is a ValueError.
    """
    info = get_model_info(name)
    if pretrained:
        from ..pretrained import load_pretrained

        return load_pretrained(name, **kwargs)
    check_model_args(name, kwargs)
    try:
        model = info.build(**kwargs)
    except (TypeError, ValueError) as err:  # e.g. widths=abc: a value the model cannot be built from
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in ("num_classes", "in_chans"))
        raise ValueError(f"model {name} cannot be built with {given or 'its defaults'}: {err}") from err
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


from . import deep_emotion, prior_attention, ran, resnet, simple_cnn, vgg  # noqa: E402,F401

__all__ = ["MODELS", "register_model", "create_model", "list_models", "get_model_info", "model_arguments",
           "check_model_args"]
