"""Comparing the course's models (notebook 06): what each costs, how it fares on another dataset, an ensemble.

- ``model_cost``: parameters, FLOPs per face (``torch.utils.flop_counter``, which counts the matrix
  products and convolutions, two FLOPs per multiply-add; RAN's ``roi_align`` and elementwise work are
  not counted) and CPU latency per face.
- ``cross_dataset``: a model scored on another dataset without fine-tuning. Every loader maps its labels
  into the canonical order (``fercore.labels``), so class ``k`` means the same emotion everywhere. A face
  whose class the model does not have (contempt, for a 7-class model) is left out and counted; the model
  answers over all its own classes, so a "neutral" answer on CK+48, which has no neutral face, is wrong.
- ``greedy_ensemble``: Caruana et al.'s forward selection (ICML 2004) of members and weights on validation
  probabilities only; ``ensemble_proba`` applies the weights to any split's probabilities.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .faces.regions import model_regions
from .labels import classes_for
from .metrics import classification_metrics
from .train import Trainer


def model_cost(model: nn.Module, repeats: int = 20, warmup: int = 3) -> dict:
    """``parameters``, ``flops`` per face and ``latency_ms`` per face (batch 1, CPU, median of ``repeats``)."""
    x = torch.zeros(1, *model.default_cfg["input_size"])
    model = model.eval().cpu()
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(x)
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return {"parameters": sum(p.numel() for p in model.parameters()), "flops": int(counter.get_total_flops()),
            "latency_ms": 1000 * statistics.median(times), "threads": torch.get_num_threads()}


def cross_dataset(model: nn.Module, dataset, device="cpu", tta=None) -> dict:
    """Accuracy, macro-F1, per-class recall and confusion of ``model`` on ``dataset`` (canonical labels, hard
    targets), over the faces whose class the model has; ``n_left_out`` counts the others."""
    k = model.default_cfg["num_classes"]
    dataset = model_regions(dataset, model.default_cfg, progress=False)  # Prior Attention's blocks, RAN's landmark crops
    targets = dataset.labels()
    keep = targets < k
    probs = Trainer(model, device=device, progress=False).predict_proba(dataset.images[keep], tta=tta)
    result = classification_metrics(targets[keep], probs.argmax(1), k, classes_for(k))
    left = sorted({classes_for(dataset.num_classes)[int(t)] for t in targets[~keep]})
    return {**result, "n": int(keep.sum()), "n_left_out": int((~keep).sum()), "left_out_classes": left}


def greedy_ensemble(val_probs: dict[str, torch.Tensor], targets: torch.Tensor, rounds: int = 20) -> dict[str, int]:
    """Members and integer weights chosen on validation: start from the best single model, then add (with
    replacement) whichever member most raises the accuracy of the weighted mean of probabilities; stop
    when no addition raises it or after ``rounds``. Ties go to the first name in sorted order."""
    if not val_probs:
        raise ValueError("greedy_ensemble needs at least one member's validation probabilities")
    names = sorted(val_probs)
    shapes = {tuple(val_probs[n].shape) for n in names}
    if len(shapes) != 1 or len(targets) != next(iter(shapes))[0]:
        raise ValueError(f"every member needs probabilities (N, C) for the same {len(targets)} faces, got {sorted(shapes)}")
    accuracy = lambda p: (p.argmax(1) == targets).float().mean().item()  # noqa: E731
    weights = {max(names, key=lambda n: (accuracy(val_probs[n]), -names.index(n))): 1}
    total = sum(val_probs[n] * w for n, w in weights.items())
    best = accuracy(total)
    for _ in range(rounds):
        scores = {n: accuracy(total + val_probs[n]) for n in names}
        pick = max(names, key=lambda n: (scores[n], -names.index(n)))
        if scores[pick] <= best:
            break
        weights[pick] = weights.get(pick, 0) + 1
        total, best = total + val_probs[pick], scores[pick]
    return weights


def ensemble_proba(probs: dict[str, torch.Tensor], weights: dict[str, int]) -> torch.Tensor:
    """The weighted mean of the members' probabilities (members absent from ``weights`` weigh 0)."""
    missing = [n for n in weights if n not in probs]
    if missing:
        raise ValueError(f"no probabilities for ensemble member(s) {', '.join(missing)}")
    return sum(probs[n] * w for n, w in weights.items()) / sum(weights.values())
