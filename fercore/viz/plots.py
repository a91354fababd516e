"""Plots for the notebooks: class balance, sample images, landmarks, training curves, errors.

Nothing here calls ``plt.show()``, so every plot also renders headless (the Agg backend
under papermill or CI) and can be saved with ``savefig``. Like seaborn, functions that draw
into one Axes take ``ax=`` and return that Axes; functions that lay out several panels
return the Figure. In a notebook, end such a call with ``;`` or assign its result, or
Jupyter shows the figure a second time as the cell's value.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping
from numbers import Real

import matplotlib.pyplot as plt
from matplotlib import patheffects
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

# The iBUG 68-point scheme: the indices of each group, whether its outline closes, its colour.
# "right"/"left" are the subject's, so the right brow is on the image's left.
LANDMARK_GROUPS = {
    "jaw": (range(0, 17), False, "gold"),
    "right brow": (range(17, 22), False, "darkorange"),
    "left brow": (range(22, 27), False, "darkorange"),
    "nose bridge": (range(27, 31), False, "deepskyblue"),
    "lower nose": (range(31, 36), False, "deepskyblue"),
    "right eye": (range(36, 42), True, "lime"),
    "left eye": (range(42, 48), True, "lime"),
    "outer lip": (range(48, 60), True, "magenta"),
    "inner lip": (range(60, 68), True, "magenta"),
}


# --------------------------------------------------------------------------- style
# Legible on any screen: nothing below 9 pt, and vector output, whose text stays sharp at any
# pixel density. "image.interpolation": "none" embeds each face at its own resolution
# (48 x 48) in the SVG, drawn with sharp pixels, which is both smaller and truer than a resampled PNG.
NOTEBOOK_STYLE = {"figure.dpi": 100, "savefig.dpi": 200, "font.size": 10, "axes.titlesize": 10,
                  "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
                  "figure.titlesize": 11, "image.interpolation": "none", "svg.fonttype": "path"}
# Drawn under a label that lies on a photo, so that it reads on light and dark faces alike.
OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]


def use_notebook_style() -> None:
    """Notebook figures as SVG with labels of at least 9 pt (call once, in a notebook's import cell).

    Only a notebook's own call changes these settings: importing fercore changes none.
    """
    plt.rcParams.update(NOTEBOOK_STYLE)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # not in IPython
        return
    set_matplotlib_formats("svg")


def notebook_style():
    """A context in which figures are drawn in the notebook style (for widgets, which draw their own)."""
    return plt.rc_context(NOTEBOOK_STYLE)


def figure_svg(fig) -> str:
    """``fig`` as SVG text (for widgets and live plots, which display it themselves)."""
    buffer = io.StringIO()
    with notebook_style():
        fig.savefig(buffer, format="svg")
    return buffer.getvalue()


# --------------------------------------------------------------------------- helpers
def _new_axes(figsize, style="whitegrid"):
    # The seaborn style applies to these axes only: importing fercore changes no global settings.
    with sns.axes_style(style):
        return plt.subplots(figsize=figsize, layout="constrained")[1]


def _dataset_title(dataset) -> str:
    return " / ".join(part for part in (dataset.name, dataset.split) if part)


def _as_table(data, caller: str) -> dict[str, dict]:
    """``{group: {class: value}}`` from a dataset, a dict class -> value, or a dict of either."""
    if hasattr(data, "class_counts"):
        return {_dataset_title(data): data.class_counts()}
    if isinstance(data, Mapping) and data:
        values = list(data.values())
        if all(v is None or isinstance(v, Real) for v in values):
            return {"": dict(data)}
        if all(isinstance(v, Mapping) or hasattr(v, "class_counts") for v in values):
            return {str(k): dict(v) if isinstance(v, Mapping) else v.class_counts() for k, v in data.items()}
    raise TypeError(
        f"{caller} expects a dict class -> value, a dict name -> (dict or FERDataset), or a FERDataset; "
        f"got {type(data).__name__} {data!r:.80}"
    )


def _grouped_bars(table: dict[str, dict], ax, *, ylabel: str, fmt: str):
    """Bars per class, one colour per class for a single group, else one colour per group."""
    classes = list(dict.fromkeys(c for row in table.values() for c in row))
    rows = [(group, c, np.nan if v is None else float(v)) for group, row in table.items() for c, v in row.items()]
    groups, x, y = zip(*rows)
    single = len(table) == 1
    ax = ax or _new_axes((min(12.0, max(6.0, 0.4 * len(classes) * (len(table) + 1))), 4.0))  # room for the class names
    sns.barplot(
        x=list(x), y=list(y), hue=list(x if single else groups), order=classes,
        hue_order=classes if single else list(table), palette="deep", errorbar=None, legend=not single, ax=ax,
    )
    if single:  # with several groups the numbers would crowd each other
        for bars in ax.containers:
            ax.bar_label(bars, fmt=fmt, fontsize=9, padding=2)
    else:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), frameon=False)
    ax.set(xlabel="", ylabel=ylabel)
    return ax


def _to_display(image, where: str) -> np.ndarray:
    """A ``(C, H, W)`` image (tensor or array, C = 1 or 3) as what ``imshow`` wants."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if array.ndim == 2:
        return array
    raise ValueError(f"{where}: expected a (C, H, W) image with C = 1 or 3, got shape {array.shape}")


def _show_image(ax, image, where: str) -> tuple[int, int]:
    array = _to_display(image, where)
    if array.ndim == 2:  # fixed 0..255 range: a dark face must look dark, not be stretched
        limits = (0, 255) if array.dtype == np.uint8 else (None, None)
        ax.imshow(array, cmap="gray", vmin=limits[0], vmax=limits[1])
    else:
        ax.imshow(array)
    _bare(ax)
    return array.shape[:2]


def _bare(ax):
    # No ticks or frame, but unlike ax.axis("off") the y label (a class name) stays visible.
    ax.set(xticks=[], yticks=[])
    ax.spines[:].set_visible(False)


def _class_indices(all_classes: list[str], classes) -> list[int]:
    if classes is None:
        return list(range(len(all_classes)))
    indices = []
    for c in classes:
        if isinstance(c, str) and c in all_classes:
            indices.append(all_classes.index(c))
        elif isinstance(c, int) and 0 <= c < len(all_classes):
            indices.append(c)
        else:
            raise ValueError(f"unknown class {c!r}; the dataset's classes are {all_classes}")
    return indices


# --------------------------------------------------------------------------- data
def class_distribution(dataset_or_counts, ax=None, title=None, normalize: bool = False):
    """Bar plot of images per class: FER datasets are unbalanced, and this shows by how much.

    Accepts a FERDataset, a dict class -> count, or a dict name -> dataset (or name -> counts)
    to compare splits side by side. ``normalize=True`` plots each group's share of its own
    total, which compares splits of very different sizes. Returns the Axes.
    """
    table = _as_table(dataset_or_counts, "class_distribution")
    if normalize:
        table = {g: {c: n / max(sum(row.values()), 1) for c, n in row.items()} for g, row in table.items()}
    ax = _grouped_bars(table, ax, ylabel="share of images" if normalize else "images",
                       fmt="{:.0%}" if normalize else "{:,.0f}")
    if normalize:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    name = next(iter(table)) if len(table) == 1 else ""
    ax.set_title(title or (f"Class distribution: {name}" if name else "Class distribution"))
    return ax


def sample_grid(dataset, per_class: int = 6, seed: int = 0, classes=None) -> Figure:
    """A grid with one row per class of ``per_class`` random images: the first look at a dataset.

    ``classes`` picks rows by name or index (default: all). A class with fewer images leaves
    its row partly blank; the row label gives the class's image count.
    """
    labels = np.asarray(dataset.labels())
    rows = _class_indices(list(dataset.classes), classes)
    rng = np.random.default_rng(seed)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(len(rows), per_class, figsize=(1.1 * per_class + 1.2, 1.1 * len(rows) + 0.4),
                                 squeeze=False, layout="constrained")
    for row_axes, k in zip(axes, rows):
        members = np.flatnonzero(labels == k)
        picks = rng.choice(members, size=min(per_class, len(members)), replace=False)
        for ax in row_axes:
            _bare(ax)
        for ax, i in zip(row_axes, picks):
            _show_image(ax, dataset.images[i], f"image {i}")
        row_axes[0].set_ylabel(f"{dataset.classes[k]}\n({len(members):,})", rotation=0, ha="right", va="center")
    fig.suptitle(_dataset_title(dataset) or None)
    return fig


def image_row(images, titles=None, size: float = 1.5) -> Figure:
    """Images side by side, each ``(C, H, W)`` or ``(H, W)``, with an optional title each."""
    images = list(images)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size + 0.45), squeeze=False,
                                 layout="constrained")
    for k, (ax, image) in enumerate(zip(axes[0], images)):
        _show_image(ax, np.asarray(image), f"image {k}")
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=9)
    return fig


