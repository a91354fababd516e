"""ipywidgets explorers: pick an image and an occluder (or a CBAM stage), see the prediction and the attention.

``AttentionExplorer(model, dataset)`` in a notebook cell shows sliders and one figure that
redraws when a slider moves. The figure is an SVG placed in an ``ipywidgets.Output``, built
with matplotlib's object API (never pyplot), so it is shown once, leaks no open figure and
renders with no frontend at all (papermill, CI): the explorer's state (``last_probs``,
``last_map``, ``figure``) is there to inspect either way, and a notebook that is viewed
without a live kernel shows the last rendered figure instead of the controls.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import ipywidgets as W
import numpy as np
import seaborn as sns
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from .plots import OUTLINE, block_predictions, draw_blocks, draw_probabilities, figure_svg, notebook_style
from .attention import (_bare, _class_names, _gray, draw_warp, has_stn, model_view, occlusion_map, overlay, predict,
                        stn_views)
from .cbam import cbam_maps, cbam_stages, grad_cam

__all__ = ["AttentionExplorer", "CBAMExplorer", "PredictUpload", "PriorBlocksExplorer", "RANExplorer"]


class _FigureWidget:
    """What the explorers share: ``self.widget`` (the controls and figure) and ``self.figure``, redrawn by ``update``."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        # The live widget where a frontend can draw it; the last figure where it cannot (a static view).
        bundle = dict(self.widget._repr_mimebundle_() or {})
        bundle["image/svg+xml"] = figure_svg(self.figure)
        return bundle

    def _changed(self, change) -> None:
        self.update()


