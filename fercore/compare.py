"""Comparing the course's models (notebook 06): what each costs, how it fares on another dataset, an ensemble.

- ``model_cost``: parameters, FLOPs per face (``torch.utils.flop_counter``, which counts the matrix
  products and convolutions, two FLOPs per multiply-add; RAN's ``roi_align`` and elementwise work are
  not counted) and CPU latency per face.
- ``cross_dataset``: a model scored on another dataset without fine-tuning. Every loader maps its labels
  into the canonical order (``fercore.labels``), so class ``k`` means the same emotion everywhere. A face
  whose class the model does not have (contempt, for a 7-class model) is left out and counted; the model
  answers over all its own classes, so a "neutral" answer on CK+48, which has no neutral face, is wrong.
- ``greedy_ensemble``: Caruana et al.'s forward selection (ICML 2004) of members and weights on validation
  probabilities only; ``ensemble_proba`` applies the weights to any split's probabilities;
  ``ensemble_experiment`` does both for a set of checkpoints and reports on faces the choice never saw.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .data import load_dataset
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


def recipe_cost(name: str, scale: str = "standard", repeats: int = 20) -> dict:
    """``model_cost`` of model ``name`` built as its ``scale`` recipe builds it (the width and crop size the
    stored runs used), with those ``model_args``."""
    from .models import create_model, get_model_info

    model_args = get_model_info(name).recipe(scale).model_args
    return {"model_args": model_args, **model_cost(create_model(name, **model_args), repeats=repeats)}


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


def shared_confusions(confusions: dict[str, tuple], top: int = 6) -> list[dict]:
    """The mistakes every method makes: for each (true, predicted) pair of classes that all methods have, the
    share of the true class's faces given the predicted class, by method; the ``top`` pairs with the largest
    smallest share (a pair that every method confuses ranks above one that a single method confuses a lot).
    ``confusions``: method -> (confusion matrix, rows = true class, class names)."""
    rates = {}
    for name, (matrix, classes) in confusions.items():
        m = torch.as_tensor(matrix, dtype=torch.float64)
        share = m / m.sum(1, keepdim=True).clamp(min=1)
        rates[name] = {(t, p): share[i, j].item() for i, t in enumerate(classes) for j, p in enumerate(classes) if i != j}
    common = set.intersection(*(set(r) for r in rates.values())) if rates else set()
    rows = [{"true": t, "predicted": p, **{f"{n} %": round(100 * rates[n][(t, p)], 1) for n in rates},
             "least %": round(100 * min(r[(t, p)] for r in rates.values()), 1)} for t, p in common]
    return sorted(rows, key=lambda r: (-r["least %"], r["true"], r["predicted"]))[:top]


def _member_names(checkpoints) -> dict[str, str]:
    """A name per checkpoint: its model's name, or ``model:folder`` where two checkpoints share a model."""
    from .train import read_checkpoint

    models = {str(p): (read_checkpoint(p).get("config") or {}).get("model_name") or "model" for p in checkpoints}
    if len(models) != len(checkpoints):
        raise ValueError("the same checkpoint is named twice")
    shared = {m for m in models.values() if list(models.values()).count(m) > 1}
    return {(f"{m}:{Path(p).parent.name}" if m in shared else m): p for p, m in models.items()}