# --------------------------------------------------------------------------- landmarks
def draw_landmarks(ax, points, *, size: float = 10.0, where: str = "landmarks"):
    """Draw 68 iBUG landmarks ``(68, 2)`` of pixel (x, y) on ``ax``: group outlines, then points."""
    points = np.asarray(points, dtype=float)
    if points.shape != (68, 2):
        raise ValueError(f"{where}: expected 68 (x, y) points of shape (68, 2), got shape {points.shape}")
    for name, (idx, closed, color) in LANDMARK_GROUPS.items():
        outline = list(idx) + ([idx[0]] if closed else [])
        ax.plot(points[outline, 0], points[outline, 1], color=color, lw=1, alpha=0.8, gid=name)
    colors = [color for idx, _, color in LANDMARK_GROUPS.values() for _ in idx]
    ax.scatter(points[:, 0], points[:, 1], s=size, c=colors, edgecolors="black", linewidths=0.4,
               zorder=3, gid="landmarks")
    return ax


def show_landmarks(images, landmarks, ncols: int = 4, labels=None) -> Figure:
    """Images with their 68 landmarks, coloured by region (jaw, brows, nose, eyes, lips).

    ``images``: ``(N, C, H, W)`` or a list of ``(C, H, W)``; ``landmarks``: ``(N, 68, 2)`` pixel
    (x, y). One image with ``(68, 2)`` landmarks works too. ``labels`` become the titles.
    """
    landmarks = np.asarray(landmarks, dtype=float)
    if landmarks.ndim == 2:
        images, landmarks = [images], landmarks[None]
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} images but {len(landmarks)} sets of landmarks")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.4 * nrows), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            fig.delaxes(ax)
            continue
        h, w = _show_image(ax, images[i], f"image {i}")
        draw_landmarks(ax, landmarks[i], where=f"landmarks of image {i}")
        ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))  # points off the image must not shrink it
        if labels is not None:
            ax.set_title(str(labels[i]))
    return fig