class AttentionExplorer(_FigureWidget):
    """Explore one image at a time: the face, its occlusion map, the STN warp, the class probabilities.

    ``model``: any fercore model (eval mode is used and the model's mode is restored);
    ``dataset``: a FERDataset (``images`` uint8 ``(N, C, H, W)``, ``targets``, ``classes``).
    Controls: the image index, which class to explain ("predicted" or a class), the
    occluding patch size and its stride (at most the patch: a larger stride would leave pixels
    that no patch covers, so the stride slider's range follows the patch slider).
    Panels: the image as the model sees it (centre crop) with its true label; the occlusion
    map over it (red: covering this region lowers the explained class's probability, blue:
    raises it); for models with a spatial transformer (``forward_with_attention`` returning
    ``"warped"``), the sampling grid on the input and the warped image; the probabilities,
    the predicted class in colour and the true class marked.

    After each render: ``last_index``, ``last_probs`` ``(K,)``, ``last_map`` ``(H, W)``,
    ``last_target`` (the explained class), ``last_warped`` (or None), ``figure``, ``axes``
    (a dict panel name -> Axes). ``update()`` re-renders; changing a control does it too.
    """

    def __init__(self, model: nn.Module, dataset, classes=None, index: int = 0, patch: int = 8, stride: int = 4,
                 baseline: float = 0.5):
        if len(dataset) == 0:
            raise ValueError("AttentionExplorer needs a dataset with at least one image")
        self.model, self.dataset, self.baseline = model, dataset, baseline
        self.classes = [str(c) for c in (classes if classes is not None else dataset.classes)]
        size = min(model_view(model, dataset.images[:1]).shape[-2:])
        self.has_stn = has_stn(model, dataset.images[:1])  # CBAM's ResNets have forward_with_attention, no warp
        self.index = W.IntSlider(value=index, min=0, max=len(dataset) - 1, description="image",
                                 continuous_update=False)
        self.target = W.Dropdown(options=[("predicted", -1)] + [(c, k) for k, c in enumerate(self.classes)],
                                 value=-1, description="explain")
        self.patch = W.IntSlider(value=patch, min=1, max=max(size // 2, patch), description="patch (px)",
                                 continuous_update=False)
        self.stride = W.IntSlider(value=min(stride, patch), min=1, max=patch, description="stride (px)",
                                  continuous_update=False)
        self.output = W.Output()
        self.widget = W.VBox([W.HBox([self.index, self.target]), W.HBox([self.patch, self.stride]), self.output])
        self.figure = Figure(figsize=(12.5 if self.has_stn else 8.5, 2.9), layout="constrained")
        self.axes: dict = {}
        self.last_index = self.last_probs = self.last_map = self.last_target = self.last_warped = None
        self.patch.observe(self._patch_changed, names="value")
        for control in (self.index, self.target, self.stride):
            control.observe(self._changed, names="value")
        self.update()

    # ------------------------------------------------------------------ display
    def display(self) -> None:
        """Show the controls and the figure (``display(explorer)`` and a cell's last value do the same)."""
        from IPython.display import display

        display(self)

    # ------------------------------------------------------------------ rendering
    def _patch_changed(self, change) -> None:
        # Lowering the stride's max clamps its value (and would redraw once for that change):
        # hold the stride's redraw and draw once, with both new values.
        self.stride.unobserve(self._changed, names="value")
        try:
            self.stride.max = int(change["new"])
        finally:
            self.stride.observe(self._changed, names="value")
        self.update()

    def update(self) -> None:
        """Recompute the prediction and the maps for the current controls and redraw."""
        i = int(self.index.value)
        image = self.dataset.images[i:i + 1]
        patch = int(self.patch.value)
        stride = int(self.stride.value)
        probs = predict(self.model, image)[0]
        target = int(probs.argmax()) if self.target.value == -1 else int(self.target.value)
        view = model_view(self.model, image)[0]
        patch = min(patch, *view.shape[-2:])
        heat = occlusion_map(self.model, image, target=target, patch=patch, stride=stride, baseline=self.baseline)[0]
        warp = stn_views(self.model, image) if self.has_stn else None
        self.last_index, self.last_probs, self.last_map, self.last_target = i, probs, heat, target
        self.last_warped = None if warp is None else torch.from_numpy(warp["warped"][0])
        with notebook_style():
            self._draw(i, view, heat, probs, target, patch, stride, warp)
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/svg+xml": figure_svg(self.figure),
                                         "text/plain": f"<AttentionExplorer image {i}>"}},)

    def _draw(self, i, view, heat, probs, target, patch, stride, warp) -> None:
        names = _class_names(self.classes, len(probs))
        true = int(self.dataset.labels()[i])
        pred = int(probs.argmax())
        fig = self.figure
        fig.clear()
        panels = ["image", "occlusion"] + (["grid", "warped"] if warp is not None else []) + ["probs"]
        with sns.axes_style("white"):
            axes = fig.subplots(1, len(panels), width_ratios=[1] * (len(panels) - 1) + [1.5])
        self.axes = dict(zip(panels, axes))
        ax = self.axes["image"]
        data, style = _gray(view)
        ax.imshow(data, **style)
        _bare(ax)
        ax.set_title(f"#{i}  true: {names[true]}", fontsize=10)
        ax = self.axes["occlusion"]
        overlay(ax, view, heat)
        ax.set_title(f"occlusion {patch}px / {stride}: {names[target]}", fontsize=10)
        fig.colorbar(ax.get_images()[-1], ax=ax, shrink=0.8, label="drop in p")
        if warp is not None:
            draw_warp(self.axes["grid"], warp["input"][0], warp["grid"][0], warp["theta"][0])
            self.axes["grid"].set_title("sampling grid", fontsize=10)
            data, style = _gray(warp["warped"][0])
            self.axes["warped"].imshow(data, **style)
            _bare(self.axes["warped"])
            self.axes["warped"].set_title("warped (classifier sees)", fontsize=10)
        ax = self.axes["probs"]
        p = probs.numpy()
        colors = ["tab:blue" if k == pred else "0.75" for k in range(len(p))]
        ax.barh(np.arange(len(p)), p, color=colors, edgecolor=["black" if k == true else "none" for k in range(len(p))],
                linewidth=1.5, gid="probs")
        ax.set_yticks(np.arange(len(p)), [f"{n} (true)" if k == true else n for k, n in enumerate(names[:len(p)])])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(f"predicted: {names[pred]} {p[pred]:.0%}", fontsize=10)
        for label, k in zip(ax.get_yticklabels(), range(len(p))):
            if k == true:
                label.set_fontweight("bold")


