"""Classification metrics: accuracy, macro-F1, per-class recall, confusion matrix.

Plain torch, so that the same code runs on the training device and inside the Trainer's
distributed evaluation, where each process counts a confusion matrix over its share of the
data and the matrices are summed before any metric is derived from them.

Conventions (those of scikit-learn's ``zero_division=0``):
- ``per_class_recall[c]`` is ``None`` when class ``c`` never occurs in ``y_true`` (recall is
  undefined there; ``None`` rather than ``nan`` keeps the result JSON-friendly).
- Precision of a class that is never predicted is 0, and so is F1 when precision and recall
  are both 0.
- ``macro_f1`` averages F1 over the classes that occur in ``y_true`` or ``y_pred``, as
  ``sklearn.metrics.f1_score(average="macro")`` does: a class absent from both neither helps
  nor hurts.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _as_labels(values, name: str) -> torch.Tensor:
    """Class indices ``(N,)``; scores, probabilities or votes ``(N, K)`` become their arg-max."""
    t = values if torch.is_tensor(values) else torch.as_tensor(np.asarray(values))
    if t.ndim == 2:
        t = t.argmax(1)
    if t.ndim != 1:
        raise ValueError(f"{name} must be class indices (N,) or scores (N, K), got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise ValueError(f"{name} holds non-integer values; expected class indices")
    return t.long()


def confusion_matrix(y_true, y_pred, num_classes: int) -> torch.Tensor:
    """``(K, K)`` long counts: row = true class, column = predicted class."""
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred").to(t.device)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}")
    for name, v in (("y_true", t), ("y_pred", p)):
        bad = (v < 0) | (v >= num_classes)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"{name}[{i}] = {int(v[i])} is outside 0..{num_classes - 1}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes)


def metrics_from_confusion(confusion, class_names: Sequence[str] | None = None) -> dict:
    """Accuracy, macro-F1 and per-class recall derived from a confusion matrix (see module doc)."""
    cm = torch.as_tensor(confusion).double().cpu()
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    n = int(cm.sum())
    if n == 0:
        raise ValueError("no samples: cannot compute metrics of an empty set")
    tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    recall = tp / support.clamp(min=1)
    precision = tp / predicted.clamp(min=1)
    f1 = torch.where(tp > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros(k, dtype=cm.dtype))
    present = (support > 0) | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()),
        "per_class_recall": {c: (float(r) if s > 0 else None) for c, r, s in zip(names, recall, support)},
        "confusion": cm.long().tolist(),
        "n": n,
    }


def classification_metrics(y_true, y_pred, num_classes: int, class_names: Sequence[str] | None = None) -> dict:
    """Metrics of predicted against true labels.

    ``y_true`` and ``y_pred`` are class indices ``(N,)`` (tensor, array or list); a 2-D
    ``(N, K)`` input (logits, probabilities, FERPlus votes) is reduced to its arg-max.
    Returns ``accuracy``, ``macro_f1``, ``per_class_recall`` (name -> recall or ``None``),
    ``confusion`` (list of lists, rows = true class) and ``n``.
    """
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, num_classes), class_names)