# --------------------------------------------------------------------------- Prior Attention blocks
BLOCK_COLORS = {"eyes": "darkorange", "mouth": "magenta"}  # the box colours, as the landmark groups'
GREY = 128  # an occluded block's pixels: about 0 after the blocks' normalisation (mean 0.5, std 0.5)


def _grey_face(face) -> np.ndarray:
    """A face ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)`` uint8 (tensor or array) as ``(H, W)`` grey."""
    import cv2

    array = np.asarray(face)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else cv2.cvtColor(np.ascontiguousarray(array.transpose(1, 2, 0)),
                                                                  cv2.COLOR_RGB2GRAY)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 face (H, W) or (C, H, W) with C = 1 or 3, got {array.dtype} {array.shape}")
    return array


def block_predictions(face, points, margin: float | None = None, model=None) -> dict:
    """The blocks Prior Attention is given for one face and, with ``model``, what it says, each block occluded in turn.

    ``blocks`` ``(2, s, s)`` uint8 (``fercore.faces.regions.face_regions``, the model-input path of
    ``predict``), ``boxes`` ``{block: (left, top, right, bottom)}``, ``margin``; with ``model`` also
    ``probs`` ``(K,)`` and ``occluded`` ``{block: (K,)}``, the probabilities with that block's pixels
    set to ``GREY``.
    """
    from ..faces.regions import BLOCK_SIZE, BLOCKS, MARGIN, block_box, face_regions
    from ..transforms import predict_proba

    margin = MARGIN if margin is None else float(margin)
    gray = _grey_face(face)
    cfg = model.default_cfg if model is not None else {"regions": "prior_attention", "input_size": (2, BLOCK_SIZE, BLOCK_SIZE)}
    blocks = face_regions(gray[None], np.asarray(points)[None], cfg, margin)[0]
    out = {"blocks": blocks.numpy(), "margin": margin, "boxes": {b: block_box(points, b, gray.shape, margin) for b in BLOCKS}}
    if model is None:
        return out
    batch = blocks.repeat(1 + len(BLOCKS), 1, 1, 1)  # the blocks, then each block grey in turn
    for k in range(len(BLOCKS)):
        batch[1 + k, k] = GREY
    probs = predict_proba(model, batch).numpy()
    return out | {"probs": probs[0], "occluded": {b: probs[1 + k] for k, b in enumerate(BLOCKS)}}