class PredictUpload:
    """Upload a photo and see every face found, its box, the predicted label and the probabilities.

    The same pipeline as ``python -m fercore predict`` (``fercore.predict.predict_image``:
    detect, landmarks, align, model). ``model`` is the trained model (``fercore.train.load_model``);
    ``classes`` its class names. Uploading a file (ipywidgets ``FileUpload``) runs it;
    so does ``predict_file(path)``, which headless runs call with a bundled image. After each
    prediction: ``last_result`` (the dict ``predict_image`` returns) and ``figure``.
    """

    def __init__(self, model: nn.Module, classes, method: str = "auto"):
        self.model, self.classes, self.method = model, [str(c) for c in classes], method
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="photo")
        self.output = W.Output()
        self.widget = W.VBox([self.upload, self.output])
        self.figure = Figure(figsize=(9, 3.6), layout="constrained")
        self.last_result: dict | None = None
        self.upload.observe(self._uploaded, names="value")

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget._repr_mimebundle_() or {})
        if self.last_result is not None:
            bundle["image/svg+xml"] = figure_svg(self.figure)
        return bundle

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:
            return
        # ipywidgets 8: a tuple of dicts with name and content; ipywidgets 7: a dict name -> dict
        item = files[0] if isinstance(files, (tuple, list)) else next(iter(files.values())) | {"name": next(iter(files))}
        self.predict_bytes(bytes(item["content"]), item["name"])

    def predict_bytes(self, data: bytes, name: str = "upload.png") -> dict:
        """Predict on an image file's bytes (as uploaded); ``name`` gives the format and the title."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            result = self.predict_file(path)
        result["image"] = name
        return result

    def predict_file(self, path) -> dict:
        """Run the pipeline on the image at ``path``, draw the faces and the first face's probabilities."""
        from ..faces import read_image
        from ..predict import predict_image

        try:
            result = predict_image(self.model, path, self.classes, method=self.method)
        except (FileNotFoundError, ValueError) as err:
            result = {"image": str(path), "faces": [], "message": str(err)}
            self.last_result = result
            self.output.outputs = ({"output_type": "stream", "name": "stdout", "text": f"{err}\n"},)
            return result
        self.last_result = result
        with notebook_style():
            self._draw(read_image(path), result)
        text = result.get("message") or f"<{len(result['faces'])} face(s) in {Path(str(path)).name}>"
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/svg+xml": figure_svg(self.figure), "text/plain": text}},)
        return result

    def _draw(self, image: np.ndarray, result: dict) -> None:
        fig = self.figure
        fig.clear()
        with sns.axes_style("white"):
            ax_img, ax_p = fig.subplots(1, 2, width_ratios=[1.6, 1])
        ax_img.imshow(image, cmap="gray" if image.ndim == 2 else None)
        _bare(ax_img)
        for k, face in enumerate(result["faces"]):
            left, top, right, bottom = face["box"]
            ax_img.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, color="lime", lw=2))
            ax_img.text(left, top - 4, f"{k}: {face['label']}", color="lime", fontsize=10, va="bottom",
                        path_effects=OUTLINE)
        ax_img.set_title(result.get("message") or f"{len(result['faces'])} face(s)", fontsize=10)
        if not result["faces"]:
            ax_p.axis("off")
            return
        probs = result["faces"][0]["probabilities"]
        names, p = list(probs), np.array(list(probs.values()))
        ax_p.barh(np.arange(len(p)), p, color=["tab:blue" if k == p.argmax() else "0.75" for k in range(len(p))])
        ax_p.set_yticks(np.arange(len(p)), names)
        ax_p.invert_yaxis()
        ax_p.set_xlim(0, 1)
        ax_p.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax_p.set_title(f"face 0: {names[p.argmax()]} {p.max():.0%}", fontsize=10)


