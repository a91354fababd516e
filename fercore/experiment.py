"""One experiment = one model's recipe at one scale on one dataset, under the dataset's protocol.

``run_experiment`` is what ``python -m fercore train`` and the notebooks both call, so a
number in a notebook is reproduced by the command printed beside it.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from . import __version__
from .data import FERDataset, load_dataset
from .models import create_model, get_model_info
from .train import Trainer, load_model, seed_everything


def resolve_dataset(dataset: str, scale: str, real: str = "fer2013") -> str:
    """``"auto"`` means the offline synthetic faces at smoke scale and the real dataset above it."""
    if dataset != "auto":
        return dataset
    return "synthetic" if scale == "smoke" else real


def seeded_subset(dataset: FERDataset, n: int | None, seed: int) -> FERDataset:
    """A random ``n``-image subset, the same for a seed (the whole set when ``n`` is None)."""
    if n is None or n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    return dataset.subset(torch.randperm(len(dataset), generator=g)[:n].sort().values)


def load_optional_split(name: str, root, split: str) -> tuple[FERDataset | None, str | None]:
    """The split, or None with the reason (FER2013's image folders often lack PrivateTest)."""
    try:
        return load_dataset(name, root, split), None
    except (FileNotFoundError, ValueError) as err:
        return None, str(err)


def command_line(model: str, dataset: str, data_root, scale: str, epochs=None, seed: int = 0, out="runs/run") -> str:
    cmd = f"python -m fercore train --model {model} --dataset {dataset}"
    if data_root is not None:
        cmd += f" --data-root {data_root}"
    cmd += f" --scale {scale}" + (f" --epochs {epochs}" if epochs else "") + f" --seed {seed} --out {out}"
    return cmd


def run_experiment(model: str, dataset: str, data_root=None, *, scale: str = "smoke", epochs: int | None = None,
                   batch_size: int | None = None, device: str = "auto", seed: int = 0, out="runs/run",
                   resume: bool = False, overwrite: bool = False, progress: bool = True, callbacks=()) -> dict:
    """Train ``model`` with its ``scale`` recipe, select on val, test once; write and return ``metrics.json``.

    An ``out`` folder that already holds a run is continued with ``resume=True`` or replaced
    with ``overwrite=True``; otherwise it is left alone and an error says so.
    """
    out = Path(out)
    if (out / "last.pt").exists() and not (resume or overwrite):
        raise FileExistsError(f"{out} already holds a run (last.pt); pass --resume to continue it "
                              "or --overwrite to replace it, or choose another --out")
    recipe = get_model_info(model).recipes[scale].with_overrides(epochs=epochs, batch_size=batch_size)
    seed_everything(seed)
    train = seeded_subset(load_dataset(dataset, data_root, "train"), recipe.train_subset, seed)
    val = seeded_subset(load_dataset(dataset, data_root, "val"), recipe.val_subset, seed)
    test, test_note = load_optional_split(dataset, data_root, "test")

    net = create_model(model, num_classes=train.num_classes, in_chans=train.images.shape[1])
    config = {"dataset": dataset, "scale": scale, "seed": seed, "recipe": recipe.to_dict(), "classes": train.classes}
    trainer = Trainer.from_recipe(net, recipe, device=device, out_dir=out, seed=seed, config=config,
                                  progress=progress, callbacks=callbacks)
    start = time.perf_counter()
    history = trainer.fit(train, val, epochs=recipe.epochs, resume=resume)
    seconds = time.perf_counter() - start

    # Report with the checkpoint chosen on validation; the test split is evaluated once, here.
    evaluator = Trainer(load_model(out / "best.pt", device=trainer.device), device=trainer.device, progress=False)
    val_metrics = evaluator.evaluate(val)
    test_metrics = evaluator.evaluate(test) if test is not None else None
    train_seconds = sum(r["seconds"] for r in history)
    metrics = {
        "model": model, "dataset": dataset, "scale": scale, "seed": seed,
        "command": command_line(model, dataset, data_root, scale, epochs, seed, out),
        "protocol": {
            "description": train.protocol,
            "train": f"split 'train' ({len(train)} images)",
            "selection": f"best {trainer.monitor} on split 'val' ({len(val)} images)",
            "report": (f"split 'test' ({len(test)} images), evaluated once with the best-on-val checkpoint"
                       if test is not None else f"no test split: {test_note}"),
        },
        "epochs_run": len(history), "best_epoch": trainer.best_epoch, "stopped_early": trainer.stopped_early,
        "val": val_metrics, "test": test_metrics,
        "seconds": round(seconds, 2),
        "images_per_second": round(len(train) * len(history) / train_seconds, 1) if train_seconds else None,
        "n_train": len(train), "n_val": len(val), "n_test": len(test) if test is not None else 0,
        "recipe": recipe.to_dict(), "device": str(trainer.device),
        "data_root": str(data_root) if data_root is not None else None,
        "environment": {"fercore": __version__, "torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics
