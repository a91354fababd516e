"""Where does a model look? Spatial-transformer warps, occlusion and gradient saliency.

The attribution maps come from captum (``Occlusion``, ``Saliency``); this module prepares
the model's input exactly as the Trainer does, picks the class to explain, and draws the
maps over the faces. Every function accepts uint8 images ``(N, C, H, W)`` as a FERDataset
holds them (or floats in [0, 1]) and returns maps in the coordinates of the *model's
input* (``fercore.transforms.ModelInput``: the crop to ``model.default_cfg["input_size"]``, as the
Trainer makes it).
``model_view`` gives that crop as an image, so a map always has a face to be drawn on.

Every function puts the model in eval mode (dropout off, batch-norm running statistics
used and left unchanged) and puts each submodule back in the mode it was in, so calling
one in the middle of training changes nothing. Gradients go to the input only: no
parameter's ``.grad`` is touched.

Like ``fercore.viz.plots``, nothing here calls ``plt.show()``: functions that draw into one
Axes take it and return it, functions that lay out panels return the Figure.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import Occlusion, Saliency
from matplotlib.figure import Figure

from ..labels import EMOTIONS
from ..transforms import ModelInput, evaluating, predict_proba

__all__ = [
    "to_model_input", "model_view", "predict", "has_stn", "stn_views", "draw_warp", "plot_stn", "occlusion_map",
    "gradient_saliency", "class_average_maps", "plot_class_maps", "overlay", "plot_saliency",
]


# --------------------------------------------------------------------------- model input
# One model-input path (fercore.transforms): these names are the notebooks' short way to it.


def to_model_input(model: nn.Module, images) -> torch.Tensor:
    """The model's input for ``images``, exactly as ``Trainer`` prepares it for evaluation.

    ``fercore.transforms.ModelInput(model)(images)``: uint8 ``(N, C, H, W)`` (or one
    ``(C, H, W)`` image) or floats in [0, 1]; resized or centre-cropped to
    ``default_cfg["input_size"]``, grey repeated for a colour model, then ``(x - mean) / std``.
    Returned on the model's device.
    """
    return ModelInput(model)(images)


def _denormalise(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ModelInput(model).denormalise(x)


def model_view(model: nn.Module, images) -> torch.Tensor:
    """What the model sees, back in [0, 1] pixels: its crop of ``images`` (CPU float)."""
    return _denormalise(model, to_model_input(model, images))


def predict(model: nn.Module, images) -> torch.Tensor:
    """Class probabilities ``(N, K)`` (CPU float) of ``images``: ``fercore.transforms.predict_proba``."""
    return predict_proba(model, images)


def _targets(model, x: torch.Tensor, target):
    """``None`` -> the predicted classes (a list); an int stays; a sequence -> one per image."""
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1).tolist()
    if isinstance(target, (int, np.integer)):
        return int(target)
    target = torch.as_tensor(target).long().flatten()
    if len(target) != len(x):
        raise ValueError(f"target has {len(target)} entries for {len(x)} images; give one per image, an int or None")
    return target.tolist()


def _class_names(classes, k: int) -> list[str]:
    if classes is not None:
        if len(classes) < k:
            raise ValueError(f"{len(classes)} class names for a model with {k} outputs")
        return [str(c) for c in classes]
    return list(EMOTIONS[:k]) if k in (7, 8) else [str(i) for i in range(k)]


# --------------------------------------------------------------------------- spatial transformer
def _pixels(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``affine_grid`` coordinates (align_corners=False, [-1, 1], x then y) -> pixel (x, y), centres at integers."""
    scale = torch.tensor([w, h], dtype=grid.dtype, device=grid.device)
    return ((grid + 1) * scale - 1) / 2


def has_stn(model: nn.Module, images) -> bool:
    """Whether ``model`` has a spatial transformer: its ``forward_with_attention`` maps hold ``grid`` or ``theta``.

    Having ``forward_with_attention`` is not enough: CBAM's gates and RAN's weights come that
    way too. Checked on the first of ``images``.
    """
    if not callable(getattr(model, "forward_with_attention", None)):
        return False
    with evaluating(model), torch.no_grad():
        maps = model.forward_with_attention(to_model_input(model, images[:1]))[1]
    return "grid" in maps or "theta" in maps


