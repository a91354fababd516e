"""``python -m fercore``: train, crossval, reproduce, models, evaluate, predict, datasets, labels, notebooks, landmarks, export.

train, crossval, evaluate, datasets, labels and export print JSON; reproduce prints its Markdown table;
predict, models, notebooks and landmarks print one line per result, or JSON with ``--json``. Errors the user can fix (missing data, bad files,
unknown names, a wrong argument, a run folder in use) print one clear line to stderr and exit
with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

EXAMPLES = {
    "train": "example:\n  python -m fercore train --model simple_cnn --dataset synthetic --scale smoke --out runs/smoke\n"
             "  python -m fercore train --model simple_cnn --dataset fer2013 --data-root ~/data --scale standard --out runs/cnn",
    "crossval": "example:\n  python -m fercore crossval --model deep_emotion --dataset jaffe --data-root ~/data --scale standard --out runs/jaffe\n"
                "  python -m fercore crossval --model resnet18_fer --dataset ckplus --data-root ~/data --folds 5 "
                "--init runs/fer/best.pt --epochs 30 --out runs/ck_ft   # fine-tune the FER2013 model",
    "models": "example:\n  python -m fercore models\n  python -m fercore models --json",
    "reproduce": "example:\n  python -m fercore reproduce --scale smoke --out runs/reproduce_smoke\n"
                 "  python -m fercore reproduce --scale standard --data-root ~/data --only ran ran_face_only --out runs/reproduce",
    "cross-dataset": "example:\n  python -m fercore cross-dataset --dataset ckplus --data-root ~/data   # every shipped model on all of CK+48\n"
                     "  python -m fercore cross-dataset --dataset jaffe --data-root ~/data --checkpoint runs/cnn/best.pt --pretrained",
    "ensemble": "example:\n  python -m fercore ensemble runs/a/best.pt runs/b/best.pt runs/c/best.pt --dataset fer2013 --data-root ~/data",
    "evaluate": "example:\n  python -m fercore evaluate --checkpoint runs/cnn/best.pt --dataset fer2013 --data-root ~/data --split test --tta ten_crop\n"
                "  python -m fercore evaluate --checkpoint runs/ran/best.pt --split val --occlude sunglasses",
    "predict": "example:\n  python -m fercore predict photo.jpg group.png --checkpoint runs/cnn/best.pt --out runs/pred --json\n"
               "  python -m fercore predict photo.jpg   # the model shipped with fercore\n"
               "  python -m fercore predict clip.mp4 --out runs/pred   # runs/pred/clip_pred.mp4 and .jsonl\n"
               "  python -m fercore predict --camera 0 > faces.jsonl   # Ctrl-C stops",
    "datasets": "example:\n  python -m fercore datasets --data-root ~/data",
    "labels": "example:\n  python -m fercore labels --dataset ferplus --data-root ~/data --split train > labels.json",
    "notebooks": "example:\n  python -m fercore notebooks --scale smoke --out build/notebooks\n"
                 "  python -m fercore notebooks --only 00 --inplace   # refresh the committed outputs\n"
                 "  python -m fercore notebooks --clean             # after saving a notebook in JupyterLab",
    "landmarks": "example:\n  python -m fercore landmarks --dataset fer2013 --data-root ~/data --split train\n"
                 "  python -m fercore landmarks --dataset synthetic --split val --box detect --json",
    "export": "example:\n  python -m fercore export runs/vgg/best.pt --out fercore/weights/vgg_fer_ferplus.pt",
}


def default_data_root() -> str:
    return os.environ.get("FERCORE_DATA", "data")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=float))


def cmd_train(args) -> int:
    from .experiment import run_experiment

    from .runs import is_main_process

    metrics = run_experiment(args.model, args.dataset, args.data_root, **_run_kwargs(args))
    if is_main_process():  # under torchrun every rank returns the metrics; one prints them
        _print_json(metrics)
    return 0


def cmd_crossval(args) -> int:
    from .experiment import cross_validate

    from .runs import is_main_process

    summary = cross_validate(args.model, args.dataset, args.data_root, folds=args.folds, **_run_kwargs(args))
    if is_main_process():
        _print_json(summary)
    return 0


def _key_values(pairs, flag: str) -> dict:
    """``["fc_l2=0.01", "fold=3"]`` -> ``{"fc_l2": 0.01, "fold": 3}`` (values read as JSON, else kept as text)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run_kwargs(args) -> dict:
    return dict(scale=args.scale, epochs=args.epochs, batch_size=args.batch_size, device=args.device, seed=args.seed,
                out=args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                model_args=_key_values(args.model_arg, "--model-arg"), data_args=_key_values(args.data_arg, "--data-arg"),
                recipe_args=_key_values(args.recipe_arg, "--recipe-arg"), init=args.init)


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    rows = reproduce(args.scale, only=args.only, data_root=args.data_root, out=args.out, device=args.device,
                     seed=args.seed)
    print(Path(args.out, "table.md").read_text(), end="")
    return 0 if any(not r["status"].startswith("not run") for r in rows) else 2


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .experiment import trained_subjects
    from .faces.regions import model_regions, regions_report
    from .train import Trainer, load_model, read_checkpoint, resolve_device

    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device=device)
    config = read_checkpoint(args.checkpoint).get("config") or {}
    name = args.dataset or config.get("dataset")
    if not name:
        raise ValueError(f"{args.checkpoint} does not say which dataset it was trained on; pass --dataset")
    # The checkpoint's own data arguments (its fold, its classes) unless --data-arg says otherwise:
    # fold 3's model evaluated on fold 0's test split would be scored on subjects it trained on.
    trained_args = (config.get("data_args") or {}) if name == config.get("dataset") else {}
    data_args = {**trained_args, **_key_values(args.data_arg, "--data-arg")}
    dataset = load_dataset(name, args.data_root, args.split, **data_args)
    expected = model.default_cfg["num_classes"]
    if dataset.num_classes != expected:
        raise ValueError(f"{args.checkpoint} predicts {expected} classes but {name} {args.split} with "
                         f"data args {data_args} has {dataset.num_classes} (a loader may take --data-arg classes={expected})")
    overlap = trained_subjects(dataset, config, args.data_root) if name == config.get("dataset") else []
    if overlap:
        print(f"warning: {len(overlap)} subject(s) of {name} split {args.split!r} ({', '.join(overlap[:5])}"
              f"{', ...' if len(overlap) > 5 else ''}) are in the checkpoint's training split (data args "
              f"{config.get('data_args') or {}}): these figures are not subject-independent", file=sys.stderr)
    tta = None if args.tta == "none" else args.tta
    occlusion = None
    if args.occlude:  # drawn on the faces before the model's own regions are cut, as a real occluder would be
        from .data.occlusion import occlude_dataset
        kind, _, where = args.occlude.partition(":")
        dataset = occlude_dataset(dataset, kind, where=where or None, seed=args.occlude_seed, progress=False)
        occlusion = {"kind": kind, "where": where or None, "seed": args.occlude_seed, "protocol": dataset.protocol}
    dataset = model_regions(dataset, model.default_cfg, progress=False)  # the same hook as training's
    result = Trainer(model, device=device, progress=False).evaluate(dataset, tta=tta)
    keys = ("accuracy", "macro_f1", "per_class_recall", "confusion", "n")
    _print_json({**{k: result[k] for k in keys}, "loss": result.get("loss"), "dataset": name, "split": args.split,
                 "data_args": data_args, "tta": args.tta, "checkpoint": str(args.checkpoint),
                 "subjects_seen_in_training": overlap, **({"occlusion": occlusion} if occlusion else {}),
                 **({"regions": r} if (r := regions_report(**{args.split: dataset})) else {})})
    return 0