def draw_blocks(axes, face, points, pred: dict, occlude: str | None = None) -> None:
    """Into three Axes: the face with its landmarks and the two boxes (none when ``axes[0]`` is None), then
    each block as ``block_predictions`` cut it (``pred``), the one named by ``occlude`` grey."""
    from matplotlib.patches import Rectangle

    if (ax := axes[0]) is not None:
        h, w = _show_image(ax, _grey_face(face), "face")
        draw_landmarks(ax, points, size=6)
        for name, (left, top, right, bottom) in pred["boxes"].items():
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, lw=1.5,
                                   color=BLOCK_COLORS[name], gid=f"box_{name}"))
        ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5), title=f"margin {pred['margin']:.2f} of the face")
    for k, (ax, name) in enumerate(zip(axes[1:], pred["boxes"])):
        block = np.full_like(pred["blocks"][k], GREY) if name == occlude else pred["blocks"][k]
        _show_image(ax, block, name)
        ax.set_title(f"{name}{' (occluded)' if name == occlude else ''}", color=BLOCK_COLORS[name])


def draw_probabilities(ax, probs, classes, delta=None):
    """Class probabilities as bars, the predicted class in colour; with ``delta``, the change instead."""
    values = np.asarray(probs if delta is None else delta, float)
    names = list(classes)[:len(values)]
    pred = int(np.argmax(probs))
    colors = (["tab:blue" if k == pred else "0.75" for k in range(len(values))] if delta is None
              else ["tab:red" if v < 0 else "tab:green" for v in values])
    ax.barh(np.arange(len(values)), values, color=colors, gid="delta" if delta is not None else "probs")
    ax.set_yticks(np.arange(len(values)), names)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if delta is None:
        ax.set(xlim=(0, 1), title=f"predicted: {names[pred]} {values[pred]:.0%}")
    else:
        lim = max(0.05, float(np.abs(values).max()) * 1.1)
        ax.set(xlim=(-lim, lim))
        ax.axvline(0, color="black", lw=0.8)
    return ax


def prior_blocks(face, points, margin: float | None = None, model=None, classes=None) -> Figure:
    """The face with its landmarks and the two boxes, the blocks the model is given, and its prediction.

    ``face``: ``(H, W)`` or ``(C, H, W)`` uint8; ``points``: its ``(68, 2)`` landmarks; ``margin``:
    of the face size (default ``fercore.faces.regions.MARGIN``). Without ``model`` the blocks are
    cut the same way (``block_predictions`` needs a model only to predict).
    """
    pred = block_predictions(face, points, margin, model)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(1, 3 + (model is not None), figsize=(2.4 * 3 + 3.2 * (model is not None), 2.6),
                                 width_ratios=[1.4, 1, 1] + [1.8] * (model is not None), layout="constrained")
    draw_blocks(axes, face, points, pred)
    if model is not None:
        draw_probabilities(axes[3], pred["probs"], _names(classes, model, len(pred["probs"])))
    return fig


def block_occlusion(model, face, points, margin: float | None = None, classes=None, ax=None):
    """Change in each class's probability when one block is grey: grouped bars, eyes and mouth.

    A block the prediction leans on shows a large drop for the predicted class. Returns the Axes.
    """
    pred = block_predictions(face, points, margin, model)
    names = _names(classes, model, len(pred["probs"]))
    table = {f"{b} occluded": dict(zip(names, p - pred["probs"])) for b, p in pred["occluded"].items()}
    ax = _grouped_bars(table, ax, ylabel="change in probability", fmt="{:+.0%}")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title(f"occluding a block (grey {GREY}): predicted {names[int(pred['probs'].argmax())]} "
                 f"{pred['probs'].max():.0%}")
    return ax


def _names(classes, model, k: int) -> list[str]:
    from ..labels import classes_for

    return [str(c) for c in (classes if classes is not None else getattr(model, "classes", None) or classes_for(k))]


