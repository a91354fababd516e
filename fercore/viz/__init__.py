"""Visualization: plots for data, landmarks, training and evaluation (headless-safe)."""
from .plots import (
    LANDMARK_GROUPS,
    LiveCurve,
    class_distribution,
    confusion_matrix,
    draw_landmarks,
    learning_curves,
    per_class_recall,
    sample_grid,
    show_landmarks,
)

__all__ = [
    "LANDMARK_GROUPS", "LiveCurve", "class_distribution", "confusion_matrix", "draw_landmarks",
    "learning_curves", "per_class_recall", "sample_grid", "show_landmarks",
]
