"""Heads: A-Softmax's psi, its loss against cross-entropy and a hand value, the lambda schedule, a 2-D toy."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fercore.losses import a_softmax_logits, a_softmax_loss, psi
from fercore.models.heads import ASoftmaxHead, LinearHead, build_head, fit_embedding

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_is_continuous_and_decreasing_on_0_to_pi(m):
    theta = torch.linspace(0, math.pi, 4001, dtype=torch.float64)
    p = psi(theta.cos(), m)
    assert p[0].item() == pytest.approx(1) and p[-1].item() == pytest.approx(1 - 2 * m)
    assert (p.diff() <= 1e-12).all()
    for k in range(m):  # inside segment k it is the definition, (-1)^k cos(m theta) - 2k
        inside = torch.tensor((k + 0.5) * math.pi / m, dtype=torch.float64)
        assert psi(inside.cos(), m).item() == pytest.approx((-1) ** k * math.cos(m * inside.item()) - 2 * k)
    for k in range(1, m):  # at each boundary k pi/m both sides meet at 1 - 2k
        b = k * math.pi / m
        left, right = psi(torch.tensor([b - 1e-9, b + 1e-9], dtype=torch.float64).cos(), m)
        assert left.item() == pytest.approx(1 - 2 * k, abs=1e-6) == right.item()


def test_psi_has_finite_gradients_at_the_ends():
    c = torch.tensor([1.0, -1.0, 0.3], requires_grad=True)
    psi(c, 4).sum().backward()
    assert torch.isfinite(c.grad).all()  # T_4(c) = 8c^4 - 8c^2 + 1: no acos in the gradient


def test_a_softmax_logits_by_hand():
    # ||x|| = 2, theta_y = pi/6, the other class at pi/2; m = 4: psi(pi/6) = cos(2 pi/3) = -0.5.
    cos, norm, y = torch.tensor([[math.cos(math.pi / 6), 0.0]]), torch.tensor([[2.0]]), torch.tensor([0])
    assert torch.allclose(a_softmax_logits(cos, norm, y, m=4, lam=0.0), torch.tensor([[-1.0, 0.0]]))
    assert a_softmax_loss(cos, norm, y, m=4, lam=0.0).item() == pytest.approx(math.log(1 + math.e))
    blended = 2 * (1 * math.cos(math.pi / 6) - 0.5) / (1 + 1)  # lam = 1: the mean of cos and psi
    assert a_softmax_logits(cos, norm, y, m=4, lam=1.0)[0, 0].item() == pytest.approx(blended)


def test_m1_or_the_plain_blend_is_cross_entropy_on_normalised_weight_logits():
    torch.manual_seed(0)
    x, y = torch.randn(16, 8), torch.randint(0, 5, (16,))
    head = ASoftmaxHead(8, 5, m=1).train()
    plain = x.norm(dim=1, keepdim=True) * F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T
    expected = F.cross_entropy(plain, y)
    assert torch.allclose(F.cross_entropy(head(x, y), y), expected)  # m = 1: psi = cos, whatever lambda
    cos, norm = head.cosine(x)
    assert torch.allclose(a_softmax_loss(cos, norm, y, m=4, lam=1e9), expected)  # lambda -> inf: plain softmax
    assert a_softmax_loss(cos, norm, y, m=4, lam=0.0) > expected + 1  # the margin makes it harder


def test_without_targets_or_in_eval_the_head_gives_plain_logits_and_does_not_count():
    head, x, y = ASoftmaxHead(8, 3), torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    cos, norm = head.cosine(x)
    assert torch.allclose(head(x), norm * cos) and torch.allclose(head.eval()(x, y), norm * cos)
    assert head.iteration.item() == 0
    assert [name for name, _ in head.named_parameters()] == ["weight"]  # no bias


def test_lambda_decays_with_iterations_and_is_restored_from_a_state_dict():
    head, x, y = ASoftmaxHead(8, 3).train(), torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    assert head.lam.item() == 1000  # SphereFace's base
    for _ in range(10):
        head(x, y)
    assert head.iteration.item() == 10 and head.lam.item() == pytest.approx(1000 / (1 + 0.12 * 10))
    restored = ASoftmaxHead(8, 3)
    restored.load_state_dict(head.state_dict())
    assert restored.iteration.item() == 10 and restored.lam.item() == head.lam.item()
    head.iteration.fill_(10**6)
    assert head.lam.item() == 5.0  # lambda_min
    assert ASoftmaxHead(8, 3, base=100, gamma=1.0, power=2.0, lambda_min=0.0).lam.item() == 100


def test_bad_head_arguments_are_one_line_value_errors():
    with pytest.raises(ValueError, match="m \\(the angular margin\\) must be an integer >= 1, got 2.5"):
        ASoftmaxHead(8, 3, m=2.5)
    with pytest.raises(ValueError, match="unknown head 'arcface'; valid: linear, asoftmax"):
        build_head("arcface", 8, 3)
    head = ASoftmaxHead(8, 3).train()
    with pytest.raises(ValueError, match="needs class-index targets"):
        head(torch.randn(2, 8), torch.full((2, 3), 1 / 3))
    assert isinstance(build_head("linear", 8, 3), nn.Linear)


def _toy_run(head: nn.Module, seed: int, k: int = 6, steps: int = 300) -> tuple[float, float]:
    """Six 2-D blobs on a circle through a tiny MLP with a 2-D feature layer, then ``head``.

    Returns (degrees) the smallest angle between class centres of the features and the smallest
    angle between two features of different classes.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(100 * k) % k
    angles = torch.arange(k) * 2 * math.pi / k
    x = 3 * torch.stack([angles.cos(), angles.sin()], 1)[y] + 0.4 * torch.randn(len(y), 2, generator=g)
    body = fit_embedding(x, y, head, steps=steps, seed=seed)
    assert not body.training and not head.training
    with torch.no_grad():
        f = F.normalize(body(x), dim=1)
        centres = F.normalize(torch.stack([f[y == c].mean(0) for c in range(k)]), dim=1)
        between = torch.acos((centres @ centres.T).clamp(-1, 1)) + 10 * torch.eye(k)
        gap = torch.acos((f @ f.T).clamp(-1, 1))[y[:, None] != y[None]]
        assert (head.eval()(body(x)).argmax(1) == y).float().mean() > 0.95  # both learn the toy
    return math.degrees(between.min().item()), math.degrees(gap.min().item())


def test_a_softmax_separates_classes_by_wider_angles_than_softmax_on_a_2d_toy():
    for seed in range(3):
        soft = _toy_run(LinearHead(2, 6), seed)
        # lambda annealed fast (gamma 1) so a few hundred steps reach the margin: 1000 / 301 = 3.3 at the end.
        margin = _toy_run(ASoftmaxHead(2, 6, m=4, gamma=1.0, lambda_min=0.0), seed)
        assert margin[0] > soft[0] and margin[1] > soft[1], (seed, soft, margin)