def cmd_cross_dataset(args) -> int:
    from .compare import cross_dataset
    from .data import load_dataset
    from .pretrained import PRETRAINED, load_pretrained, weights_info
    from .train import load_model, read_checkpoint, resolve_device

    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_root, args.split, **_key_values(args.data_arg, "--data-arg"))
    chosen = args.pretrained if args.pretrained is not None else ([] if args.checkpoint else sorted(PRETRAINED))
    results = []
    for name in chosen:  # the shipped weights, trained on FER2013 or FERPlus
        info = weights_info(name) or {}
        model = load_pretrained(name).to(device)
        results.append({"model": name, "weights": info.get("file"), "trained_on": info.get("dataset"),
                        **cross_dataset(model, dataset, device, args.tta)})
    for path in args.checkpoint or ():
        config = read_checkpoint(path).get("config") or {}
        results.append({"model": config.get("model_name"), "weights": str(path), "trained_on": config.get("dataset"),
                        **cross_dataset(load_model(path, device=device), dataset, device, args.tta)})
    _print_json({"dataset": args.dataset, "split": args.split, "n_faces": len(dataset), "classes": list(dataset.classes),
                 "protocol": f"every face of {args.dataset} ({args.split}), scored without fine-tuning" if args.split == "all"
                 else dataset.protocol, "tta": args.tta, "command": args.command_line, "results": results})
    return 0