def ensemble_experiment(checkpoints, dataset: str, data_root=None, *, device="cpu", tta=None, seed: int = 0) -> dict:
    """The best weighted mean of ``checkpoints``' probabilities against the best single checkpoint, both chosen
    on one set of faces and reported on another: validation and test when the dataset has a test split here,
    else two seeded halves of validation (FER2013 without PrivateTest: select on one half, report the other)."""
    from .experiment import load_optional_split
    from .train import load_model, read_checkpoint

    if len(checkpoints) < 2:
        raise ValueError(f"an ensemble needs at least two checkpoints, got {len(checkpoints)}")
    names = _member_names(checkpoints)
    configs = {n: read_checkpoint(p).get("config") or {} for n, p in names.items()}
    data_args = next(iter(configs.values())).get("data_args") or {}
    val = load_dataset(dataset, data_root, "val", **data_args)
    test, why = load_optional_split(dataset, data_root, "test", **data_args)
    if test is not None and len(test):
        select, report = val, test
        protocol = f"members and weights chosen on {dataset} val ({len(val)} faces), reported on its test split ({len(test)})"
    else:
        order = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed)).numpy()
        half = len(order) // 2
        select, report = val.subset(order[:half]), val.subset(order[half:])
        protocol = (f"{dataset} has no test split here ({why}): members and weights chosen on a seeded half of "
                    f"val ({len(select)} faces, seed {seed}), reported on the other half ({len(report)})")
    probs = {"select": {}, "report": {}}
    for name, path in names.items():
        model = load_model(path, device=device)
        if model.default_cfg["num_classes"] != val.num_classes:
            raise ValueError(f"{path} predicts {model.default_cfg['num_classes']} classes, {dataset} with "
                             f"{data_args} has {val.num_classes}: every member needs the same classes")
        for part, ds in (("select", select), ("report", report)):
            ds = model_regions(ds, model.default_cfg, progress=False)
            probs[part][name] = Trainer(model, device=device, progress=False).predict_proba(ds.images, tta=tta)
    targets = {"select": select.labels(), "report": report.labels()}
    accuracy = lambda p, part: (p.argmax(1) == targets[part]).float().mean().item()  # noqa: E731
    members = {n: {"checkpoint": str(names[n]), "select_accuracy": accuracy(probs["select"][n], "select"),
                   "report_accuracy": accuracy(probs["report"][n], "report")} for n in sorted(names)}
    weights = greedy_ensemble(probs["select"], targets["select"])
    best = max(sorted(members), key=lambda n: members[n]["select_accuracy"])
    k = val.num_classes
    ens = ensemble_proba(probs["report"], weights)
    return {"dataset": dataset, "data_args": data_args, "tta": tta, "protocol": protocol, "members": members,
            "weights": weights, "best_single": best,
            "best_single_report": classification_metrics(targets["report"], probs["report"][best].argmax(1), k, classes_for(k)),
            "ensemble_select_accuracy": accuracy(ensemble_proba(probs["select"], weights), "select"),
            "ensemble_report": classification_metrics(targets["report"], ens.argmax(1), k, classes_for(k))}


def ensemble_table(result: dict) -> list[dict]:
    """``ensemble_experiment``'s output as rows: each member (its weight, accuracy on the faces that chose and on
    the faces that report), the best single member marked, and the ensemble last."""
    rows = [{"method": name + (" (best single)" if name == result["best_single"] else ""),
             "weight": result["weights"].get(name, 0), "select %": round(100 * m["select_accuracy"], 1),
             "report %": round(100 * m["report_accuracy"], 1)} for name, m in result["members"].items()]
    rep = result["ensemble_report"]
    return rows + [{"method": "ensemble", "weight": sum(result["weights"].values()),
                    "select %": round(100 * result["ensemble_select_accuracy"], 1), "report %": round(100 * rep["accuracy"], 1)}]


def cross_dataset_rows(result: dict) -> list[dict]:
    """``python -m fercore cross-dataset``'s output as rows: accuracy and macro-F1 over the faces scored, the
    faces left out, and how often the model answered neutral (wrong on CK+48, which has no neutral face)."""
    rows = []
    for r in result["results"]:
        classes = list(r["per_class_recall"])
        neutral = classes.index("neutral") if "neutral" in classes else None
        answered = sum(row[neutral] for row in r["confusion"]) / max(r["n"], 1) if neutral is not None else None
        rows.append({"model": r["model"], "trained on": r["trained_on"], "accuracy %": round(100 * r["accuracy"], 1),
                     "macro-F1": round(r["macro_f1"], 3), "faces scored": r["n"],
                     "left out": f'{r["n_left_out"]} ({", ".join(r["left_out_classes"])})' if r["n_left_out"] else "0",
                     "answered neutral %": None if answered is None else round(100 * answered, 1)})
    return rows
