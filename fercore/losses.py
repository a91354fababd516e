"""Losses: one per way of training on FERPlus's crowd votes (Barsoum et al., ICMI 2016, section 3), and A-Softmax.

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

A-Softmax (SphereFace, Liu et al. 2017) is the last part: ``psi`` and ``a_softmax_logits`` give the
margin logits that ``fercore.models.heads.ASoftmaxHead`` returns in training, and their
cross-entropy (``a_softmax_loss``; the Trainer's ``nn.CrossEntropyLoss`` on the head's output) is
the A-Softmax loss. The margin is computed in the head, not here, because it needs the feature
norm and the angles, which logits alone do not carry.
"""
from __future__ import annotations

import math

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


# ---------------------------------------------------------------- A-Softmax (SphereFace)
def psi(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    """SphereFace's ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta`` in ``[k pi/m, (k+1) pi/m]``.

    ``cos(m theta)`` alone rises again past ``pi/m``; the sign flips and the ``-2k`` steps make
    ``psi`` continuous and decreasing on ``[0, pi]``, from 1 to ``1 - 2m``. Takes ``cos(theta)``:
    ``cos(m theta)`` is its Chebyshev polynomial ``T_m`` (as the reference code), whose gradient
    stays finite at ``cos = +-1`` where that of ``acos`` does not; ``k`` is piecewise constant.
    """
    t_prev, t = torch.ones_like(cos_theta), cos_theta
    for _ in range(m - 1):  # T_{n+1}(c) = 2 c T_n(c) - T_{n-1}(c)
        t_prev, t = t, 2 * cos_theta * t - t_prev
    with torch.no_grad():
        k = (m * torch.acos(cos_theta.clamp(-1, 1)) / math.pi).floor().clamp(max=m - 1)
    return (1 - 2 * (k % 2)) * t - 2 * k


def a_softmax_logits(cos_theta: torch.Tensor, norm: torch.Tensor, targets: torch.Tensor, m: int = 4,
                     lam=0.0) -> torch.Tensor:
    """A-Softmax training logits: ``||x|| cos(theta_j)``, the target's blended with its margin logit.

    ``f_y = (lam ||x|| cos(theta_y) + ||x|| psi(theta_y)) / (1 + lam)``: ``lam = 0`` is the full
    margin, a large ``lam`` plain normalised-weight softmax. ``cos_theta`` is ``(N, K)``, ``norm``
    the feature norms ``(N, 1)``, ``targets`` class indices ``(N,)``.
    """
    c = cos_theta.gather(1, targets[:, None])
    target = (lam * c + psi(c, m)) / (1 + lam)
    return norm * cos_theta.scatter(1, targets[:, None], target)


def a_softmax_loss(cos_theta: torch.Tensor, norm: torch.Tensor, targets: torch.Tensor, m: int = 4,
                   lam=0.0) -> torch.Tensor:
    """The A-Softmax loss: cross-entropy of ``a_softmax_logits``."""
    return F.cross_entropy(a_softmax_logits(cos_theta, norm, targets, m, lam), targets)


def region_biased_loss(mu: torch.Tensor, margin: float = 0.1, face_index: int = -1) -> torch.Tensor:
    """RAN's region-biased loss (Wang et al., TIP 2020): ``mean(max(0, margin - (max_i mu_crop_i - mu_face)))``.

    ``mu`` ``(N, K)`` holds each region's self-attention weight, the whole face at ``face_index``
    (the last, as in the authors' code). The loss asks that the most attended crop outweigh the
    whole face by ``margin``, so the network must find at least one region more telling than the
    face; it is zero once it does. The report and the authors' FERPlus code use 0.1, their
    AffectNet code 0.03. ``fercore.models.ran.RAN.penalty`` adds it to the classification loss
    (whatever the label mode), with weight 1 as in the authors' ``train_attention_rank_loss.py``.
    """
    if mu.ndim != 2 or mu.shape[1] < 2:
        raise ValueError(f"expected region weights (N, K) with K >= 2 (crops and the face), got shape {tuple(mu.shape)}")
    face = mu[:, face_index]
    crops = torch.cat([mu[:, :face_index % mu.shape[1]], mu[:, face_index % mu.shape[1] + 1:]], 1)
    return F.relu(margin - (crops.amax(1) - face)).mean()