def cmd_ensemble(args) -> int:
    from .compare import ensemble_experiment
    from .train import resolve_device

    result = ensemble_experiment(args.checkpoints, args.dataset, args.data_root, device=resolve_device(args.device),
                                 tta=None if args.tta == "none" else args.tta, seed=args.seed)
    _print_json({**result, "command": args.command_line})
    return 0


def cmd_predict(args) -> int:
    from .predict import annotate, predict_image
    from .train import load_model, resolve_device
    from .video import is_video, predict_video

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file, not a folder")
    if (args.camera is None) == (not args.images):
        raise ValueError("give image or video files, or --camera N" + (", not both" if args.images else ""))
    if args.checkpoint is None:  # the model shipped with fercore: offline, sha256-checked
        from .pretrained import DEFAULT_MODEL, pretrained_path
        args.checkpoint = pretrained_path(DEFAULT_MODEL)
    model = load_model(args.checkpoint, device=resolve_device(args.device))
    ckpt_classes = torch_classes(args.checkpoint)
    # Every image is predicted before any annotated copy is written, so with --out beside the
    # inputs no input is read after this run wrote something.
    images = [p for p in args.images if not is_video(p)]
    results, failed = [], 0
    for path in images:
        try:
            results.append(predict_image(model, path, ckpt_classes, method=args.detector))
        except (FileNotFoundError, ValueError) as err:  # report this image, go on with the rest
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    if args.out:
        for r in results:
            r["annotated"] = str(annotate(r["image"], r, args.out))
    if args.json and images:
        _print_json(results)
    else:
        for r in results:
            faces = ", ".join(f'{f["label"]} ({f["probabilities"][f["label"]]:.0%}) at {f["box"]}' for f in r["faces"])
            print(f'{r["image"]}: {faces or r["message"]}')
    # Videos and the camera: JSON lines to OUT/STEM_pred.jsonl, or to stdout (the summary then goes to stderr).
    for source in [p for p in args.images if is_video(p)] + ([] if args.camera is None else [args.camera]):
        try:
            s = predict_video(model, source, ckpt_classes, out_dir=args.out, method=args.detector,
                              detect_every=args.detect_every, smooth=args.smooth)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        wrote = f'; wrote {s["annotated"]} and {s["jsonl"]}' if s["annotated"] else ""
        print(f'{s["video"]}: {s["frames"]} frames, {s["tracks"]} face tracks, {s["fps"]} fps'
              f'{" (stopped by Ctrl-C)" if s["stopped"] else ""}{wrote}', file=sys.stdout if args.out else sys.stderr)
    return 2 if failed else 0


def torch_classes(checkpoint) -> list[str]:
    """The class names a checkpoint was trained with (stored by the Trainer)."""
    from .labels import classes_for
    from .train import read_checkpoint

    config = read_checkpoint(checkpoint).get("config") or {}
    return list(config.get("classes") or classes_for(config.get("default_cfg", {}).get("num_classes", 7)))


def cmd_models(args) -> int:
    import torch

    from .models import create_model, get_model_info, list_models
    from .pretrained import weights_info

    rows = []
    for name in list_models():
        info = get_model_info(name)
        with torch.device("meta"):  # shapes only: counting parameters allocates nothing
            count = lambda **kw: sum(p.numel() for p in create_model(name, **kw).parameters())  # noqa: E731
            standard = info.recipe("standard").model_args
            rows.append({"model": name, "parameters": count(), "parameters_standard": count(**standard),
                         "standard_model_args": standard, "input_size": list(info.input_size),
                         "num_classes": info.num_classes, "weights": weights_info(name)})
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        std = f" ({r['parameters_standard'] / 1e6:.2f} M at standard)" if r["standard_model_args"] else ""
        w = r["weights"]
        shipped = "no shipped weights" if w is None else (
            f"weights {w['file']} ({w['megabytes']} MB)" if w["shipped"] else f"weights {w['file']} ({w['megabytes']} MB, downloaded on first use)")
        if w and "val_accuracy" in w:
            shipped += f", val {100 * w['val_accuracy']:.1f}% on {w['dataset']} ({w['scale']})"
        print(f"{r['model']}: {r['parameters'] / 1e6:.2f} M parameters{std}, input {tuple(r['input_size'])}; {shipped}")
    return 0