class PriorBlocksExplorer(_FigureWidget):
    """Prior Attention's blocks for one face at a time: landmarks, boxes, blocks, prediction, occlusion.

    ``model``: a model that eats the blocks (``prior_attention``; its ``default_cfg`` names the
    regions); ``dataset``: a FERDataset of faces whose landmarks are ``meta["landmarks"]`` (the
    synthetic faces') or dlib's (``fercore.faces.regions.dataset_points``). Controls: the face,
    the margin (a fraction of the face size; the model was trained at ``regions.MARGIN``) and
    which block to occlude. Top row: the face with its 68 landmarks and the two boxes, the
    blocks as the model is given them, the class probabilities. Bottom row: the blocks with one
    grey (``plots.GREY``, the blocks' normalised mean) and how much each class's probability
    changes. The blocks are cut as ``predict`` cuts them (``plots.block_predictions``).

    After each render: ``last_index``, ``last_blocks`` ``(2, s, s)``, ``last_probs`` ``(K,)``,
    ``last_occluded`` ``(K,)``, ``last_delta`` (``last_occluded - last_probs``), ``figure``, ``axes``.
    """

    def __init__(self, model: nn.Module, dataset, classes=None, index: int = 0, margin: float | None = None,
                 occlude: str = "mouth"):
        from ..faces.regions import BLOCKS, MARGIN, dataset_points

        if not (getattr(model, "default_cfg", None) or {}).get("regions"):
            raise ValueError("PriorBlocksExplorer needs a model that eats landmark blocks (default_cfg['regions']), "
                             "such as prior_attention")
        if len(dataset) == 0:
            raise ValueError("PriorBlocksExplorer needs a dataset with at least one face")
        if occlude not in BLOCKS:
            raise ValueError(f"occlude must be one of {', '.join(BLOCKS)}, got {occlude!r}")
        self.model, self.dataset = model, dataset
        self.points = dataset_points(dataset, progress=False)[0]
        self.classes = [str(c) for c in (classes if classes is not None else dataset.classes)]
        self.index = W.IntSlider(value=index, min=0, max=len(dataset) - 1, description="face", continuous_update=False)
        self.margin = W.FloatSlider(value=MARGIN if margin is None else margin, min=0.0, max=0.5, step=0.02,
                                    description="margin", readout_format=".2f", continuous_update=False)
        self.occlude = W.ToggleButtons(options=list(BLOCKS), value=occlude, description="occlude")
        self.output = W.Output()
        self.widget = W.VBox([W.HBox([self.index, self.margin]), self.occlude, self.output])
        self.figure = Figure(figsize=(11, 5), layout="constrained")
        self.axes: dict = {}
        self.last_index = self.last_blocks = self.last_probs = self.last_occluded = self.last_delta = None
        for control in (self.index, self.margin, self.occlude):
            control.observe(self._changed, names="value")
        self.update()

    def update(self) -> None:
        """Cut the blocks at the current margin, predict with and without the occluded block, redraw."""
        i, occlude = int(self.index.value), self.occlude.value
        face, points = self.dataset.images[i], self.points[i]
        pred = block_predictions(face, points, self.margin.value, self.model)
        self.last_index, self.last_blocks, self.last_probs = i, pred["blocks"], pred["probs"]
        self.last_occluded = pred["occluded"][occlude]
        self.last_delta = self.last_occluded - self.last_probs
        with notebook_style():
            self._draw(i, face, points, pred, occlude)
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/svg+xml": figure_svg(self.figure),
                                         "text/plain": f"<PriorBlocksExplorer face {i}>"}},)

    def _draw(self, i, face, points, pred, occlude) -> None:
        names = _class_names(self.classes, len(pred["probs"]))
        fig = self.figure
        fig.clear()
        with sns.axes_style("white"):
            self.axes = fig.subplot_mosaic([["face", "eyes", "mouth", "probs"], ["face", "eyes_occluded",
                                            "mouth_occluded", "delta"]], width_ratios=[1.6, 1, 1, 1.8])
        a = self.axes
        draw_blocks([a["face"], a["eyes"], a["mouth"]], face, points, pred)
        draw_blocks([None, a["eyes_occluded"], a["mouth_occluded"]], face, points, pred, occlude=occlude)
        a["face"].set_title(f"#{i}  true: {names[int(self.dataset.labels()[i])]}\nmargin {pred['margin']:.2f}",
                            fontsize=10)
        draw_probabilities(a["probs"], pred["probs"], names)
        draw_probabilities(a["delta"], pred["probs"], names, delta=self.last_delta)
        a["delta"].set_title(f"{occlude} grey: {names[int(pred['probs'].argmax())]} "
                             f"{self.last_delta[int(pred['probs'].argmax())]:+.1%}", fontsize=10)


