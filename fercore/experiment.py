"""One experiment = one model's recipe at one scale on one dataset, under the dataset's protocol.

``run_experiment`` is what ``python -m fercore train`` and the notebooks both call, so a
number in a notebook is reproduced by the command printed beside it.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data import FERDataset, load_dataset
from .faces.regions import model_regions, regions_report
from .models import check_model_args, create_model, get_model_info
from .runs import barrier, is_main_process, run_folder, write_json
from .train import Trainer, init_weights, load_model, read_checkpoint, resolve_device, seed_everything


def resolve_dataset(dataset: str, scale: str, real: str = "fer2013", smoke: str = "synthetic") -> str:
    """``"auto"`` means an offline dataset (``smoke``) at smoke scale and the ``real`` one above it."""
    if dataset != "auto":
        return dataset
    return smoke if scale == "smoke" else real


def seeded_subset(dataset: FERDataset, n: int | None, seed: int) -> FERDataset:
    """A random ``n``-image subset, the same for a seed (the whole set when ``n`` is None)."""
    if n is None or n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    return dataset.subset(torch.randperm(len(dataset), generator=g)[:n].sort().values)


def load_optional_split(name: str, root, split: str, **kw) -> tuple[FERDataset | None, str | None]:
    """The split, or None with the reason (FER2013's image folders often lack PrivateTest)."""
    try:
        return load_dataset(name, root, split, **kw), None
    except (FileNotFoundError, ValueError) as err:
        return None, str(err)


def _kv(flag: str, args: dict | None) -> str:
    return "".join(f" {flag} {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in (args or {}).items())


def command_line(model: str, dataset: str, data_root, scale: str, epochs=None, seed: int = 0, out="runs/run",
                 model_args=None, data_args=None, subcommand: str = "train", folds: int | None = None,
                 recipe_args=None, init=None) -> str:
    """The ``python -m fercore`` command that reproduces a run (printed beside every number)."""
    cmd = f"python -m fercore {subcommand} --model {model} --dataset {dataset}"
    if data_root is not None:
        cmd += f" --data-root {data_root}"
    cmd += f" --scale {scale}" + (f" --epochs {epochs}" if epochs else "") + f" --seed {seed}"
    cmd += f" --init {init}" if init is not None else ""
    cmd += f" --folds {folds}" if folds else ""
    cmd += _kv("--model-arg", model_args) + _kv("--data-arg", data_args) + _kv("--recipe-arg", recipe_args)
    return cmd + f" --out {out}"


def run_experiment(model: str, dataset: str, data_root=None, *, scale: str = "smoke", epochs: int | None = None,
                   batch_size: int | None = None, device: str = "auto", seed: int = 0, out="runs/run",
                   resume: bool = False, overwrite: bool = False, progress: bool = True, callbacks=(),
                   model_args: dict | None = None, data_args: dict | None = None,
                   recipe_args: dict | None = None, init=None) -> dict:
    """Train ``model`` with its ``scale`` recipe, select on val, test once; write and return ``metrics.json``.

    ``model_args`` go to ``create_model`` (e.g. ``{"fc_l2": 0.01}``) over the recipe's, ``data_args`` to every
    ``load_dataset`` call (e.g. ``{"fold": 3}`` for the subject-independent folds of CK+ and JAFFE),
    ``recipe_args`` change the recipe (``Recipe.with_args``: ``{"class_weights": "balanced"}``,
    ``{"augment.rotate": 0}``).

    ``init`` (a checkpoint path) fine-tunes: the model starts from that checkpoint's weights
    (``fercore.train.init_weights``; a class list other than the checkpoint's gets a new head,
    keeping the rows of the shared classes), with a fresh optimizer and schedule from epoch 0,
    unlike ``resume``. The checkpoint must hold the same model; its own model arguments (a ResNet's
    ``width``) replace the recipe's, and ``model_args`` may change only those that leave every
    shape as it is (``dropout``). ``metrics.json`` records the file, its sha256, the run it came
    from and what was loaded (``"init"``).

    An ``out`` folder that already holds a run is continued with ``resume=True`` (with the
    settings it was started with; only ``epochs`` may grow) or replaced with ``overwrite=True``;
    otherwise it is left alone and an error says so. One process at a time may use ``out``.
    """
    out = Path(out)
    model_args, data_args, recipe_args = dict(model_args or {}), dict(data_args or {}), dict(recipe_args or {})
    # Everything a user typed is checked before the folder is touched or any data is read.
    info = get_model_info(model)
    recipe = info.recipe(scale, dataset).with_overrides(epochs=epochs, batch_size=batch_size).with_args(recipe_args)
    typed_data_args = data_args  # the command line shows what was typed; the run records what was used
    data_args = {**recipe.data_args, **data_args}  # the recipe's dataset settings, then the user's
    typed_model_args = model_args
    init_ckpt = read_init(init, model) if init is not None else None
    backbone = init_ckpt is not None and init_ckpt["config"]["model_name"] != model  # RAN from a ResNet's weights
    # The model's arguments: the recipe's, or with --init the checkpoint's own (its width, not the recipe's), then the user's.
    if backbone:
        model_args = {**recipe.model_args, **backbone_model_args(init_ckpt, info), **model_args}
    else:
        model_args = {**(init_model_args(init_ckpt) if init_ckpt else recipe.model_args), **model_args}
    check_model_args(model, model_args)
    if init_ckpt is not None:  # shapes only, with the checkpoint's classes and channels: a wrong width stops here
        try:
            with torch.device("meta"):
                if backbone:
                    create_model(model, **model_args).backbone_tensors(init_ckpt["model"])
                else:
                    probe = create_model(model, **{**init_ckpt["config"].get("model_kwargs", {}), **model_args})
                    init_weights(probe, init_ckpt, init)
        except ValueError as err:
            hint = ("; with --init the model arguments are the checkpoint's: drop the --model-arg that changes a shape"
                    if typed_model_args else "")
            raise ValueError(f"--init {err}{hint}") from None
    resolve_device(device)
    settings = {"model": model, "dataset": dataset, "scale": scale, "seed": seed, "model_args": model_args,
                "data_args": data_args, "recipe": recipe.to_dict(), "init": None if init is None else str(init)}
    with run_folder(out, resume=resume, overwrite=overwrite):
        if resume and (out / "last.pt").exists():
            check_resume_settings(out / "last.pt", settings)
        return _train_and_report(model, dataset, data_root, recipe, out, scale=scale, epochs=epochs, seed=seed,
                                 device=device, resume=resume, progress=progress, callbacks=callbacks,
                                 model_args=model_args, data_args=data_args, recipe_args=recipe_args,
                                 typed_data_args=typed_data_args, typed_model_args=typed_model_args,
                                 recipe_name=info.recipe_name(scale, dataset), init=init, init_ckpt=init_ckpt)


def read_init(path, model: str) -> dict:
    """The checkpoint ``init`` names (``fercore.train.read_checkpoint``), checked to hold a ``model``."""
    try:
        ckpt = read_checkpoint(path)
    except (FileNotFoundError, ValueError) as err:  # one line that names the flag too
        raise type(err)(f"--init: {err}") from None
    name = (ckpt.get("config") or {}).get("model_name")
    if name is None:
        raise ValueError(f"--init {path} does not name its model (config['model_name']): only checkpoints of models "
                         "built by fercore.models.create_model can initialise a run")
    backbones = get_model_info(model).backbones
    if name != model and name not in backbones:
        also = f" or, for its backbone, of {', '.join(backbones)}" if backbones else ""
        raise ValueError(f"--init {path} holds a {name} model, not {model}: fine-tuning starts from weights of the same "
                         f"architecture{also} (pass --model {name}, or train {model} from scratch without --init)")
    return ckpt


def backbone_model_args(ckpt: dict, info) -> dict:
    """The model arguments that make ``info``'s backbone fit a checkpoint of one of its ``backbones``: its width."""
    config = ckpt.get("config") or {}
    width = (config.get("model_kwargs") or {}).get("width", 1.0)
    return {"width": width, **info.backbones[config["model_name"]]}


def init_model_args(ckpt: dict) -> dict:
    """The model arguments a checkpoint was built with, but for those the data decides (classes, channels)."""
    kwargs = (ckpt.get("config") or {}).get("model_kwargs") or {}
    return {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans")}


def init_source(path, ckpt: dict) -> dict:
    """Where ``--init``'s weights came from: the file and its sha256, and the run that wrote it."""
    from .pretrained import sha256_of

    config = ckpt.get("config") or {}
    return {"checkpoint": str(path), "sha256": sha256_of(path), "model": config.get("model_name"),
            "model_args": init_model_args(ckpt), "dataset": config.get("dataset"), "data_args": config.get("data_args"),
            "scale": config.get("scale"), "classes": config.get("classes"), "epoch": ckpt.get("epoch"),
            "best_epoch": ckpt.get("best_epoch"), "monitor": ckpt.get("monitor"), "best_metric": ckpt.get("best_metric")}


def trained_subjects(dataset, config: dict, data_root) -> list[str]:
    """The subjects of ``dataset`` that are also in the training split the checkpoint's ``config`` names."""
    if "subject" not in dataset.meta:
        return []
    train = load_dataset(config["dataset"], data_root, "train", **(config.get("data_args") or {}))
    return sorted(set(dataset.meta["subject"].tolist()) & set(train.meta["subject"].tolist()))


def check_resume_settings(checkpoint, settings: dict) -> None:
    """Refuse to resume ``checkpoint`` with settings other than those it was trained with (``epochs`` may change).

    Resuming restores the model, optimizer and RNG states as they were, so a changed seed or
    learning rate would be recorded in ``metrics.json`` without having been used.
    """
    saved = read_checkpoint(checkpoint).get("config") or {}
    saved = {**saved, "model": saved.get("model_name")}
    now = json.loads(json.dumps(settings))  # tuples -> lists, as the checkpoint stores them
    changed = []
    for key, value in now.items():
        if key == "recipe":
            old = saved.get("recipe") or {}
            changed += [f"recipe {k}: {old[k]!r} -> {v!r}" for k, v in value.items()
                        if k != "epochs" and k in old and old[k] != v]
        elif key == "init":  # the checkpoint stores what --init loaded; its path is the setting
            old = (saved.get("init") or {}).get("checkpoint")
            if old != value:
                changed.append(f"init: {old!r} -> {value!r}")
        elif key in saved and saved[key] != value:
            changed.append(f"{key}: {saved[key]!r} -> {value!r}")
    if changed:
        raise ValueError(f"--resume: {checkpoint} was trained with other settings ({'; '.join(changed)}); resume "
                         "with the settings it was started with (only --epochs may change), or start a new run "
                         "with --overwrite or another --out")


def _train_and_report(model, dataset, data_root, recipe, out: Path, *, scale, epochs, seed, device, resume, progress,
                      callbacks, model_args, data_args, recipe_args, typed_data_args, typed_model_args,
                      recipe_name, init=None, init_ckpt=None) -> dict:
    """``run_experiment`` once its arguments are checked and its run folder is held."""
    seed_everything(seed)
    train = seeded_subset(load_dataset(dataset, data_root, "train", **data_args), recipe.train_subset, seed)
    val = seeded_subset(load_dataset(dataset, data_root, "val", **data_args), recipe.val_subset, seed)
    test, test_note = load_optional_split(dataset, data_root, "test", **data_args)
    # A model that eats face regions (Prior Attention's blocks) gets them in place of the faces.
    cfg = get_model_info(model).default_cfg()
    train, val = (model_regions(d, cfg, progress=progress) for d in (train, val))
    test = model_regions(test, cfg, progress=progress) if test is not None else None

    net = create_model(model, num_classes=train.num_classes, in_chans=train.images.shape[1], **model_args)
    init_record = None
    if init_ckpt is not None and init_ckpt["config"]["model_name"] != model:  # a backbone from another model's run
        loaded = net.load_backbone(init_ckpt["model"])
        init_record = {**init_source(init, init_ckpt), "backbone": True, "loaded": len(loaded), "reinitialised": None}
    elif init_ckpt is not None:  # fine-tuning: the checkpoint's weights, a new head where the classes differ
        try:
            init_record = {**init_source(init, init_ckpt), **init_weights(net, init_ckpt, init, train.classes)}
        except ValueError as err:  # the data's channels differ from the checkpoint's (the rest was checked before)
            raise ValueError(f"--init {err}") from None
        if init_record["dataset"] == dataset and test is not None and "subject" in test.meta:
            # e.g. the model of another CK+ fold: it trained on some of this fold's test subjects
            seen = trained_subjects(test, init_ckpt["config"], data_root)
            init_record["test_subjects_seen"] = seen
            if seen and is_main_process():
                print(f"warning: {len(seen)} test subject(s) of {dataset} ({', '.join(seen[:5])}"
                      f"{', ...' if len(seen) > 5 else ''}) are in the training split of --init {init} (data args "
                      f"{init_record['data_args'] or {}}): the test figure is not subject-independent", file=sys.stderr)
    config = {"dataset": dataset, "scale": scale, "seed": seed, "recipe": recipe.to_dict(), "classes": train.classes,
              "model_args": model_args, "data_args": data_args, "recipe_args": recipe_args, "init": init_record}
    trainer = Trainer.from_recipe(net, recipe, train, device=device, out_dir=out, seed=seed, config=config,
                                  progress=progress, callbacks=callbacks)
    start = time.perf_counter()
    history = trainer.fit(train, val, epochs=recipe.epochs, resume=resume)
    seconds = time.perf_counter() - start

    # Report with the checkpoint chosen on validation; the test split is evaluated once, here.
    barrier()  # under torchrun every rank reads best.pt, which rank 0 wrote
    evaluator = Trainer(load_model(out / "best.pt", device=trainer.device), device=trainer.device, progress=False)
    val_metrics = evaluator.evaluate(val)
    test_metrics = evaluator.evaluate(test) if test is not None else None
    train_seconds = sum(r["seconds"] for r in history)
    metrics = {
        "model": model, "dataset": dataset, "scale": scale, "seed": seed,
        "command": command_line(model, dataset, data_root, scale, epochs, seed, out, typed_model_args,
                                typed_data_args, recipe_args=recipe_args, init=init),
        "model_args": model_args, "data_args": data_args, "recipe_args": recipe_args, "init": init_record,
        "class_weights": trainer.loss.weight.tolist() if getattr(trainer.loss, "weight", None) is not None else None,
        "protocol": {
            "description": train.protocol,
            "train": f"split 'train' ({len(train)} images)",
            "selection": f"best {trainer.monitor} on split 'val' ({len(val)} images)",
            "report": (f"split 'test' ({len(test)} images), evaluated once with the best-on-val checkpoint"
                       if test is not None else f"no test split: {test_note}"),
            **({"init": init_description(init_record)} if init_record else {}),
        },
        "epochs_run": len(history), "best_epoch": trainer.best_epoch, "stopped_early": trainer.stopped_early,
        "val": val_metrics, "test": test_metrics,
        "seconds": round(seconds, 2),
        "images_per_second": round(len(train) * len(history) / train_seconds, 1) if train_seconds else None,
        "n_train": len(train), "n_val": len(val), "n_test": len(test) if test is not None else 0,
        "history": history,  # per-epoch curves, so metrics.json alone can redraw the training curve
        "recipe_name": recipe_name, "recipe": recipe.to_dict(), "device": str(trainer.device),
        "data_root": str(data_root) if data_root is not None else None,
        "environment": {"fercore": __version__, "torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads()},
    }
    regions = regions_report(train=train, val=val, test=test)
    if regions:  # faces cut at the mean shape, per split
        metrics["regions"] = regions
    if is_main_process():
        write_json(out / "metrics.json", metrics)
    return metrics


def init_description(record: dict) -> str:
    """One line for ``metrics.json``'s protocol: which weights a fine-tuned run started from."""
    best = f", {record['monitor']} {record['best_metric']:.4f}" if record.get("best_metric") is not None else ""
    rows = record.get("class_rows")
    head = "every tensor loaded"
    if record.get("backbone"):
        head = f"its {record['loaded']} backbone tensors loaded (head and attention new)"
    elif rows is not None:
        head = (f"{record['loaded']} tensors loaded; head {', '.join(record['reinitialised_tensors'])} re-initialised "
                f"with the rows of {len(rows['kept'])} shared classes kept")
        head += f", new: {', '.join(rows['new'])}" if rows["new"] else ""
    return (f"fine-tuned from {record['checkpoint']} ({record['model']} trained on {record['dataset']}, epoch "
            f"{record['best_epoch']}{best}); {head}")


def cross_validate(model: str, dataset: str, data_root=None, *, folds: int = 10, out="runs/cv", **kw) -> dict:
    """Run ``run_experiment`` on every subject-independent fold; write and return ``out/cv.json``.

    Each fold tests on its own held-out subjects and selects its checkpoint on another fold's
    subjects (see fercore.data.folds), so the mean test accuracy never saw a test subject.
    ``kw`` goes to ``run_experiment`` (scale, epochs, seed, model_args, data_args, init, ...): with
    ``init`` every fold starts from that checkpoint's weights.
    """
    out = Path(out)
    if folds < 1:
        raise ValueError(f"folds must be a positive integer, got {folds}")
    data_args = dict(kw.pop("data_args", None) or {})
    # The folds' own folders are checked and locked by run_experiment; this holds cv.json's.
    with run_folder(out, resume=kw.get("resume", False), overwrite=kw.get("overwrite", False), resume_from=None):
        runs = [run_experiment(model, dataset, data_root, out=out / f"fold_{k}",
                               data_args={**data_args, "fold": k, "folds": folds}, **kw) for k in range(folds)]
        accuracies = [r["test"]["accuracy"] for r in runs]
        summary = {
            "model": model, "dataset": dataset, "folds": folds, "scale": kw.get("scale", "smoke"),
            "protocol": f"{folds}-fold cross-validation: " + runs[0]["protocol"]["description"],
            "test_accuracy_mean": float(np.mean(accuracies)), "test_accuracy_std": float(np.std(accuracies)),
            "test_macro_f1_mean": float(np.mean([r["test"]["macro_f1"] for r in runs])),
            "per_fold": [{"fold": k, "test_accuracy": r["test"]["accuracy"], "n_test": r["n_test"],
                          "best_epoch": r["best_epoch"], "val_accuracy": r["val"]["accuracy"]} for k, r in enumerate(runs)],
            "command": command_line(model, dataset, data_root, kw.get("scale", "smoke"), kw.get("epochs"),
                                    kw.get("seed", 0), out, kw.get("model_args"), data_args, subcommand="crossval",
                                    folds=folds, recipe_args=kw.get("recipe_args"), init=kw.get("init")),
            # Every fold starts from the same weights; each fold's metrics.json has the details.
            "init": {k: v for k, v in runs[0]["init"].items() if k != "test_subjects_seen"} if runs[0]["init"] else None,
        }
        if is_main_process():
            write_json(out / "cv.json", summary)
    return summary


def sweep(model: str, dataset: str, data_root=None, *, param: str, values, out="runs/sweep", **kw) -> dict:
    """Train one run per ``values`` of model argument ``param``; choose the value on validation accuracy.

    Every run is a full ``run_experiment`` in ``out/<param>=<value>``; the chosen run *is*
    the final model (nothing is retrained), and only its test figure should be reported.
    Returns ``{"param", "rows" (value, val accuracy, best epoch), "best", "metrics" and "out" (of the chosen run)}``.
    """
    model_args = dict(kw.pop("model_args", None) or {})
    runs = {v: run_experiment(model, dataset, data_root, out=Path(out) / f"{param}={v}",
                              model_args={**model_args, param: v}, **kw) for v in values}
    best = max(runs, key=lambda v: runs[v]["val"]["accuracy"])  # ties: the first value listed
    rows = [{param: v, "val_accuracy": r["val"]["accuracy"], "val_macro_f1": r["val"]["macro_f1"],
             "best_epoch": r["best_epoch"], "chosen": v == best} for v, r in runs.items()]
    return {"param": param, "rows": rows, "best": best, "metrics": runs[best], "out": str(Path(out) / f"{param}={best}")}


def _variant(paper: dict, m: dict) -> str:
    """The paper key's third part (``"cbam_order=parallel"``) that this run's ``model_args`` match, else ""."""
    args = m.get("model_args") or {}
    for key in paper:
        if len(key) == 3 and key[:2] == (m["model"], m["dataset"]):
            name, _, value = key[2].partition("=")
            if name in args and str(args[name]) == value:
                return key[2]
    return ""


def paper_table(paper: dict, runs) -> list[dict]:
    """The closing table of a notebook: the paper's figure beside ours, with command and scale.

    ``paper``: ``{(model, dataset): accuracy %}``, or ``(model, dataset, "ARG=VALUE")`` for a
    variant of one model that the paper reports apart (``"cbam_order=parallel"``: a run whose
    ``model_args`` hold it); ``runs``: ``(metrics, source)`` pairs, each a
    ``metrics.json`` (test accuracy when the run had a test split, else val) or a ``cv.json``
    (mean test accuracy over folds). A run that carries ``tta`` results (``{"ten_crop":
    evaluate's output on the same split}``) fills a column for each. A paper figure with no run
    gets a "not run" row and the command that would produce it.
    """
    rows, ttas = [], sorted({t for m, _ in runs for t in (m.get("tta") or {})})
    for m, source in runs:
        if "test_accuracy_mean" in m:  # a cv.json: mean ± std over the folds' test splits
            leaky = "LEAKY" in m.get("protocol", "")
            split = f'test, mean ± std of {m["folds"]} {"image-level (leaky)" if leaky else "subject"} folds'
            acc, epochs = m["test_accuracy_mean"], "—"
            if "test_accuracy_std" in m:
                acc = f'{100 * m["test_accuracy_mean"]:.1f} ± {100 * m["test_accuracy_std"]:.1f}'
        else:
            split = "test" if m.get("test") else "val"
            acc, epochs = m[split]["accuracy"], f'{m["epochs_run"]} ({m["best_epoch"]})'
        variant = _variant(paper, m)
        key = (m["model"], m["dataset"], variant) if variant else (m["model"], m["dataset"])
        rows.append({"model": m["model"] + (f" ({variant})" if variant else ""), "dataset": m["dataset"],
                     "paper %": paper.get(key, "—"), "ours %": acc if isinstance(acc, str) else round(100 * acc, 1),
                     **{f"{t} %": round(100 * m["tta"][t]["accuracy"], 1) if t in (m.get("tta") or {}) else "—"
                        for t in ttas},
                     "split": split, "scale": m.get("scale", "—"), "epochs (best)": epochs, "source": source,
                     "command": m["command"]})
    done = {(r["model"], r["dataset"]) for r in rows}
    for key, figure in paper.items():
        model, dataset, variant = (*key, "")[:3]
        shown = model + (f" ({variant})" if variant else "")
        if (shown, dataset) not in done:
            verb = "crossval" if dataset in ("ckplus", "jaffe") else "train"  # subject-independent folds
            arg = f" --model-arg {variant}" if variant else ""
            rows.append({"model": shown, "dataset": dataset, "paper %": figure, "ours %": "not run",
                         **{f"{t} %": "—" for t in ttas}, "split": "—", "scale": "—", "epochs (best)": "—",
                         "source": "—", "command": f"python -m fercore {verb} --model {model} --dataset {dataset} "
                                                   f"--data-root DATA --scale standard{arg} --out runs/{model}_{dataset}"})
    return rows


def label_mode_table(paper: dict, runs) -> list[dict]:
    """Barsoum's comparison: one row per FERPlus run, by the label mode it trained on, the paper's figure beside it.

    ``paper``: ``{label_mode: accuracy}`` (e.g. "84.7 ± 0.5"); ``runs``: ``metrics.json`` dicts of
    runs on ``ferplus``. A run's label mode is the one in its effective ``data_args`` (its
    recipe's when not typed); ``scored on`` says which labels the validation faces kept.
    """
    rows = []
    for m in runs:
        if m.get("dataset") != "ferplus":
            raise ValueError(f'label_mode_table compares FERPlus runs; got a {m.get("dataset")!r} run ({m.get("command")})')
        args = m.get("data_args") or {}
        mode = args.get("label_mode", "majority")
        rows.append({"model": m["model"], "label mode": mode, "classes": args.get("classes", 8),
                     "training faces": m.get("n_train", "—"), "epochs (best)": f'{m["epochs_run"]} ({m["best_epoch"]})',
                     "scored on": _scored_on(args, mode, m["val"].get("n", m.get("n_val"))),
                     "val %": round(100 * m["val"]["accuracy"], 1), "val macro-F1": round(m["val"]["macro_f1"], 3),
                     "paper %": paper.get(mode, "—"), "minutes": round(m.get("seconds", 0) / 60), "command": m["command"]})
    return rows


def _scored_on(args: dict, mode: str, n) -> str:
    top = args.get("min_top_probability")
    kept = f", top emotion > {top:.0%} of the votes" if top else ""
    return f'{args.get("eval_label_mode") or mode} labels{kept}, {n:,} faces'


RESULTS = Path(__file__).resolve().parents[1] / "notebooks" / "results"


def _shown(path: Path) -> str:
    # Relative to the repository when inside it: the same name on every machine (and in committed outputs).
    try:
        return str(path.resolve().relative_to(RESULTS.parents[1]))
    except ValueError:
        return str(path)


def reference_runs(pattern: str, folder=RESULTS) -> dict[str, dict]:
    """The stored reference runs matching ``pattern`` in ``folder`` (each a ``metrics.json``), by file name.

    Notebooks keep the runs too long for a smoke run in ``notebooks/results/``; this reads them
    in name order and names the file whose JSON is broken or lacks what a metrics.json (or a
    crossval's cv.json) holds.
    """
    runs = {}
    for path in sorted(Path(folder).glob(pattern)):
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); expected the metrics.json a fercore run wrote") from e
        # a run's metrics.json, or a crossval's cv.json
        needs = ("folds", "per_fold") if "test_accuracy_mean" in m else ("val", "history")
        missing = [k for k in ("model", "dataset", "command", *needs) if k not in m]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}; expected the metrics.json a fercore run wrote")
        runs[_shown(path)] = m
    return runs


def recipe_label(metrics: dict) -> str:
    """How a run changed its recipe, as typed on the command line (``class_weights=balanced``), else "recipe as is"."""
    return ", ".join(f"{k}={v}" for k, v in (metrics.get("recipe_args") or {}).items()) or "recipe as is"