def cmd_datasets(args) -> int:
    from .data import find_datasets

    _print_json({"data_root": str(Path(args.data_root).expanduser()), "datasets": find_datasets(args.data_root)})
    return 0


def cmd_labels(args) -> int:
    from .data import load_dataset
    from .labels import compare_labels

    data_args = {**_key_values(args.data_arg, "--data-arg"), "label_mode": "majority"}
    _print_json({"dataset": args.dataset, "split": args.split, "data_args": data_args,
                 **compare_labels(load_dataset(args.dataset, args.data_root, args.split, **data_args))})
    return 0


def cmd_notebooks(args) -> int:
    from .notebooks import clean_file, discover, format_table, run_notebooks

    if args.clean:
        for path in discover(args.notebooks_dir, args.only):
            print(f"{path.name}: {'cleaned' if clean_file(path) else 'already clean'}")
        return 0
    results = run_notebooks(scale=args.scale, only=args.only, out=args.out, inplace=args.inplace,
                            notebooks_dir=args.notebooks_dir, data_root=args.data_root, timeout=args.timeout)
    if args.json:
        _print_json(results)
    else:
        print(format_table(results))
    return 0 if all(r["status"] == "ok" for r in results) else 1


def cmd_landmarks(args) -> int:
    import time

    import numpy as np

    from .data import load_dataset
    from .faces import dataset_landmarks, landmarks_cache_path
    from .faces.regions import plausible

    cache_dir = False if args.no_cache else args.cache_dir
    dataset = load_dataset(args.dataset, args.data_root, args.split)
    path = landmarks_cache_path(dataset, box=args.box, cache_dir=cache_dir)
    from_cache = path is not None and path.exists()
    start = time.perf_counter()
    points = dataset_landmarks(dataset, box=args.box, cache_dir=cache_dir, progress=not args.quiet)
    seconds = time.perf_counter() - start
    found = int((~np.isnan(points).any((1, 2))).sum())
    fits = int(plausible(points, dataset.images.shape[-2:]).sum())  # the check Prior Attention's blocks use
    result = {"dataset": args.dataset, "split": args.split, "box": args.box, "images": len(points),
              "with_landmarks": found, "without_landmarks": len(points) - found, "plausible": fits,
              "cache": str(path) if path else None, "from_cache": from_cache, "seconds": round(seconds, 3)}
    if args.json:
        _print_json(result)
    else:
        where = "cache off" if path is None else f"{'loaded from' if from_cache else 'written to'} {path}"
        print(f"{args.dataset} {args.split}: landmarks for {found} of {len(points)} images "
              f"({args.box} box, {fits} plausible fits) in {seconds:.1f} s; {where}")
    return 0


