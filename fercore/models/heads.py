"""Classifier heads: pooled features ``(N, D)`` -> logits ``(N, K)``.

A head's ``forward(features, targets=None)`` takes the labels too, because a margin head must
know the true class to bend its logit. ``takes_targets`` says whether a head uses them; a model
with such a head says so with its own ``takes_targets``, and the Trainer then calls
``model(x, y)`` in training (``fercore.train.Trainer._train_epoch``). Without targets, and in
eval mode, every head returns plain logits, so ``evaluate``, ``predict`` and ten-crop TTA need
nothing new.

- ``linear``: ``nn.Linear`` with a bias, the usual softmax classifier.
- ``asoftmax``: A-Softmax of SphereFace (Liu et al., "SphereFace: Deep Hypersphere Embedding
  for Face Recognition", CVPR 2017). The class weights are L2-normalised and there is no bias,
  so logit ``j`` is ``||x|| cos(theta_j)``: classes differ by angle only. In training the target
  class's logit becomes ``||x|| psi(theta_y)`` with ``psi(theta) ~ cos(m theta)``, so a face is
  right only if its angle to its own class is ``m`` times smaller than to any other
  (``fercore.losses.a_softmax_logits``, which also has the formula). Cross-entropy of these
  logits is the A-Softmax loss, as in SphereFace's reference ``AngleLoss``. A run's ``train_loss``
  and ``train_accuracy`` are therefore those of the margin logits, lower in accuracy than the
  plain logits that validation scores.

  Trained from scratch with the full margin the network does not converge, so SphereFace blends
  it with the plain logit, ``f_y = (lambda ||x|| cos(theta_y) + ||x|| psi(theta_y)) / (1 + lambda)``,
  and anneals ``lambda = max(lambda_min, base * (1 + gamma * it) ** -power)``. The defaults are
  the reference Caffe model's (``sphereface_model.prototxt``: base 1000, gamma 0.12, power 1,
  lambda_min 5): lambda reaches 5 after 1,658 iterations (about 3.7 FER2013 epochs at batch 64)
  and stays there. ``it`` counts training forward passes with targets; it is a buffer, so it is
  saved in every checkpoint and a resumed run continues the schedule instead of restarting it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import a_softmax_logits


class LinearHead(nn.Linear):
    """``nn.Linear`` that accepts (and ignores) the targets, so every head is called the same way."""

    takes_targets = False

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class ASoftmaxHead(nn.Module):
    """A-Softmax (SphereFace): normalised weights, no bias, angular margin ``m``, annealed ``lambda``."""

    takes_targets = True

    def __init__(self, in_features: int, num_classes: int, m: int = 4, base: float = 1000.0, gamma: float = 0.12,
                 power: float = 1.0, lambda_min: float = 5.0):
        super().__init__()
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m (the angular margin) must be an integer >= 1, got {m!r}")
        if base < 0 or lambda_min < 0:
            raise ValueError(f"base and lambda_min must be >= 0 (lambda weighs the plain logit), got {base}, {lambda_min}")
        self.m, self.base, self.gamma, self.power, self.lambda_min = m, float(base), float(gamma), float(power), float(lambda_min)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)  # as SphereFace's Caffe layer; only the direction matters
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @property
    def lam(self) -> torch.Tensor:
        """The current lambda: a tensor on the head's device, so reading it costs a GPU no host sync."""
        it = self.iteration.float()
        return (self.base * (1 + self.gamma * it) ** -self.power).clamp(min=self.lambda_min)

    def cosine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos(theta)`` ``(N, K)`` between each feature and each class weight, and ``||x||`` ``(N, 1)``."""
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1)).clamp(-1, 1), x.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        # float32 even under autocast: theta's segment k = floor(m theta / pi) is unreliable in bf16.
        with torch.autocast(x.device.type, enabled=False):
            cos, norm = self.cosine(x.float())
            if targets is None or not self.training:
                return norm * cos
            if targets.ndim != 1:
                raise ValueError(f"the A-Softmax head needs class-index targets (N,), got shape {tuple(targets.shape)}; "
                                 "soft labels (FERPlus votes) have no single class to put the margin on")
            lam = self.lam
            self.iteration += 1
            return a_softmax_logits(cos, norm, targets, self.m, lam)

    def extra_repr(self) -> str:
        return (f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, m={self.m}, "
                f"lambda=max({self.lambda_min:g}, {self.base:g} * (1 + {self.gamma:g} it) ** -{self.power:g})")


def fit_embedding(features: torch.Tensor, labels: torch.Tensor, head: nn.Module, steps: int = 300, lr: float = 1e-2,
                  hidden: int = 32, seed: int = 0) -> nn.Module:
    """Train a small MLP from ``features`` ``(N, D)`` to the head's input size, with ``head``, on cross-entropy.

    The A-Softmax lesson of notebook 04 (and ``tests/test_heads.py``'s toy): with a 2-D feature
    layer the features can be drawn on the circle, and two runs that differ only in ``head``
    (``LinearHead(2, K)`` or ``ASoftmaxHead(2, K, ...)``) show what the margin does. Full-batch Adam
    on fixed features (a toy's points, or a trained backbone's pooled features) takes seconds.
    Returns the MLP; ``head`` is trained in place; both are left in eval mode.
    """
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(features.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, head.weight.shape[1]))
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=lr)
    body.train(), head.train()
    for _ in range(steps):
        loss = F.cross_entropy(head(body(features), labels), labels)  # the head bends the target's logit
        opt.zero_grad()
        loss.backward()
        opt.step()
    body.eval(), head.eval()
    return body


HEADS = {"linear": LinearHead, "asoftmax": ASoftmaxHead}


def build_head(name: str, in_features: int, num_classes: int, **kw) -> nn.Module:
    """Head ``name`` (``linear`` or ``asoftmax``); ``kw`` go to its class (``m`` for A-Softmax)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")
    return HEADS[name](in_features, num_classes, **kw)