def stn_views(model: nn.Module, images) -> dict[str, np.ndarray]:
    """Run a spatial-transformer model's ``forward_with_attention`` and return what it did.

    Keys (numpy arrays):
      ``input``   ``(N, C, H, W)`` the model's view of the images, [0, 1];
      ``warped``  ``(N, C, H, W)`` the warped input that the classifier sees, de-normalised to
                  [0, 1] (areas sampled outside the image are the zero padding of
                  ``grid_sample``: the mean colour, mid grey for mean 0.5);
      ``grid``    ``(N, H, W, 2)`` where each output pixel was sampled, in *input pixel*
                  (x, y) coordinates: output pixel ``(i, j)`` shows input point ``grid[i, j]``;
      ``theta``   ``(N, 2, 3)`` the affine matrices (NaN when the model's map has none);
      ``probs``   ``(N, K)`` the class probabilities.
    """
    if not callable(getattr(model, "forward_with_attention", None)):
        raise TypeError(f"{type(model).__name__} has no forward_with_attention(x): it has no spatial transformer to show")
    x = to_model_input(model, images)
    with evaluating(model), torch.no_grad():
        logits, maps = model.forward_with_attention(x)
    n, c, h, w = x.shape
    theta, grid, warped = maps.get("theta"), maps.get("grid"), maps.get("warped")
    if grid is None and theta is not None:
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    if grid is None:
        raise ValueError(f"forward_with_attention returned {sorted(maps)}; stn_views needs 'grid' or 'theta'")
    if warped is None:
        warped = F.grid_sample(x, grid, align_corners=False)
    return {
        "input": _denormalise(model, x).numpy(),
        "warped": _denormalise(model, warped).numpy(),
        "grid": _pixels(grid.detach().float(), h, w).cpu().numpy(),
        "theta": theta.detach().float().cpu().numpy() if theta is not None else np.full((n, 2, 3), np.nan),
        "probs": logits.detach().float().softmax(1).cpu().numpy(),
    }


def _outline(grid: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The border of the sampled region in pixel (x, y): the parallelogram theta maps the output's edges to."""
    h, w = grid.shape[:2]
    if np.isfinite(theta).all():
        corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]], dtype=float)
        xy = corners @ theta.T
        return np.stack([((xy[:, 0] + 1) * w - 1) / 2, ((xy[:, 1] + 1) * h - 1) / 2], 1)
    # No affine matrix: follow the grid's outer pixel centres.
    return np.concatenate([grid[0], grid[:, -1], grid[-1, ::-1], grid[::-1, 0], grid[:1, 0]])


def _gray(image) -> tuple[np.ndarray, dict]:
    """A ``(C, H, W)`` / ``(H, W)`` image, uint8 or float [0, 1], as imshow data and arguments."""
    a = np.asarray(image.detach().cpu() if torch.is_tensor(image) else image)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255
    a = np.clip(a.astype(np.float32), 0, 1)
    return a, ({"cmap": "gray", "vmin": 0, "vmax": 1} if a.ndim == 2 else {})


def _bare(ax):
    ax.set(xticks=[], yticks=[])
    ax.spines[:].set_visible(False)