# --------------------------------------------------------------------------- training
def learning_curves(history, best_epoch=None, axes=None) -> Figure:
    """Loss and accuracy per epoch, train against validation, with the kept checkpoint marked.

    ``history``: a list of dicts with ``epoch`` and any of ``train_loss``, ``val_loss``,
    ``train_accuracy``, ``val_accuracy`` (the Trainer's history). A gap between the train and
    val curves that grows is overfitting. ``axes``: two Axes to draw into (default: a new figure).
    """
    if not history:
        raise ValueError("history is empty: there is no epoch to plot")
    missing = [i for i, row in enumerate(history) if "epoch" not in row]
    if missing:
        raise ValueError(f"history rows {missing} have no 'epoch' key; keys of row {missing[0]}: {sorted(history[missing[0]])}")
    if axes is None:
        with sns.axes_style("whitegrid"):
            axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")[1]
    epochs = [row["epoch"] for row in history]
    marker = "o" if len(epochs) <= 30 else None
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split in ("train", "val"):
            values = np.array([row.get(f"{split}_{metric}") for row in history], dtype=float)
            if not np.isnan(values).all():
                ax.plot(epochs, values, marker=marker, ms=4, label=split, gid=f"{split}_{metric}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.35", ls="--", lw=1.2, label=f"best (epoch {best_epoch})", gid="best_epoch")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend()
    accuracy = np.array([row.get(k) for row in history for k in ("train_accuracy", "val_accuracy")], dtype=float)
    if np.nanmax(accuracy, initial=0) <= 1:
        axes[1].yaxis.set_major_formatter(PercentFormatter(1.0))
    return axes[0].figure


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class LiveCurve:
    """Trainer callback that redraws the learning curves in place after each epoch.

    ``Trainer(..., callbacks=[LiveCurve()])``. In a notebook the plot is one output that is
    updated (a display handle), so progress bars in the same cell stay. The figure is kept
    out of pyplot, so it is never shown twice or left open; outside a notebook it is drawn
    but not displayed (``cb.figure.savefig(...)`` still works).
    """

    def __init__(self):
        self.figure = Figure(figsize=(10, 3.8), layout="constrained")
        self._handle = None

    def __call__(self, trainer, record) -> None:
        history = list(trainer.history)
        if not history or history[-1].get("epoch") != record.get("epoch"):  # called before the record was stored
            history.append(record)
        self.figure.clear()
        with notebook_style(), sns.axes_style("whitegrid"):
            axes = self.figure.subplots(1, 2)
            learning_curves(history, getattr(trainer, "best_epoch", None), axes=axes)
        if _in_notebook():
            self._show()

    def _show(self) -> None:
        # An SVG, not the Figure: IPython renders a bare Figure only once the inline backend
        # has registered its formatter, which may not have happened yet in this cell.
        from IPython.display import SVG, display

        image = SVG(figure_svg(self.figure))
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)


# --------------------------------------------------------------------------- evaluation
def confusion_matrix(confusion, classes, normalize: str | None = "true", ax=None, title=None):
    """Heatmap of a confusion matrix whose rows are the true classes.

    ``normalize="true"`` shows each row as percentages of that class's images, so the diagonal
    is per-class recall and rare classes (disgust) are as readable as common ones (happy);
    ``None`` shows raw counts. Returns the Axes.
    """
    counts = np.asarray(confusion, dtype=float)
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(f"confusion must be {k}x{k} for {k} classes, got shape {counts.shape}")
    if normalize not in ("true", None):
        raise ValueError(f"normalize must be 'true' or None, got {normalize!r}")
    if normalize == "true":
        totals = counts.sum(1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        style = {"fmt": ".0%", "vmax": 1.0, "cbar_kws": {"format": PercentFormatter(1.0)}}
    else:
        values = counts
        style = {"fmt": ".0f" if np.all(counts == counts.round()) else ".2f"}
    ax = ax or _new_axes((0.8 * k + 2.2, 0.7 * k + 1.2), style="white")
    sns.heatmap(values, annot=True, cmap="Blues", vmin=0, square=True, linewidths=0.5,
                xticklabels=classes, yticklabels=classes, ax=ax, **style)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title or ("Confusion matrix (% of each true class)" if normalize else "Confusion matrix (counts)"))
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    plt.setp(ax.get_yticklabels(), rotation=0)
    return ax


