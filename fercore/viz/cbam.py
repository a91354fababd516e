"""CBAM's gates, Grad-CAM and A-Softmax's angles: the figures of notebook 04 (Wen et al. 2020).

- ``cbam_maps`` / ``plot_cbam``: what each stage's CBAM gates do to a face, the spatial weight
  of every position (stretched to the input) and the weight of every channel;
- ``grad_cam``: captum's ``LayerGradCam`` on the last stage, for any model with ``blocks``
  (softmax or A-Softmax head: in eval mode both give plain logits, ``heads.py``);
- ``plot_psi``, ``angular_margins``, ``plot_angular_features``: A-Softmax's target function
  and what its margin does to a 2-D feature layer, on the unit circle.

As in ``attention.py``, images go through the one model-input path (``to_model_input``), maps
are in the coordinates of the model's input (draw them on ``model_view``), the model's modes
are restored and no parameter's ``.grad`` is touched.
"""
from __future__ import annotations

import contextlib
import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib.figure import Figure

from ..losses import psi
from ..transforms import evaluating
from .plots import _new_axes
from .attention import _bare, _class_names, _gray, _targets, model_view, overlay, predict, to_model_input

__all__ = ["cbam_stages", "cbam_maps", "plot_cbam", "draw_channel_weights", "grad_cam", "plot_psi",
           "angular_margins", "plot_angular_features"]


# --------------------------------------------------------------------------- CBAM gates
def cbam_stages(model: nn.Module) -> dict[str, list[str]]:
    """The model's stages and their blocks, in order: ``{"layer1": ["layer1.0", "layer1.1"], ...}``.

    Read from ``model.block_names`` (``"layer<s>.<i>"``), so a deeper ResNet or RAN's backbone works as is.
    """
    names = getattr(model, "block_names", None)
    if not names:
        raise TypeError(f"{type(model).__name__} has no block_names: cbam_maps needs a fercore ResNet (resnet18_cbam)")
    stages: dict[str, list[str]] = {}
    for name in names:
        stages.setdefault(name.split(".")[0], []).append(name)
    return stages