def draw_warp(ax, image, grid, theta=None, lines: int = 7, color: str = "cyan"):
    """Draw ``image`` with a transformer's sampling grid: the sampled region's outline and a sparse mesh.

    ``grid``: ``(H, W, 2)`` pixel (x, y) as in ``stn_views``; ``lines`` mesh lines each way.
    The axes extend past the image when the region does (zoom out): the warp then samples
    padding. Returns ``ax``.
    """
    data, style = _gray(image)
    h, w = data.shape[:2]
    ax.imshow(data, **style)
    grid = np.asarray(grid, dtype=float)
    theta = np.full((2, 3), np.nan) if theta is None else np.asarray(theta, dtype=float)
    gh, gw = grid.shape[:2]
    for i in np.unique(np.linspace(0, gh - 1, lines).round().astype(int)):
        ax.plot(grid[i, :, 0], grid[i, :, 1], color=color, lw=0.6, alpha=0.7, gid="stn_mesh")
    for j in np.unique(np.linspace(0, gw - 1, lines).round().astype(int)):
        ax.plot(grid[:, j, 0], grid[:, j, 1], color=color, lw=0.6, alpha=0.7, gid="stn_mesh")
    outline = _outline(grid, theta)
    ax.plot(outline[:, 0], outline[:, 1], color="red", lw=1.5, gid="stn_outline")
    ax.plot(*outline[0], "o", color="red", ms=3, gid="stn_origin")  # the warped image's top-left corner
    lo = np.minimum(outline.min(0), [-0.5, -0.5]) - 1
    hi = np.maximum(outline.max(0), [w - 0.5, h - 0.5]) + 1
    ax.set(xlim=(lo[0], hi[0]), ylim=(hi[1], lo[1]))
    _bare(ax)
    return ax


def plot_stn(model: nn.Module, images, classes=None, lines: int = 7) -> Figure:
    """What the spatial transformer does to each image: three rows, one column per image.

    Row 1, the input (what the model is given), titled with the predicted class and its
    probability; row 2, the warped input (what the classifier behind the transformer
    sees); row 3, the input with the sampling grid: the red outline is the region that is
    stretched to fill the warped image (the dot marks its top-left corner, so a flip or
    rotation shows), the cyan mesh shows how it is sampled. An identity transform draws the
    outline on the image's border; a zoom draws it inside; a shift moves it.
    """
    views = stn_views(model, images)
    n = len(views["input"])
    names = _class_names(classes, views["probs"].shape[1])
    with sns.axes_style("white"):
        fig, axes = plt.subplots(3, n, figsize=(1.9 * n + 0.9, 6.0), squeeze=False, layout="constrained")
    for i in range(n):
        p = views["probs"][i]
        k = int(p.argmax())
        for row, key in enumerate(("input", "warped")):
            data, style = _gray(views[key][i])
            axes[row, i].imshow(data, **style)
            _bare(axes[row, i])
        axes[0, i].set_title(f"{names[k]} {p[k]:.0%}", fontsize=10)
        draw_warp(axes[2, i], views["input"][i], views["grid"][i], views["theta"][i], lines=lines)
    for row, label in enumerate(("input", "warped\n(classifier sees)", "sampling grid")):
        axes[row, 0].set_ylabel(label)
    return fig


