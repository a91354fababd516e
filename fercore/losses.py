"""Losses, one per way of training on FERPlus's crowd votes (Barsoum et al., ICMI 2016, section 3).

Every FERPlus label mode gives the Trainer targets of one shape (fercore.data.ferplus); the loss
decides what is learnt from them. With ``p = softmax(logits)`` and targets ``t``:

- *majority*: ``t`` is one class index per face; cross-entropy ``-log p_y``.
- *crossentropy*: ``t`` is the trimmed vote distribution; soft cross-entropy ``-sum_k t_k log p_k``.
- *probability*: the same ``t``, but each time a face is seen one hard label ``y ~ t`` is drawn
  and the loss is ``-log p_y`` (the paper's "probabilistic label drawing"). Its expectation over
  the draw is the soft cross-entropy, so evaluation (logits without gradient) reports that, with no noise.
- *multi_target*: ``t`` marks every emotion with at least 30% of the votes; the loss is
  ``-log max_k (t_k p_k)``: a face is right if the model backs any marked emotion.

A hard-label target ``(N,)`` is plain cross-entropy in every mode, so a model trained on soft
targets can be selected on majority-labelled validation faces (``eval_label_mode``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LABEL_LOSSES = ("majority", "crossentropy", "probability", "multi_target")


class LabelModeLoss(nn.Module):
    """The loss of FERPlus label mode ``mode`` (see the module doc); ``weight`` weighs classes as in cross-entropy.

    ``weight`` is not defined for ``multi_target`` (which class of several marked would it weigh?).
    """

    def __init__(self, mode: str = "crossentropy", weight: torch.Tensor | None = None):
        super().__init__()
        if mode not in LABEL_LOSSES:
            raise ValueError(f"unknown label mode {mode!r} for the loss; valid: {', '.join(LABEL_LOSSES)}")
        if mode == "multi_target" and weight is not None:
            raise ValueError("class_weights cannot weigh the multi_target loss -log max_k(t_k p_k); drop class_weights")
        self.mode = mode
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 1:
            return F.cross_entropy(logits, targets, weight=self.weight)
        if self.mode == "multi_target":
            # log max_k(t_k p_k) = max_k(log t_k + log p_k); log 0 = -inf leaves the unmarked out, exactly.
            return -(targets.log() + logits.log_softmax(1)).amax(1).mean()
        if self.mode == "probability" and logits.requires_grad:  # training; evaluation takes the expectation
            drawn = torch.multinomial(targets.float(), 1).squeeze(1)
            return F.cross_entropy(logits, drawn, weight=self.weight)
        return F.cross_entropy(logits, targets, weight=self.weight)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def loss_for(label_mode: str | None, weight: torch.Tensor | None = None) -> nn.Module:
    """The training loss for a dataset's ``label_mode`` (None: a dataset of hard labels)."""
    if label_mode in (None, "majority", "crossentropy"):
        return nn.CrossEntropyLoss(weight=weight)  # takes class indices and distributions alike
    return LabelModeLoss(label_mode, weight)