def cbam_maps(model: nn.Module, images, block: int = -1, batch_size: int = 256) -> dict[str, dict]:
    """Each stage's CBAM gates for ``images``, from one block per stage (``block``: its index, default the last).

    Returns ``{stage: {"block": "layer4.1", "spatial": (N, H, W), "native": (N, h, w), "channel": (N, C)}}``
    (CPU float, every value in [0, 1]: they are sigmoids). ``spatial`` is the spatial gate
    stretched (bilinear) to the model's input ``H x W``, so that it lies on ``model_view``;
    ``native`` is the gate at its own resolution (44, 22, 11, 6 px for a 44-px face): the deeper
    the stage, the coarser its map. ``channel`` holds one weight per channel of the block.
    """
    stages = cbam_stages(model)
    x = to_model_input(model, images)
    parts: list[dict] = []
    with evaluating(model), torch.no_grad():
        for chunk in x.split(batch_size):
            parts.append(model.forward_with_attention(chunk)[1])
    if not parts[0]:
        raise ValueError(f"{type(model).__name__} has no CBAM gates (forward_with_attention returned no maps): "
                         "use resnet18_cbam or resnet18_cbam_asoftmax")
    out = {}
    for stage, blocks in stages.items():
        name = blocks[block]
        native = torch.cat([p[f"{name}.spatial"] for p in parts]).float().cpu()
        out[stage] = {
            "block": name,
            # bilinear with align_corners=False keeps each stage's cells where the strided convs put them
            "spatial": F.interpolate(native[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0],
            "native": native,
            "channel": torch.cat([p[f"{name}.channel"] for p in parts]).float().cpu(),
        }
    return out


def draw_channel_weights(ax, channel_weights: dict, legend: bool = True):
    """Each stage's channel weights of one face, sorted from high to low, as one line per stage.

    ``channel_weights``: stage -> ``(C,)``. The x axis is the rank as a fraction of the stage's
    channels (stages have 8 to 512): a flat line means the gate weighs every channel alike, a
    steep one that it picks a few channels and mutes the rest. Returns ``ax``.
    """
    colors = sns.color_palette("viridis", len(channel_weights))
    for (stage, w), color in zip(channel_weights.items(), colors):
        w = np.sort(np.asarray(w, dtype=float))[::-1]
        ax.plot(np.linspace(0, 1, len(w)), w, color=color, lw=1.6, label=f"{stage} ({len(w)})", gid=f"channels_{stage}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="channel rank (fraction)", ylabel="channel weight")
    if legend:
        ax.legend(fontsize=8, loc="lower left")
    return ax


def plot_cbam(model: nn.Module, images, classes=None, block: int = -1, vmin=0.0, vmax=1.0) -> Figure:
    """One row per face: the face and its prediction, each stage's spatial gate over it, the channel weights.

    The spatial panels share one colour scale, 0 to 1 (``vmin=vmax=None``: each panel its own),
    so stages compare: a uniform map at 0.5 is the gate's starting point (its batch-norm weight
    starts at 0), bright regions are kept, dark ones muted. Titles name the block and its map size.
    """
    maps = cbam_maps(model, images, block)
    views, probs = model_view(model, images), predict(model, images)
    names = _class_names(classes, probs.shape[1])
    n, stages = len(views), list(maps)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(n, len(stages) + 2, figsize=(1.9 * (len(stages) + 1) + 3.2, 2.0 * n + 0.4),
                                 width_ratios=[1] * (len(stages) + 1) + [1.7], squeeze=False, layout="constrained")
    for i in range(n):
        k = int(probs[i].argmax())
        data, style = _gray(views[i])
        axes[i, 0].imshow(data, **style)
        _bare(axes[i, 0])
        axes[i, 0].set_title(f"{names[k]} {probs[i, k]:.0%}", fontsize=10)
        for j, stage in enumerate(stages, start=1):
            overlay(axes[i, j], views[i], maps[stage]["spatial"][i], vmin=vmin, vmax=vmax)
            if i == 0:
                h, w = maps[stage]["native"].shape[-2:]
                axes[i, j].set_title(f"{maps[stage]['block']} ({h}x{w})", fontsize=10)
        draw_channel_weights(axes[i, -1], {s: maps[s]["channel"][i] for s in stages}, legend=i == 0)
        axes[i, -1].grid(True, color="0.9")
    axes[0, -1].set_title("channel weights, sorted", fontsize=10)
    fig.colorbar(axes[0, 1].get_images()[-1], ax=axes[:, 1:-1].ravel().tolist(), shrink=0.8, label="spatial weight")
    return fig


# --------------------------------------------------------------------------- Grad-CAM
@contextlib.contextmanager
def _tensor_output(layer: nn.Module):
    """An ``nn.Identity`` that carries ``layer``'s output tensor, for captum to hook.

    captum hooks a layer's output and clones it; a fercore ResNet block returns
    ``(tensor, gates dict)``, which it cannot. A forward hook routes the tensor through this
    Identity (same values, same graph) while the model still gets its tuple.
    """
    tap = nn.Identity()

    def hook(module, args, out):
        return (tap(out[0]), *out[1:]) if isinstance(out, tuple) else tap(out)

    handle = layer.register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


def grad_cam(model: nn.Module, images, target=None, layer: nn.Module | None = None,
             batch_size: int = 64) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) via captum's ``LayerGradCam``: ``(N, H, W)`` CPU float, >= 0.

    The target class's logit is differentiated with respect to ``layer``'s output (default
    ``model.blocks[-1]``, the last stage: 6x6 px for a 44-px face); each channel is weighed by its
    mean gradient, the weighted channels are summed, negative evidence is cut (ReLU) and the map
    is stretched (bilinear, ``LayerAttribution.interpolate``) to the model's input. Coarse (one
    cell per 7 px) but class-specific, unlike CBAM's spatial gate, which is the same for every class.
    For an A-Softmax model the logit is ``||x|| cos(theta)``, what it predicts with in eval mode.
    ``target`` as in ``occlusion_map`` (None: each image's predicted class).
    """
    if layer is None:
        if not isinstance(getattr(model, "blocks", None), nn.ModuleList):
            raise TypeError(f"{type(model).__name__} has no blocks: pass the layer to explain (layer=...)")
        layer = model.blocks[-1]
    x = to_model_input(model, images)
    out = []
    with evaluating(model), _tensor_output(layer) as tap:
        targets = _targets(model, x, target)
        cam = LayerGradCam(model, tap)
        for start in range(0, len(x), batch_size):
            part = x[start:start + batch_size]
            t = targets if isinstance(targets, int) else targets[start:start + batch_size]
            attr = cam.attribute(part, target=t, relu_attributions=True)
            out.append(LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")[:, 0].detach().float().cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- A-Softmax
def plot_psi(m_values=(1, 2, 3, 4), ax=None):
    """SphereFace's ``psi(theta)`` for each margin ``m`` on [0, 180 deg], with ``cos(theta)`` dashed.

    The target class's logit is ``||x|| psi(theta_y)`` in training, the others keep
    ``||x|| cos(theta_j)``: a face is right only when ``psi(theta_y) > cos(theta_j)``, which for
    ``m = 4`` needs ``theta_y`` about four times smaller than ``theta_j``. Returns ``ax``.
    """
    if ax is None:
        ax = _new_axes((5.2, 3.4), "whitegrid")
    theta = torch.linspace(0, math.pi, 721, dtype=torch.float64)
    deg = np.degrees(theta.numpy())
    ax.plot(deg, torch.cos(theta).numpy(), color="black", ls="--", lw=1.2, label="cos θ (= ψ for m = 1)", gid="cos",
            zorder=3)
    for m, color in zip(m_values, sns.color_palette("viridis", len(m_values))):
        ax.plot(deg, psi(torch.cos(theta), int(m)).numpy(), color=color, lw=1.8, label=f"ψ, m = {m}", gid=f"psi_{m}")
    ax.set(xlim=(0, 180), xticks=range(0, 181, 30), xlabel="θ, angle to the true class's weight (degrees)",
           ylabel="target logit / ||x||", title="A-Softmax: ψ(θ) falls m times faster than cos θ")
    ax.legend()
    return ax


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(min=1e-12)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between unit vectors, broadcast."""
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def angular_margins(features, labels, num_classes: int | None = None, q: float = 95.0) -> dict:
    """The angles that A-Softmax is meant to shape, in degrees, for features ``(N, D)`` and labels ``(N,)``.

    Only directions count (the head compares angles), so every feature is normalised first.
    Returns ``directions`` ``(K, D)``: each class's mean direction (the normalised mean of its
    unit features; NaN for a class with no features); ``spread`` ``(K,)``: the ``q``-th
    percentile angle of a class's features from its direction (how wide the class's cone is);
    ``center_angles`` ``(K, K)``: the angles between class directions; ``min_angle`` and
    ``closest`` (the pair): the two classes whose directions are nearest. A margin shows as
    spreads that are small next to the angles between the classes.
    """
    f = _unit(np.asarray(features.detach().cpu() if torch.is_tensor(features) else features, dtype=np.float64))
    y = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels).astype(int).ravel()
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"features must be (N, D) with one label each; got {f.shape} and {len(y)} labels")
    k = int(num_classes if num_classes is not None else y.max() + 1)
    directions = np.full((k, f.shape[1]), np.nan)
    spread = np.full(k, np.nan)
    for c in range(k):
        if (y == c).any():
            directions[c] = _unit(f[y == c].mean(0))
            spread[c] = np.percentile(_angle(f[y == c], directions[c]), q)
    angles = _angle(directions[:, None], directions[None])  # NaN rows for absent classes
    off = np.where(np.eye(k, dtype=bool) | np.isnan(angles), np.inf, angles)
    i, j = np.unravel_index(np.argmin(off), off.shape)
    return {"directions": directions, "spread": spread, "center_angles": angles,
            "min_angle": float(off[i, j]) if np.isfinite(off[i, j]) else float("nan"),
            "closest": (int(min(i, j)), int(max(i, j)))}