# --------------------------------------------------------------------------- attributions
def occlusion_map(model: nn.Module, images, target=None, patch: int = 8, stride: int = 4, baseline: float = 0.5,
                  batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014; the Deep-Emotion paper's Fig. 7) via captum.

    A ``patch x patch`` square slides over the model's input in steps of ``stride``; each
    pixel gets the mean, over the patches that cover it, of the drop in the target class's
    *probability* (softmax) when the patch is covered. Positive: the region supports the
    class; negative: covering it makes the class more likely; zero: ignored.

    ``baseline`` is what covers the patch, in pixel units of [0, 1] (0 black, 1 white); it is
    converted with the model's mean/std. The default 0.5 is mid grey, which for this course's
    models (mean 0.5, std 0.5) is 0 in normalised space: captum's own default. Black (0.0) is a
    stronger occluder on a face but also adds edges the model may react to.

    ``target``: ``None`` explains each image's predicted class; an int the same class for
    all; a sequence or tensor one class per image. ``stride`` must not exceed ``patch``.
    Returns ``(N, H, W)`` CPU float, ``H, W`` the model's input size (``model_view``).
    """
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be between 1 and patch ({patch}), got {stride}: larger steps would skip pixels")
    x = to_model_input(model, images)
    n, c, h, w = x.shape
    if patch > min(h, w):
        raise ValueError(f"patch {patch} is larger than the model's {h}x{w} input")
    if not 0.0 <= float(baseline) <= 1.0:
        raise ValueError(f"baseline is a pixel value in [0, 1] (0 black, 0.5 grey, 1 white), got {baseline}")
    prep = ModelInput(model)
    fill = ((float(baseline) - prep.mean) / prep.std).to(x.device).expand(1, c, h, w).contiguous()

    def probabilities(inp):
        return model(inp).float().softmax(1)

    out = []
    with evaluating(model), torch.no_grad():
        targets = _targets(model, x, target)
        occlusion = Occlusion(probabilities)
        chunk = max(1, min(n, batch_size))
        for start in range(0, n, chunk):
            part = x[start:start + chunk]
            t = targets if isinstance(targets, int) else targets[start:start + chunk]
            attr = occlusion.attribute(
                part, sliding_window_shapes=(c, patch, patch), strides=(c, stride, stride), baselines=fill,
                target=t, perturbations_per_eval=max(1, batch_size // len(part)), show_progress=progress,
            )
            out.append(attr.mean(1).float().cpu())  # the window spans all channels: they are equal
    return torch.cat(out)


def gradient_saliency(model: nn.Module, images, target=None) -> torch.Tensor:
    """Gradient saliency (Simonyan et al. 2014) via captum's ``Saliency``.

    The absolute gradient of the target class's *logit* with respect to the model's
    (normalised) input, the largest over the channels: which pixels would change the
    score most if nudged. Fast (one backward pass) but noisy, and local: it says nothing
    about what happens when a whole region disappears (``occlusion_map`` does).
    ``target`` as in ``occlusion_map``. Returns ``(N, H, W)`` CPU float.
    """
    x = to_model_input(model, images)
    with evaluating(model):
        targets = _targets(model, x, target)
        attr = Saliency(model).attribute(x.requires_grad_(), target=targets, abs=True)
    return attr.detach().amax(1).float().cpu()


def class_average_maps(maps, labels, num_classes: int) -> torch.Tensor:
    """The mean of ``maps`` ``(N, ...)`` over the images of each class: ``(K, ...)`` float.

    ``labels``: ``(N,)`` class indices, or ``(N, K)`` votes (their arg-max is used). A class
    with no image gets NaN, not zeros: "no data" must not read as "no attention", and
    plots leave it blank. Works on images too (``mean faces``).
    """
    maps = torch.as_tensor(np.asarray(maps) if not torch.is_tensor(maps) else maps).detach().float().cpu()
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).cpu()
    if labels.ndim == 2:
        labels = labels.argmax(1)
    labels = labels.long().flatten()
    if len(labels) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min().item()}..{labels.max().item()}")
    sums = torch.zeros((num_classes, *maps.shape[1:])).index_add_(0, labels, maps)
    counts = torch.bincount(labels, minlength=num_classes).float().view(-1, *[1] * (maps.ndim - 1))
    return sums / counts  # 0 / 0 = NaN for an absent class


# --------------------------------------------------------------------------- drawing
def _scale(values: np.ndarray, vmin=None, vmax=None, cmap=None) -> dict:
    """Colour scale: diverging around 0 when the map has negative values, else 0..max."""
    finite = values[np.isfinite(values)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    top = top or 1.0
    signed = finite.size and finite.min() < 0
    return {
        "cmap": cmap or ("RdBu_r" if signed else "inferno"),
        "vmin": vmin if vmin is not None else (-top if signed else 0.0),
        "vmax": vmax if vmax is not None else top,
    }


def overlay(ax, image, heatmap, alpha: float = 0.5, cmap=None, vmin=None, vmax=None):
    """Draw ``image`` in grey and ``heatmap`` over it (stretched to the image, bilinear if smaller).

    Pass the image the model saw (``model_view``) so that the two line up. The colour scale
    is the map's own (0..max, or symmetric around 0 with a diverging map when it has negative
    values) unless ``vmin``/``vmax`` are given. An all-NaN map (a class with no image) draws
    the image alone. The heatmap's AxesImage has gid ``"heatmap"``. Returns ``ax``.
    """
    data, style = _gray(image)
    h, w = data.shape[:2]
    ax.imshow(data, **style)
    heat = np.asarray(heatmap.detach().cpu() if torch.is_tensor(heatmap) else heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"overlay: expected a (H, W) heatmap, got shape {heat.shape}")
    if np.isfinite(heat).any():
        smaller = heat.shape[0] < h or heat.shape[1] < w
        ax.imshow(heat, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                  interpolation="bilinear" if smaller else "nearest", gid="heatmap", **_scale(heat, vmin, vmax, cmap))
    ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    _bare(ax)
    return ax


def plot_saliency(images, maps, titles=None, alpha: float = 0.5, cmap=None) -> Figure:
    """A grid: the images in the first row, then one row of overlays per kind of map.

    ``maps``: ``(N, H, W)``, or a dict name -> ``(N, H, W)`` to compare methods (e.g.
    ``{"occlusion": ..., "saliency": ...}``), each row labelled with its name. Each panel has
    its own colour scale (maps of different images are not on one scale; for that see
    ``plot_class_maps``). ``images`` are those the maps were computed on, as the model saw
    them (``model_view``). ``titles``: one per image (e.g. predicted labels).
    """
    rows = dict(maps) if isinstance(maps, dict) else {"attribution": maps}
    n = len(images)
    for name, m in rows.items():
        if len(m) != n:
            raise ValueError(f"{n} images but {len(m)} maps in {name!r}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{n} images but {len(titles)} titles")
    with sns.axes_style("white"):
        fig, axes = plt.subplots(1 + len(rows), n, figsize=(1.9 * n + 0.9, 2.0 * (1 + len(rows))), squeeze=False,
                                 layout="constrained")
    for i in range(n):
        data, style = _gray(images[i])
        axes[0, i].imshow(data, **style)
        _bare(axes[0, i])
        if titles is not None:
            axes[0, i].set_title(str(titles[i]), fontsize=10)
        for r, m in enumerate(rows.values(), start=1):
            overlay(axes[r, i], images[i], m[i], alpha=alpha, cmap=cmap)
    axes[0, 0].set_ylabel("image")
    for r, name in enumerate(rows, start=1):
        axes[r, 0].set_ylabel(name)
    return fig


def plot_class_maps(avg_maps, classes, mean_faces=None, alpha: float = 0.55, ncols: int | None = None,
                    cmap=None) -> Figure:
    """One panel per class of its average map (``class_average_maps``), on one shared colour scale.

    With ``mean_faces`` (``(K, C, H, W)`` or ``(K, H, W)``, in 0..255 or [0, 1], e.g.
    ``class_average_maps(images, labels, K)``) each map is drawn over its class's mean face, so one sees *which part of the
    face* matters for which expression. A class with no images (NaN) is left blank and says
    so. The last Axes is the shared colour bar. Returns the Figure.
    """
    maps = np.asarray(avg_maps.detach().cpu() if torch.is_tensor(avg_maps) else avg_maps, dtype=np.float32)
    k = len(maps)
    names = _class_names(classes, k)
    if mean_faces is not None and len(mean_faces) != k:
        raise ValueError(f"{k} class maps but {len(mean_faces)} mean faces")
    ncols = min(k, ncols or 8)
    nrows = math.ceil(k / ncols)
    scale = _scale(maps, cmap=cmap)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols + 1.0, 2.1 * nrows), squeeze=False,
                                 layout="constrained")
    mappable = None
    for i, ax in enumerate(axes.flat):
        if i >= k:
            fig.delaxes(ax)
            continue
        empty = not np.isfinite(maps[i]).any()
        if mean_faces is not None:
            face = mean_faces[i]
            face = np.asarray(face.detach().cpu() if torch.is_tensor(face) else face, dtype=np.float32)
            finite = face[np.isfinite(face)]
            face = np.nan_to_num(face / (255.0 if finite.size and finite.max() > 1 else 1.0), nan=0.5)
            overlay(ax, face, maps[i], alpha=alpha, **scale)
        else:
            ax.imshow(maps[i], gid="heatmap", **scale)
            _bare(ax)
        if not empty and ax.get_images():
            mappable = ax.get_images()[-1]
        ax.set_title(names[i] + (" (no images)" if empty else ""), fontsize=10)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8)
    return fig