def per_class_recall(recalls, ax=None, title=None):
    """Bar plot of recall per class, for one run (dict class -> recall) or several (dict run -> dict).

    Recalls are fractions in [0, 1]; ``None`` (a class absent from the test set) leaves a gap.
    Accuracy hides a model that never predicts a rare class; this plot shows it. Returns the Axes.
    """
    table = _as_table(recalls, "per_class_recall")
    for run, row in table.items():
        for c, v in row.items():
            if v is not None and not (np.isnan(v) or 0 <= v <= 1):
                raise ValueError(f"recall of {c!r}{f' in run {run!r}' if run else ''} is {v}; expected a fraction in [0, 1]")
    ax = _grouped_bars(table, ax, ylabel="recall", fmt="{:.0%}")
    ax.set_ylim(0, 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(title or "Recall per class")
    return ax


def recall_heatmap(recalls, ax=None, title=None):
    """Recall per class (columns) of several runs (rows) in one heat map: ``{run: {class: recall}}``.

    A class a run does not have (contempt, for a 7-class model) is a blank cell. The columns that are
    low in every row are the classes every method confuses. Returns the Axes.
    """
    table = _as_table(recalls, "recall_heatmap")
    classes = list(dict.fromkeys(c for row in table.values() for c in row))
    values = np.array([[np.nan if row.get(c) is None else float(row[c]) for c in classes] for row in table.values()])
    if np.any((values < 0) | (values > 1)):
        raise ValueError("recall_heatmap expects recalls as fractions in [0, 1]")
    ax = ax or _new_axes((0.9 * len(classes) + 3.5, 0.45 * len(table) + 1.6), style="white")
    sns.heatmap(values, annot=True, fmt=".0%", cmap="Blues", vmin=0, vmax=1, linewidths=0.5, xticklabels=classes,
                yticklabels=list(table), cbar_kws={"format": PercentFormatter(1.0)}, ax=ax)
    ax.set_title(title or "Recall per class")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    plt.setp(ax.get_yticklabels(), rotation=0)
    return ax


def accuracy_vs_cost(points, xlabel: str = "FLOPs per face", ax=None, title=None, log: bool = True):
    """One labelled point per method: ``{name: (cost, accuracy %)}``, the cost on a log axis by default."""
    if not points:
        raise ValueError("accuracy_vs_cost needs at least one (cost, accuracy) point")
    ax = ax or _new_axes((7.0, 4.5))
    for name, (cost, acc) in points.items():
        ax.scatter([cost], [acc], s=40, gid=f"point_{name}")
        ax.annotate(name, (cost, acc), xytext=(4, 4), textcoords="offset points", fontsize=9)
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="accuracy (%)", title=title or f"Accuracy against {xlabel}")
    return ax


def misclassified_grid(images, targets, probs, classes, n: int = 16, ncols: int = 8) -> Figure:
    """The ``n`` most confident mistakes: each face titled ``true -> predicted (probability)``.

    ``images`` uint8 ``(N, C, H, W)``, ``targets`` ``(N,)`` true class indices, ``probs``
    ``(N, K)`` predicted probabilities. Confident mistakes are where label noise and truly
    ambiguous faces show up first.
    """
    probs = np.asarray(probs, dtype=float)
    targets = np.asarray(targets)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != targets)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    nrows = max(1, math.ceil(len(wrong) / ncols))
    with sns.axes_style("white"):
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.7 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        _bare(ax)
    for ax, i in zip(axes.flat, wrong):
        _show_image(ax, images[i], f"image {i}")
        ax.set_title(f"{classes[targets[i]]} →\n{classes[pred[i]]} {probs[i, pred[i]]:.0%}", fontsize=9)
    fig.suptitle(f"{len(wrong)} most confident mistakes (true → predicted) of {len(np.flatnonzero(pred != targets))}")
    return fig


def votes_grid(images, votes, labels, columns, label_classes, n: int = 6) -> Figure:
    """Faces above the annotators' votes: FERPlus's ten taggers against FER2013's single label.

    ``votes`` ``(N, V)`` counts in ``columns`` order (fer2013new.csv's), ``labels`` ``(N,)`` the
    FER2013 label of each face as an index into ``label_classes``. The first ``n`` faces are drawn.
    """
    votes = np.asarray(votes)
    n = min(n, len(votes))
    with sns.axes_style("white"):
        fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.2), squeeze=False, layout="constrained",
                                 height_ratios=[1, 1.3])
    for k in range(n):
        _show_image(axes[0, k], images[k], f"image {k}")
        axes[0, k].set_title(f"FER2013: {label_classes[int(labels[k])]}", fontsize=9)
        ax = axes[1, k]
        ax.barh(np.arange(len(columns)), votes[k], color="tab:blue")
        ax.set_yticks(np.arange(len(columns)), columns if k == 0 else [""] * len(columns), fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, max(10, votes[k].sum()))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # votes are whole: 0, 2, ..., 10
        ax.tick_params(axis="x", labelsize=9)
    axes[1, 0].set_xlabel("FERPlus votes", fontsize=9)
    return fig