def plot_angular_features(features, labels, classes, weights=None, ax=None) -> Figure:
    """2-D features coloured by class: as they are, and normalised onto the unit circle.

    ``weights`` ``(K, 2)``: the head's class weights, drawn as arrows from the centre in their
    class's colour (for A-Softmax only their direction counts). The circle panel's title gives
    the smallest angle between class directions and the widest class cone (``angular_margins``):
    with a margin, classes are thin cones with wide empty gaps between them. ``ax``: draw only
    the circle panel into it. Returns the Figure.
    """
    f = np.asarray(features.detach().cpu() if torch.is_tensor(features) else features, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels).astype(int).ravel()
    if f.ndim != 2 or f.shape[1] != 2:
        raise ValueError(f"plot_angular_features draws 2-D features, got shape {f.shape}")
    names = [str(c) for c in classes]
    colors = sns.color_palette("tab10", len(names))
    if ax is None:
        with sns.axes_style("whitegrid"):
            fig, (raw, ax) = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
        for c, name in enumerate(names):
            raw.scatter(*f[y == c].T, s=6, alpha=0.6, color=colors[c], label=name, gid=f"raw_{c}")
        raw.set(xlabel="feature 1", ylabel="feature 2", title="features", aspect="equal")
    u = _unit(f)
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.6", lw=1))
    for c, name in enumerate(names):
        ax.scatter(*u[y == c].T, s=8, alpha=0.5, color=colors[c], label=name, gid=f"circle_{c}")
    if weights is not None:
        w = _unit(np.asarray(weights.detach().cpu() if torch.is_tensor(weights) else weights, dtype=np.float64))
        for c in range(min(len(w), len(names))):
            ax.annotate("", xy=w[c] * 1.25, xytext=(0, 0), gid=f"weight_{c}",
                        arrowprops=dict(arrowstyle="-|>", color=colors[c], lw=1.8))
    stats = angular_margins(f, y, len(names))
    a, b = stats["closest"]
    ax.set(xlim=(-1.4, 1.4), ylim=(-1.4, 1.4), aspect="equal", xticks=[], yticks=[],
           title=f"on the unit circle: closest classes {names[a]}–{names[b]} {stats['min_angle']:.0f}°,\n"
                 f"widest class (95% of its faces) {np.nanmax(stats['spread']):.0f}°")
    ax.legend(fontsize=8, markerscale=2, loc="upper right", ncol=2 if len(names) > 4 else 1)
    return ax.figure