class CBAMExplorer(_FigureWidget):
    """CBAM and Grad-CAM for one face at a time: pick the face and the stage whose gates to show.

    ``model``: a fercore ResNet with CBAM (``resnet18_cbam``, ``resnet18_cbam_asoftmax``);
    ``dataset``: a FERDataset. Controls: the face and the stage (``layer1``..``layer4``; the
    stage's last block). Panels: the face as the model sees it with its true label; the stage's
    CBAM spatial gate over it (0 to 1, the same for every class: where this stage looks); Grad-CAM
    on the last stage for the predicted class (``cbam.grad_cam``: which regions raise that
    class's score); the stage's largest channel weights (the dashed line is the mean of all
    its channels); the class probabilities.

    After each render: ``last_index``, ``last_probs`` ``(K,)``, ``last_spatial`` (the gate at
    its own resolution, ``(h, w)``: 44, 22, 11 or 6 px for a 44-px face), ``last_channel``
    ``(C,)``, ``last_cam`` ``(H, W)``, ``figure``, ``axes``.
    """

    def __init__(self, model: nn.Module, dataset, classes=None, index: int = 0, stage: str = "layer4",
                 top: int = 10):
        if len(dataset) == 0:
            raise ValueError("CBAMExplorer needs a dataset with at least one face")
        stages = list(cbam_stages(model))
        if stage not in stages:
            raise ValueError(f"stage must be one of {', '.join(stages)}, got {stage!r}")
        self.model, self.dataset, self.top = model, dataset, top
        self.classes = [str(c) for c in (classes if classes is not None else dataset.classes)]
        self.index = W.IntSlider(value=index, min=0, max=len(dataset) - 1, description="face", continuous_update=False)
        self.stage = W.Dropdown(options=stages, value=stage, description="stage")
        self.output = W.Output()
        self.widget = W.VBox([W.HBox([self.index, self.stage]), self.output])
        self.figure = Figure(figsize=(13, 3.0), layout="constrained")
        self.axes: dict = {}
        self.last_index = self.last_probs = self.last_spatial = self.last_channel = self.last_cam = None
        for control in (self.index, self.stage):
            control.observe(self._changed, names="value")
        self.update()

    def update(self) -> None:
        """Recompute the gates, Grad-CAM and the prediction for the current face and stage; redraw."""
        i, stage = int(self.index.value), self.stage.value
        image = self.dataset.images[i:i + 1]
        gates = cbam_maps(self.model, image)[stage]
        self.last_index, self.last_probs = i, predict(self.model, image)[0]
        self.last_spatial, self.last_channel = gates["native"][0], gates["channel"][0]
        self.last_cam = grad_cam(self.model, image)[0]
        with notebook_style():
            self._draw(i, model_view(self.model, image)[0], gates)
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/svg+xml": figure_svg(self.figure),
                                         "text/plain": f"<CBAMExplorer face {i} {stage}>"}},)

    def _draw(self, i, view, gates) -> None:
        names = _class_names(self.classes, len(self.last_probs))
        pred = int(self.last_probs.argmax())
        fig = self.figure
        fig.clear()
        panels = ["image", "spatial", "gradcam", "channels", "probs"]
        with sns.axes_style("white"):
            self.axes = dict(zip(panels, fig.subplots(1, 5, width_ratios=[1, 1, 1, 1.3, 1.5])))
        a = self.axes
        data, style = _gray(view)
        a["image"].imshow(data, **style)
        _bare(a["image"])
        a["image"].set_title(f"#{i}  true: {names[int(self.dataset.labels()[i])]}", fontsize=10)
        overlay(a["spatial"], view, gates["spatial"][0], vmin=0.0, vmax=1.0)
        h, w = self.last_spatial.shape
        a["spatial"].set_title(f"CBAM spatial gate\n{gates['block']} ({h}x{w})", fontsize=10)
        fig.colorbar(a["spatial"].get_images()[-1], ax=a["spatial"], shrink=0.8)
        overlay(a["gradcam"], view, self.last_cam)
        a["gradcam"].set_title(f"Grad-CAM {self.model.block_names[-1]}\nfor {names[pred]}", fontsize=10)
        weights = self.last_channel.numpy()
        order = np.argsort(weights)[::-1][:self.top]
        a["channels"].barh(np.arange(len(order)), weights[order], color="tab:purple", gid="channels")
        a["channels"].axvline(weights.mean(), color="black", ls="--", lw=1, gid="channel_mean")
        a["channels"].set_yticks(np.arange(len(order)), [f"ch {k}" for k in order])
        a["channels"].invert_yaxis()
        a["channels"].set(xlim=(0, 1), title=f"top {len(order)} of {len(weights)} channels")
        draw_probabilities(a["probs"], self.last_probs.numpy(), names)


