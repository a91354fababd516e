"""Visualization: plots for data, landmarks, training and evaluation; attention maps; CBAM and A-Softmax; RAN's region weights; widgets (headless-safe)."""
from .plots import (
    LANDMARK_GROUPS,
    LiveCurve,
    block_occlusion,
    block_predictions,
    class_distribution,
    confusion_matrix,
    draw_landmarks,
    learning_curves,
    per_class_recall,
    prior_blocks,
    sample_grid,
    show_landmarks,
)
from .attention import (
    class_average_maps,
    draw_warp,
    gradient_saliency,
    has_stn,
    model_view,
    occlusion_map,
    overlay,
    plot_class_maps,
    plot_saliency,
    plot_stn,
    predict,
    stn_views,
    to_model_input,
)
from .cbam import (
    angular_margins,
    cbam_maps,
    cbam_stages,
    draw_channel_weights,
    grad_cam,
    plot_angular_features,
    plot_cbam,
    plot_psi,
)
from .ran import plot_ran, plot_weights_by_class, ran_weights, region_names, weights_by_class
from .widgets import AttentionExplorer, CBAMExplorer, PriorBlocksExplorer, RANExplorer

__all__ = [
    "LANDMARK_GROUPS", "LiveCurve", "class_distribution", "confusion_matrix", "draw_landmarks",
    "learning_curves", "per_class_recall", "sample_grid", "show_landmarks",
    "prior_blocks", "block_predictions", "block_occlusion", "PriorBlocksExplorer",
    "to_model_input", "model_view", "predict", "has_stn", "stn_views", "draw_warp", "plot_stn", "occlusion_map",
    "gradient_saliency", "class_average_maps", "plot_class_maps", "overlay", "plot_saliency", "AttentionExplorer",
    "cbam_stages", "cbam_maps", "plot_cbam", "draw_channel_weights", "grad_cam", "CBAMExplorer",
    "plot_psi", "angular_margins", "plot_angular_features",
    "ran_weights", "region_names", "plot_ran", "weights_by_class", "plot_weights_by_class", "RANExplorer",
]
