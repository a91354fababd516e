"""See RAN's regions: the crops it cuts, each one's self-attention mu and relation attention nu.

Everything goes through the model's own input path (``to_model_input``: the centre crop the
Trainer evaluates on) and the model's ``forward_with_attention``, so what is drawn is what the
model weighed. Static figures come from pyplot (a notebook shows them as it shows every plot of ``fercore.viz.plots``);
the explorer in ``widgets.py`` draws its own. All render headless.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..faces.regions import crop_regions
from ..transforms import evaluating
from .attention import _bare, _class_names, _denormalise, _gray, to_model_input
from .plots import OUTLINE

REGION_COLOURS = sns.color_palette("tab10", 10)


def region_names(model: nn.Module) -> list[str]:
    """The names of the model's regions (``RAN_CROPS``' keys, the whole face last)."""
    return list(model.crops)


def ran_weights(model: nn.Module, images, boxes=None, batch_size: int = 256) -> dict:
    """``mu``, ``nu`` ``(N, K)``, ``probs`` ``(N, C)``, ``boxes`` ``(N, K, 4)`` (pixels of the model's view), ``view``
    ``(N, C, H, W)`` in [0, 1] and ``crops`` ``(N, K, C, s, s)`` in [0, 1], for uint8 ``images``; CPU tensors.
    For a precut model (``ran_landmarks``: ``images`` are its stacked crops) ``view`` is the face crop and
    ``boxes`` are NaN."""
    out = {k: [] for k in ("mu", "nu", "probs", "boxes", "view", "crops")}
    with torch.no_grad(), evaluating(model):
        for i in range(0, len(images), batch_size):
            x = to_model_input(model, images[i:i + batch_size])
            b = None if boxes is None else torch.as_tensor(boxes[i:i + batch_size]).to(x.device)
            logits, att = model.forward_with_attention(x, b)
            view = _denormalise(model, x)
            if att["boxes"] is None:  # a precut model (ran_landmarks): its input is the crops, the face last
                crops, view, box = view[:, :, None], view[:, -1:], torch.full((len(x), view.shape[1], 4), float("nan"))
            else:
                crops, box = crop_regions(view.to(x.device), att["boxes"], model.crop_size), att["boxes"]
            for k, v in (("mu", att["mu"]), ("nu", att["nu"]), ("probs", logits.float().softmax(1)),
                         ("boxes", box), ("view", view), ("crops", crops)):
                out[k].append(v.float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def draw_regions(ax, view, boxes, names, weights=None):
    """The face ``view`` (C, H, W) in [0, 1] with each region's box, labelled with its weight when given."""
    data, style = _gray(view)
    ax.imshow(data, **style)
    _bare(ax)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)):
        if names[k] == "face" or not np.isfinite([x0, y0, x1, y1]).all():
            continue  # the whole face is the image itself; a precut model's boxes are not in this view
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.5,
                               edgecolor=REGION_COLOURS[k % 10], gid=f"box_{names[k]}"))


def draw_weight_bars(ax, mu, nu, names):
    """mu and nu per region as paired bars (the regions in ``REGION_COLOURS``' order)."""
    k = np.arange(len(names))
    ax.bar(k - 0.2, mu, 0.4, color=[REGION_COLOURS[i % 10] for i in k], gid="mu")
    ax.bar(k + 0.2, nu, 0.4, color=[REGION_COLOURS[i % 10] for i in k], alpha=0.45, hatch="//", gid="nu")
    ax.set_xticks(k, names, rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 1), title="mu (solid), nu (hatched)")


def plot_ran(model: nn.Module, images, classes=None, labels=None, boxes=None) -> Figure:
    """One row per face: the face with its regions, the crops as the backbone sees them, mu and nu, the prediction."""
    w = ran_weights(model, images, boxes)
    n, k = w["mu"].shape
    names = region_names(model) if boxes is None else [f"region {j + 1}" for j in range(k - 1)] + ["face"]
    cls = _class_names(classes, w["probs"].shape[1])
    fig, axes = plt.subplots(n, k + 2, squeeze=False, figsize=(2.0 + 1.1 * k + 3.0, 2.1 * n), layout="constrained",
                             width_ratios=[1.6] + [1] * k + [2.6])
    for i in range(n):
        draw_regions(axes[i, 0], w["view"][i], w["boxes"][i], names)
        truth = f"true {cls[int(labels[i])]}\n" if labels is not None else ""
        axes[i, 0].set_title(f"{truth}pred {cls[int(w['probs'][i].argmax())]}", fontsize=9)
        for j in range(k):
            data, style = _gray(w["crops"][i, j])
            axes[i, j + 1].imshow(data, **style)
            _bare(axes[i, j + 1])
            axes[i, j + 1].set_title(f"{names[j]}\nmu {w['mu'][i, j]:.2f}  nu {w['nu'][i, j]:.2f}", fontsize=8,
                                     color=REGION_COLOURS[j % 10])
        draw_weight_bars(axes[i, -1], w["mu"][i].numpy(), w["nu"][i].numpy(), names)
    return fig


def weights_by_class(model: nn.Module, dataset, batch_size: int = 256) -> np.ndarray:
    """Mean mu ``(classes, regions)`` over the faces of each true class of ``dataset``."""
    mu, labels = ran_weights(model, dataset.images, batch_size=batch_size)["mu"].numpy(), np.asarray(dataset.labels())
    return np.stack([mu[labels == c].mean(0) if (labels == c).any() else np.full(mu.shape[1], np.nan)
                     for c in range(len(dataset.classes))])


def plot_weights_by_class(table: np.ndarray, classes, regions, ax=None, title="mean mu by true class"):
    """``weights_by_class``' table as a seaborn heat map."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(regions), 0.5 + 0.4 * len(classes)), layout="constrained")
    sns.heatmap(table, ax=ax, annot=True, fmt=".2f", cmap="viridis", xticklabels=regions, yticklabels=list(classes),
                cbar=False)
    ax.set(title=title)
    for t in ax.texts:
        t.set_path_effects(OUTLINE)
        t.set_color("white")
    return fig if fig is not None else ax.figure