def cmd_export(args) -> int:
    from .pretrained import export_pretrained

    out = Path(args.out)
    if out.suffix != ".pt":
        raise ValueError(f"--out {out} must name a .pt file, e.g. fercore/weights/vgg_fer_ferplus.pt")
    _print_json(export_pretrained(args.checkpoint, out.stem, out.parent, fp16=not args.fp32))
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one ``error: ...`` line (exit status 2) like every other error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m fercore", description="fercore: facial expression recognition, paper by paper.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    from .models import list_models
    from .data import list_datasets
    from .recipes import SCALES

    def add_run_options(p):
        p.add_argument("--model", required=True, choices=list_models())
        p.add_argument("--dataset", required=True, choices=list_datasets())
        p.add_argument("--data-root", default=default_data_root(), help="folder holding the dataset (default: $FERCORE_DATA or ./data)")
        p.add_argument("--scale", default="smoke", choices=SCALES, help="smoke: a minute on CPU; standard: a CPU/free-GPU budget; full: the paper's recipe")
        p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
        p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
        p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="passed to the model, e.g. fc_l2=0.01 (repeatable)")
        p.add_argument("--data-arg", action="append", metavar="KEY=VALUE", help="passed to the loader, e.g. fold=3, split_mode=character or regions_bug=leftover_image (repeatable)")
        p.add_argument("--recipe-arg", action="append", metavar="KEY=VALUE",
                       help="changes the recipe, e.g. class_weights=balanced or augment.rotate=0 (repeatable)")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
        p.add_argument("--init", metavar="CHECKPOINT",
                       help="fine-tune: start from this checkpoint's weights (a best.pt of the same --model) with a fresh "
                            "optimizer at epoch 0, unlike --resume; the model arguments (width) are the checkpoint's, and "
                            "a class list other than its own gets a new head that keeps the shared classes' rows")
        p.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add("train", "Train a model with its recipe for a scale; writes OUT/metrics.json, best.pt, last.pt, history.csv.")
    add_run_options(p)
    p.set_defaults(func=cmd_train)

    p = add("crossval", "Train and test on every subject-independent fold (CK+, JAFFE); writes OUT/fold_K/ and OUT/cv.json.")
    add_run_options(p)
    p.add_argument("--folds", type=int, default=10, help="number of folds (default 10; JAFFE's 10 subjects: leave-one-subject-out)")
    p.set_defaults(func=cmd_crossval)

    p = add("models", "List the models: parameters (default and at the standard recipe), input size, the shipped "
                      "weights and their validation figure.")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per model")
    p.set_defaults(func=cmd_models)

    p = add("reproduce", "Run every paper's experiment at one scale, one at a time, as the notebooks do; writes "
                         "OUT/table.md and OUT/table.json (the paper's figure beside ours, with split, command, epochs, "
                         "time). A finished run in OUT is read, not retrained; a stopped one resumes.")
    p.add_argument("--scale", default="smoke", choices=("smoke", "standard", "full"))
    p.add_argument("--only", nargs="+", action="extend", metavar="MODEL", help="only these models' experiments")
    p.add_argument("--data-root", default=default_data_root(), help="folder holding the datasets (default: $FERCORE_DATA or ./data)")
    p.add_argument("--out", default="runs/reproduce", help="one folder per run, and the tables (default runs/reproduce)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_reproduce)

    p = add("evaluate", "Evaluate a checkpoint on a dataset split; prints accuracy, macro_f1, per_class_recall, confusion, n.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", choices=list_datasets(), help="default: the dataset the checkpoint was trained on")
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE",
                   help="passed to the loader, e.g. classes=7; default: the checkpoint's own (its fold, its classes)")
    p.add_argument("--tta", default="none", choices=("none", "flip", "ten_crop"))
    p.add_argument("--occlude", metavar="KIND[:WHERE]",
                   help="draw a synthetic occluder on every face first (fercore.data.occlusion): sunglasses, mask, "
                        "grey:eyes, grey:mouth, texture:eyes, grey (random place), ...")
    p.add_argument("--occlude-seed", type=int, default=0, help="seed of random placements and textures (default 0)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = add("cross-dataset", "Score trained models on another dataset without fine-tuning (labels mapped through "
                             "fercore.labels; faces of a class a model lacks are left out and counted); prints JSON.")
    p.add_argument("--dataset", required=True, choices=list_datasets())
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--split", default="all", help="default all: every face, none was trained on")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE", help="passed to the loader (repeatable)")
    p.add_argument("--pretrained", nargs="*", metavar="MODEL",
                   help="shipped weights to score (default: every model with shipped weights, unless --checkpoint is given)")
    p.add_argument("--checkpoint", action="append", metavar="PATH", help="a best.pt to score as well (repeatable)")
    p.add_argument("--tta", default=None, choices=("flip", "ten_crop"))
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_cross_dataset)
    p = add("ensemble", "Choose an ensemble of checkpoints (weighted mean of probabilities, Caruana's greedy selection) "
                        "and the best single checkpoint on one set of faces; report both on another; prints JSON.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="best.pt files of models with the same classes")
    p.add_argument("--dataset", required=True, choices=list_datasets())
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--tta", default="none", choices=("none", "flip", "ten_crop"))
    p.add_argument("--seed", type=int, default=0, help="seed of the halves of val when there is no test split")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_ensemble)
    from .video import DETECT_EVERY, SMOOTH, VIDEO_EXTENSIONS

    p = add("predict", "Find the faces in each image and predict their expressions (box, label, all probabilities); "
                       "in a video or from a webcam, track each face and smooth its probabilities over time.")
    p.add_argument("images", nargs="*", metavar="FILE",
                   help=f"JPEG, PNG or TIFF photos, or videos ({' '.join(VIDEO_EXTENSIONS)}): a video gives "
                        "OUT/STEM_pred.mp4 and OUT/STEM_pred.jsonl (a JSON line per frame), or the lines on stdout")
    p.add_argument("--checkpoint", help="a best.pt written by train (default: the model shipped with fercore)")
    p.add_argument("--out", help="folder for annotated copies (IMAGE_pred.png, VIDEO_pred.mp4 and .jsonl, numbered "
                                 "when taken); no file is overwritten")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per image")
    p.add_argument("--detector", default="auto", choices=("auto", "hog", "haar", "whole"),
                   help="auto: dlib HOG, then OpenCV Haar; whole: the image is one pre-cropped face")
    p.add_argument("--device", default="cpu")
    p.add_argument("--camera", type=int, metavar="N", help="read webcam N as a video instead of files; Ctrl-C stops")
    p.add_argument("--detect-every", type=int, default=DETECT_EVERY, metavar="N",
                   help=f"videos: detect faces every N frames, follow the tracks in between (default {DETECT_EVERY})")
    p.add_argument("--smooth", type=float, default=SMOOTH, metavar="ALPHA",
                   help=f"videos: weight of each frame in a face's moving average of probabilities, 1: none "
                        f"(default {SMOOTH}: a time constant of about 4.5 frames)")
    p.set_defaults(func=cmd_predict)

    p = add("datasets", "List every dataset fercore knows, whether it was found under --data-root, and where.")
    p.add_argument("--data-root", default=default_data_root())
    p.set_defaults(func=cmd_datasets)

    p = add("labels", "FER2013's one label against FERPlus's majority on the same faces: class counts under each, "
                      "the share that agree, and the cross table (JSON).")
    p.add_argument("--dataset", default="ferplus", choices=("ferplus", "simulated_ferplus"))
    p.add_argument("--data-root", default=default_data_root(), help="folder holding the dataset (default: $FERCORE_DATA or ./data)")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--data-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to the loader, e.g. classes=7 or votes=label_csv (repeatable)")
    p.set_defaults(func=cmd_labels)

    p = add("notebooks", "Run the numbered notebooks through papermill; print a table (notebook, status, seconds).")
    p.add_argument("--scale", default="smoke", choices=SCALES)
    p.add_argument("--only", action="append", help="notebook number or name prefix, e.g. 00 (repeatable)")
    p.add_argument("--out", default="build/notebooks", help="folder for the executed copies (default: build/notebooks)")
    p.add_argument("--inplace", action="store_true", help="write the outputs back into the committed notebooks")
    p.add_argument("--clean", action="store_true",
                   help="run nothing: strip injected parameters and run metadata from the committed notebooks")
    p.add_argument("--notebooks-dir", default=None, help="folder of notebooks (default: the repository's notebooks/)")
    p.add_argument("--data-root", default=None, help="passed to each notebook as DATA_ROOT")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell before giving up")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_notebooks)

    p = add("landmarks", "Compute (or load from the cache) dlib's 68 landmarks for every image of a dataset split; "
                         "prints the cache file, how many images had landmarks, how many of those fits are plausible "
                         "(fercore.faces.regions.plausible), and the seconds taken.")
    p.add_argument("--dataset", required=True, choices=list_datasets())
    p.add_argument("--data-root", default=default_data_root(), help="folder holding the dataset (default: $FERCORE_DATA or ./data)")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--box", default="whole", choices=("whole", "detect"),
                   help="whole: each image is one pre-cropped face (FER2013, CK+48); detect: dlib HOG, then Haar, largest face")
    p.add_argument("--cache-dir", default=None, help="where the .npz goes (default: $FERCORE_CACHE or ~/.cache/fercore)")
    p.add_argument("--no-cache", action="store_true", help="compute without reading or writing a cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line")
    p.set_defaults(func=cmd_landmarks)

    p = add("export", "Strip a checkpoint to fp16 weights + metadata for shipping (fercore/pretrained.py); "
                      "prints its size and sha256. Never overwrites a file.")
    p.add_argument("checkpoint", help="a best.pt written by train (its run's metrics.json is copied beside OUT)")
    p.add_argument("--out", required=True, help="the .pt to write, e.g. fercore/weights/vgg_fer_ferplus.pt")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights (twice the bytes), where fp16 changes answers")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv=None) -> int:
    from .data.download import DownloadError  # offline, or a bad hash: weights or fer2013new.csv

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m fercore " + shlex.join(argv)  # recorded in outputs that get stored
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, FloatingPointError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