class RANExplorer(_FigureWidget):
    """RAN's region weights for one face at a time, with a grey square to drag over the face.

    ``model``: ``ran`` (or ``ran_face_only``); ``dataset``: a FERDataset. Controls: the face, the
    occluder's centre (x, y, in the model's view) and side (0: no occluder). Panels: the face as
    the model sees it, occluded, with its regions' boxes; mu and nu per region (the weights move to
    the regions the square does not cover); the class probabilities.

    After each render: ``last_index``, ``last_mu``, ``last_nu`` ``(K,)``, ``last_probs`` ``(C,)``,
    ``last_image`` (the occluded uint8 face), ``figure``, ``axes``.
    """

    def __init__(self, model: nn.Module, dataset, classes=None, index: int = 0, side: int = 0, x: int | None = None,
                 y: int | None = None, baseline: int = 128):
        from .ran import region_names

        if len(dataset) == 0:
            raise ValueError("RANExplorer needs a dataset with at least one face")
        if getattr(model, "precut", False):
            raise ValueError("RANExplorer draws its square on the face the model cuts its regions from; a precut model "
                             "(ran_landmarks) gets its crops already cut: use ran or ran_face_only")
        self.model, self.dataset, self.baseline = model, dataset, baseline
        self.classes = [str(c) for c in (classes if classes is not None else dataset.classes)]
        self.names = region_names(model)
        h, w = dataset.images.shape[-2:]
        self.index = W.IntSlider(value=index, min=0, max=len(dataset) - 1, description="face", continuous_update=False)
        self.x = W.IntSlider(value=w // 2 if x is None else x, min=0, max=w - 1, description="x", continuous_update=False)
        self.y = W.IntSlider(value=h // 3 if y is None else y, min=0, max=h - 1, description="y", continuous_update=False)
        self.side = W.IntSlider(value=side, min=0, max=min(h, w), description="side (px)", continuous_update=False)
        self.output = W.Output()
        self.widget = W.VBox([W.HBox([self.index, self.side]), W.HBox([self.x, self.y]), self.output])
        self.figure = Figure(figsize=(10, 3.0), layout="constrained")
        self.axes: dict = {}
        self.last_index = self.last_mu = self.last_nu = self.last_probs = self.last_image = None
        for control in (self.index, self.x, self.y, self.side):
            control.observe(self._changed, names="value")
        self.update()

    def occluded(self) -> torch.Tensor:
        """The current face ``(1, C, H, W)`` uint8 with the grey square drawn on it (in the dataset's pixels)."""
        i, s = int(self.index.value), int(self.side.value)
        image = self.dataset.images[i:i + 1].clone()
        if s:
            x0, y0 = max(int(self.x.value) - s // 2, 0), max(int(self.y.value) - s // 2, 0)
            image[..., y0:y0 + s, x0:x0 + s] = self.baseline
        return image

    def update(self) -> None:
        """Recompute the weights and the prediction for the current face and occluder; redraw."""
        from .ran import ran_weights

        image = self.occluded()
        w = ran_weights(self.model, image)
        self.last_index, self.last_image = int(self.index.value), image[0]
        self.last_mu, self.last_nu, self.last_probs = w["mu"][0], w["nu"][0], w["probs"][0]
        with notebook_style():
            self._draw(w)
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/svg+xml": figure_svg(self.figure),
                                         "text/plain": f"<RANExplorer face {self.last_index}>"}},)

    def _draw(self, w) -> None:
        from .ran import draw_regions, draw_weight_bars

        names = _class_names(self.classes, len(self.last_probs))
        fig = self.figure
        fig.clear()
        with sns.axes_style("white"):
            self.axes = dict(zip(["image", "weights", "probs"], fig.subplots(1, 3, width_ratios=[1, 1.6, 1.6])))
        a = self.axes
        draw_regions(a["image"], w["view"][0], w["boxes"][0], self.names)
        a["image"].set_title(f"#{self.last_index}  true: {names[int(self.dataset.labels()[self.last_index])]}",
                             fontsize=10)
        draw_weight_bars(a["weights"], self.last_mu.numpy(), self.last_nu.numpy(), self.names)
        draw_probabilities(a["probs"], self.last_probs.numpy(), names)
