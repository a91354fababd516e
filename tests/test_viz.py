"""fercore.viz.plots under the headless Agg backend: each plot draws what it was given."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from types import SimpleNamespace  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fercore.data.base import FERDataset  # noqa: E402
from fercore.viz import plots  # noqa: E402

CLASSES = ["angry", "disgust", "happy"]
CLASSES7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    # Library code must never call plt.show (it would block a script and means nothing in CI).
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called by library code"))
    yield
    plt.close("all")


def make_dataset(counts=(5, 2, 4), channels=1, size=12, seed=0, **kw) -> FERDataset:
    g = torch.Generator().manual_seed(seed)
    targets = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    images = torch.randint(0, 256, (len(targets), channels, size, size), generator=g, dtype=torch.uint8)
    return FERDataset(images, targets, CLASSES[: len(counts)], **kw)


def bar_heights(ax) -> list[list[float]]:
    return [[bar.get_height() for bar in bars] for bars in ax.containers]


# --------------------------------------------------------------------------- class_distribution
def test_class_distribution_bar_heights_are_the_counts():
    ds = make_dataset((5, 2, 4), name="toy", split="train")
    ax = plots.class_distribution(ds)
    assert bar_heights(ax) == [[5], [2], [4]]  # one coloured bar per class
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert sorted(t.get_text() for t in ax.texts) == ["2", "4", "5"]  # bar labels
    assert "toy / train" in ax.get_title()


def test_class_distribution_groups_splits_and_normalizes():
    splits = {"train": make_dataset((6, 2, 4)), "val": make_dataset((1, 1, 2))}
    ax = plots.class_distribution(splits)
    assert bar_heights(ax) == [[6, 2, 4], [1, 1, 2]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val"]
    heights = bar_heights(plots.class_distribution(splits, normalize=True))
    np.testing.assert_allclose(heights, [[0.5, 1 / 6, 1 / 3], [0.25, 0.25, 0.5]])


def test_class_distribution_from_a_counts_dict_and_bad_input():
    ax = plots.class_distribution({"happy": 7, "sad": 3}, title="mine")
    assert bar_heights(ax) == [[7], [3]]
    assert ax.get_title() == "mine"
    with pytest.raises(TypeError, match="class_distribution expects"):
        plots.class_distribution([1, 2, 3])


# --------------------------------------------------------------------------- sample_grid
def shown_images(ax) -> list[np.ndarray]:
    return [np.asarray(im.get_array()) for im in ax.get_images()]


def test_sample_grid_one_row_per_class_with_images_of_that_class():
    ds = make_dataset((5, 2, 4))
    fig = plots.sample_grid(ds, per_class=3, seed=1)
    axes = np.array(fig.axes).reshape(3, 3)
    assert [sum(len(ax.get_images()) for ax in row) for row in axes] == [3, 2, 3]  # disgust has only 2
    for k, row in enumerate(axes):
        assert row[0].get_ylabel().startswith(CLASSES[k])
        own = ds.images[ds.targets == k][:, 0].numpy()
        for ax in row:
            for shown in shown_images(ax):
                assert any(np.array_equal(shown, img) for img in own)
    first = [shown_images(ax)[0] for ax in axes[0]]
    again = [shown_images(ax)[0] for ax in np.array(plots.sample_grid(ds, per_class=3, seed=1).axes).reshape(3, 3)[0]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # same seed, same picks


def test_sample_grid_rgb_and_chosen_classes():
    ds = make_dataset((3, 3, 3), channels=3)
    fig = plots.sample_grid(ds, per_class=2, classes=["happy", 0])
    assert len(fig.axes) == 4
    assert [fig.axes[0].get_ylabel().split()[0], fig.axes[2].get_ylabel().split()[0]] == ["happy", "angry"]
    assert shown_images(fig.axes[0])[0].shape == (12, 12, 3)
    with pytest.raises(ValueError, match="unknown class 'joy'"):
        plots.sample_grid(ds, classes=["joy"])


def test_sample_grid_rejects_images_that_are_not_chw():
    ds = make_dataset((2, 2, 2), channels=2)
    with pytest.raises(ValueError, match=r"image \d+: expected a \(C, H, W\) image"):
        plots.sample_grid(ds)


# --------------------------------------------------------------------------- landmarks
def test_show_landmarks_draws_68_points_and_the_ibug_outlines():
    rng = np.random.default_rng(0)
    images = make_dataset((3, 0, 0), size=32).images
    landmarks = rng.uniform(2, 30, (3, 68, 2))
    fig = plots.show_landmarks(images, landmarks, ncols=2, labels=["a", "b", "c"])
    assert len(fig.axes) == 3  # the fourth cell of the 2x2 grid is removed
    for ax, points, label in zip(fig.axes, landmarks, "abc"):
        (scatter,) = [c for c in ax.collections if c.get_gid() == "landmarks"]
        np.testing.assert_allclose(scatter.get_offsets(), points)
        lines = {line.get_gid(): line.get_xydata() for line in ax.lines}
        assert len(lines) == len(plots.LANDMARK_GROUPS) == 9
        np.testing.assert_allclose(lines["jaw"], points[0:17])
        np.testing.assert_allclose(lines["left eye"], points[[42, 43, 44, 45, 46, 47, 42]])  # closed
        np.testing.assert_allclose(lines["inner lip"][-1], points[60])
        assert ax.get_title() == label
        assert ax.get_xlim() == (-0.5, 31.5)  # points never change the image's extent


def test_show_landmarks_single_image_and_shape_errors():
    image = torch.zeros(1, 16, 16, dtype=torch.uint8)
    fig = plots.show_landmarks(image, np.full((68, 2), 8.0))
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match=r"landmarks of image 0: expected 68 .* got shape \(5, 2\)"):
        plots.show_landmarks([image], np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="2 images but 1 sets of landmarks"):
        plots.show_landmarks([image, image], np.zeros((1, 68, 2)))


# --------------------------------------------------------------------------- learning curves
HISTORY = [
    {"epoch": e, "train_loss": 2 / e, "val_loss": 2.2 / e, "train_accuracy": 0.2 * e, "val_accuracy": 0.15 * e}
    for e in range(1, 5)
]


def test_learning_curves_plot_each_series_and_mark_the_best_epoch():
    fig = plots.learning_curves(HISTORY, best_epoch=3)
    loss_ax, acc_ax = fig.axes
    curves = {line.get_gid(): line for ax in fig.axes for line in ax.lines}
    np.testing.assert_allclose(curves["val_loss"].get_ydata(), [r["val_loss"] for r in HISTORY])
    np.testing.assert_allclose(curves["train_accuracy"].get_xydata(), [[r["epoch"], r["train_accuracy"]] for r in HISTORY])
    for ax in (loss_ax, acc_ax):
        (best,) = [line for line in ax.lines if line.get_gid() == "best_epoch"]
        assert list(best.get_xdata()) == [3, 3]
    assert acc_ax.yaxis.get_major_formatter().format_pct(0.5, 1) == "50%"  # fractions shown as percent


def test_learning_curves_skip_missing_series_and_reject_bad_history():
    fig = plots.learning_curves([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}])
    assert [line.get_gid() for line in fig.axes[0].lines] == ["train_loss"]
    assert len(fig.axes[1].lines) == 0
    with pytest.raises(ValueError, match="history is empty"):
        plots.learning_curves([])
    with pytest.raises(ValueError, match=r"history rows \[1\] have no 'epoch'"):
        plots.learning_curves([{"epoch": 1}, {"loss": 1.0}])


def test_live_curve_outside_a_notebook_redraws_one_figure_and_leaks_none():
    open_before = plt.get_fignums()
    cb = plots.LiveCurve()
    trainer = SimpleNamespace(history=[], best_epoch=None)
    for record in HISTORY[:2]:
        trainer.history.append(record)
        trainer.best_epoch = record["epoch"]
        cb(trainer, record)
    assert plt.get_fignums() == open_before
    assert len(cb.figure.axes) == 2  # redrawn, not stacked
    (val_loss,) = [line for line in cb.figure.axes[0].lines if line.get_gid() == "val_loss"]
    assert list(val_loss.get_xdata()) == [1, 2]
    # A record the trainer has not stored yet is still drawn.
    cb(trainer, HISTORY[2])
    (val_loss,) = [line for line in cb.figure.axes[0].lines if line.get_gid() == "val_loss"]
    assert list(val_loss.get_xdata()) == [1, 2, 3]


def test_live_curve_in_a_notebook_updates_one_display(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(plots, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    cb = plots.LiveCurve()
    trainer = SimpleNamespace(history=HISTORY[:1], best_epoch=1)
    cb(trainer, HISTORY[0])
    cb(trainer, HISTORY[1])
    assert [kind for kind, _ in shown] == ["display", "update"]
    assert all("<svg" in obj.data for _, obj in shown)


# --------------------------------------------------------------------------- evaluation
def test_confusion_matrix_annotates_row_normalised_percentages():
    confusion = np.array([[8, 2, 0], [1, 1, 2], [0, 0, 0]])
    ax = plots.confusion_matrix(confusion, CLASSES)
    expected = [[0.8, 0.2, 0.0], [0.25, 0.25, 0.5], [0.0, 0.0, 0.0]]  # an empty row is 0, not NaN
    assert [t.get_text() for t in ax.texts] == [f"{v:.0%}" for row in expected for v in row]
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(3, 3), expected)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES


def test_confusion_matrix_counts_into_a_given_axes_and_errors():
    fig, ax = plt.subplots()
    confusion = torch.tensor([[3, 1], [0, 12]])
    assert plots.confusion_matrix(confusion, ["a", "b"], normalize=None, ax=ax, title="t") is ax
    assert [t.get_text() for t in ax.texts] == ["3", "1", "0", "12"]
    assert ax.get_title() == "t"
    with pytest.raises(ValueError, match="confusion must be 3x3 for 3 classes"):
        plots.confusion_matrix(np.ones((2, 2)), CLASSES)
    with pytest.raises(ValueError, match="normalize must be 'true' or None"):
        plots.confusion_matrix(confusion, ["a", "b"], normalize="all")


def test_per_class_recall_single_and_grouped_runs():
    ax = plots.per_class_recall({"angry": 0.5, "happy": 0.75})
    assert bar_heights(ax) == [[0.5], [0.75]]
    assert sorted(t.get_text() for t in ax.texts) == ["50%", "75%"]
    runs = {"cnn": {"angry": 0.5, "happy": 0.75}, "vgg": {"angry": 0.25, "happy": None}}
    ax = plots.per_class_recall(runs)
    assert bar_heights(ax) == [[0.5, 0.75], [0.25]]  # vgg's missing "happy" is a gap
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cnn", "vgg"]
    with pytest.raises(ValueError, match="recall of 'happy' in run 'x' is 75"):
        plots.per_class_recall({"x": {"happy": 75}})


def test_every_plot_saves_a_png_headless(tmp_path):
    ds = make_dataset()
    figures = [
        plots.class_distribution(ds).figure,
        plots.sample_grid(ds, per_class=2),
        plots.show_landmarks(ds.images[:2], np.full((2, 68, 2), 6.0)),
        plots.learning_curves(HISTORY, best_epoch=2),
        plots.confusion_matrix(np.eye(3), CLASSES).figure,
        plots.per_class_recall({"a": 0.1}).figure,
    ]
    for i, fig in enumerate(figures):
        fig.savefig(tmp_path / f"{i}.png", dpi=40)
        assert (tmp_path / f"{i}.png").read_bytes()[:4] == b"\x89PNG"


def test_misclassified_grid_shows_the_most_confident_mistakes_first():
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 8, 8) * 50
    targets = np.array([0, 1, 2, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05],   # right
                      [0.7, 0.2, 0.1],     # wrong, 70%
                      [0.1, 0.85, 0.05],   # wrong, 85%
                      [0.2, 0.2, 0.6],     # wrong, 60%
                      [0.1, 0.8, 0.1]])    # right
    fig = plots.misclassified_grid(images, targets, probs, CLASSES, n=2, ncols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["happy →\ndisgust 85%", "disgust →\nangry 70%"]
    shown = [ax.get_images()[0].get_array()[0, 0] for ax in fig.axes if ax.get_images()]
    assert shown == [100, 50]  # images 2 and 1, in that order
    assert "of 3" in fig._suptitle.get_text()


def test_votes_grid_draws_each_faces_votes_and_fer2013_label():
    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    votes = np.array([[8, 2, 0], [0, 5, 5], [1, 1, 8]])
    fig = plots.votes_grid(images, votes, [2, 0, 1], ["neutral", "happiness", "surprise"], CLASSES, n=2)
    top = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in top] == ["FER2013: happy", "FER2013: angry"]
    bars = [[p.get_width() for p in ax.patches] for ax in fig.axes if ax.patches]
    assert bars == [[8, 2, 0], [0, 5, 5]]


def test_notebook_style_keeps_every_label_at_9_pt_or_more():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 1, 48, 48), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(7), 8)
    votes = rng.integers(0, 6, (3, 10))
    with plots.notebook_style():
        figures = [plots.misclassified_grid(images, np.zeros(8, int), probs, CLASSES7, n=8),
                   plots.votes_grid(images[:3], votes, [0, 1, 2], [f"c{k}" for k in range(10)], CLASSES7, n=3)]
    for fig in figures:
        fig.canvas.draw()
        texts = [t for t in fig.findobj(plt.Text) if t.get_text().strip() and t.get_visible()]
        assert texts and min(t.get_fontsize() for t in texts) >= 9
        plt.close(fig)
    svg = plots.figure_svg(figures[0])
    shown = sum(len(ax.get_images()) for ax in figures[0].axes)
    assert shown >= 4 and svg.count("image-rendering:pixelated") == shown  # each face at its own 48 x 48 pixels


def test_prior_blocks_draws_the_boxes_and_blocks_the_model_is_given():
    from matplotlib.patches import Rectangle

    from fercore.data.synthetic import FaceParams, render_face
    from fercore.faces.regions import block_box, cut_blocks
    from fercore.models import create_model

    image, points = render_face(FaceParams.expression("happy", 1.0), size=96)
    face = image[..., 0]
    fig = plots.prior_blocks(face, points, margin=0.3)
    boxes = {p.get_gid(): p for p in fig.axes[0].patches if isinstance(p, Rectangle)}
    left, top, right, bottom = block_box(points, "mouth", face.shape, 0.3)
    assert boxes["box_mouth"].get_xy() == (left - 0.5, top - 0.5) and boxes["box_mouth"].get_width() == right - left
    assert np.array_equal(fig.axes[2].get_images()[0].get_array(), cut_blocks(face, points, 0.3)[1])
    model = create_model("prior_attention_mouth")
    pred = plots.block_predictions(face, points, 0.3, model)
    assert pred["probs"].sum() == pytest.approx(1, abs=1e-5)
    assert np.allclose(pred["occluded"]["eyes"], pred["probs"], atol=1e-6)  # this ablation never sees the eyes
    with_model = plots.prior_blocks(face, points, model=model)
    assert len(with_model.axes) == 4
    ax = plots.block_occlusion(model, face, points, margin=0.3, classes=CLASSES7)
    heights = [[bar.get_height() for bar in bars] for bars in ax.containers]
    assert np.allclose(heights[1], pred["occluded"]["mouth"] - pred["probs"], atol=1e-6)
    assert np.allclose(heights[0], 0, atol=1e-6)
    with pytest.raises(ValueError, match="expected a uint8 face"):
        plots.prior_blocks(face.astype(float), points)


def test_recall_heatmap_one_row_per_run_and_blank_for_a_missing_class():
    runs = {"a": {"angry": 0.5, "happy": 1.0}, "b": {"angry": 0.25, "happy": 0.75, "contempt": 0.0}}
    ax = plots.recall_heatmap(runs)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["angry", "happy", "contempt"]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["50%", "100%", "25%", "75%", "0%"]  # a has no contempt: no annotation there
    with pytest.raises(ValueError, match="fractions"):
        plots.recall_heatmap({"a": {"happy": 75}})


def test_accuracy_vs_cost_places_each_method():
    ax = plots.accuracy_vs_cost({"ran": (4e8, 84.4), "deep_emotion": (1e7, 58.0)})
    offsets = {c.get_gid(): tuple(c.get_offsets()[0]) for c in ax.collections}
    assert offsets == {"point_ran": (4e8, 84.4), "point_deep_emotion": (1e7, 58.0)}
    assert ax.get_xscale() == "log" and {t.get_text() for t in ax.texts} == {"ran", "deep_emotion"}
    with pytest.raises(ValueError, match="at least one"):
        plots.accuracy_vs_cost({})
