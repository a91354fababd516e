"""Trained weights that ship with fercore: ``create_model(name, pretrained=True)``.

A shipped file is a regular fercore checkpoint (``fercore.train.read_checkpoint`` reads it)
stripped to what inference needs: the model state in fp16 (half the bytes; float32 where fp16
changes the model's answers, ``export --fp32``; at most 10 MB per model, so that the package stays small), the config (model name and arguments, default_cfg,
classes) and the best epoch's figures; no optimizer, scheduler, RNG states or history. The
run's ``metrics.json`` is kept beside it. Every file is checked against its sha256 before
``torch.load`` sees it. Weights too large to ship name a ``url`` instead and are downloaded
once into ``$FERCORE_CACHE/weights`` (default ``~/.cache/fercore/weights``).

To ship a model, export its best checkpoint and paste the printed ``register`` line into ``PRETRAINED``::

    python -m fercore export runs/RUN/best.pt --out fercore/weights/MODEL_DATASET.pt
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch.nn as nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
MAX_SHIPPED_BYTES = 10 * 1000 * 1000  # larger weights go to a url, not into the package
DEFAULT_MODEL = "vgg_fer"  # what ``python -m fercore predict`` uses without --checkpoint
RELEASE_URL = "https://github.com/fercore/fercore/releases/download/weights-v1"  # weights over MAX_SHIPPED_BYTES

# model name -> its weights, each exported from a run's best.pt with its metrics.json (the command that trained
# it is in there): vgg_fer, the Ohlsen recipe on real FERPlus; resnet18_fer, the standard recipe on FER2013
# (seed 1); ran and ran_face_only, the standard recipe on FERPlus with the backbone started from that ResNet;
# deep_emotion, deepfer, resnet18_cbam and resnet18_cbam_asoftmax (whose features collapse: notebook 04),
# `python -m fercore reproduce --scale standard` on FER2013 (deep_emotion in float32:
# fp16 changed 3 of its 3,589 PublicTest answers); prior_attention too, 71 MB in fp16, so by url.
PRETRAINED: dict[str, dict] = {
    "vgg_fer": {"file": "vgg_fer_ferplus.pt", "sha256": "6afce64e3e1b8af6e9d9e1568301cc93d789084fc4c4048259f1d39f814e02b4",
                "metrics": "vgg_fer_ferplus.json", "url": None},
    "resnet18_fer": {"file": "resnet18_fer_fer2013.pt", "sha256": "3f6ef39e12396520b422df924bf97526f1f7d727934641154210572b06bac1a1",
                     "metrics": "resnet18_fer_fer2013.json", "url": None},
    "ran": {"file": "ran_ferplus.pt", "sha256": "e467af98460e1b2da06b6bcb058d4b955dbfe7e5a81419cbe8bad6e1ee14810e",
            "metrics": "ran_ferplus.json", "url": None},
    "ran_face_only": {"file": "ran_face_only_ferplus.pt", "metrics": "ran_face_only_ferplus.json", "url": None,
                      "sha256": "2f9add4ba1e58d401e14070322ba656703362d702d59afe3aa795c5d5c4d4fb1"},
    "deep_emotion": {"file": "deep_emotion_fer2013.pt", "metrics": "deep_emotion_fer2013.json", "url": None,
                     "sha256": "9dcdff9d96b645d070c54f4f68fb96b5e9b18b0afcd5da7d50a4faafdde9a2a4"},
    "deepfer": {"file": "deepfer_fer2013.pt", "sha256": "4ecf4027ab71ce9bce1d15fbc30690c8c3bba23bbbcfa7b27b646b61adb8fc43",
                "metrics": "deepfer_fer2013.json", "url": None},
    "resnet18_cbam": {"file": "resnet18_cbam_fer2013.pt", "metrics": "resnet18_cbam_fer2013.json", "url": None,
                      "sha256": "7315ddc45af1d0386b0e96985f560eca0e02e92023ae7ee7f2b9cbf08880a756"},
    "resnet18_cbam_asoftmax": {"file": "resnet18_cbam_asoftmax_fer2013.pt", "metrics": "resnet18_cbam_asoftmax_fer2013.json",
                               "url": None, "sha256": "d28c1aaa2c823a24fdb090926f1f5e8244bdb6f115a4a2a369a8eb34c07ff1c5"},
    "prior_attention": {"file": "prior_attention_fer2013.pt", "metrics": "prior_attention_fer2013.json", "bytes": 70973367,
                        "url": f"{RELEASE_URL}/prior_attention_fer2013.pt",
                        "sha256": "7f8f57aee6365999ef436de8a16dd029aa863125876ad06bbd3241858b2a73af"},
}


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # in chunks; hashlib.file_digest needs Python 3.11
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_path(name: str) -> Path:
    """The checked weights file of model ``name``: shipped in ``fercore/weights/``, or downloaded into the cache."""
    from .data.cache import default_cache_dir
    from .data.download import download

    if name not in PRETRAINED:
        raise ValueError(f"model {name!r} has no pretrained weights in this fercore (models with weights: "
                         f"{', '.join(sorted(PRETRAINED)) or 'none yet'}); use a checkpoint written by train, "
                         "e.g. predict --checkpoint runs/RUN/best.pt")
    entry = PRETRAINED[name]
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file() and entry.get("url"):
        path = download(entry["url"], default_cache_dir() / "weights" / entry["file"], entry["sha256"])
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights of {name} ({path}) are missing from this installation; "
                                "reinstall fercore")
    got = sha256_of(path)
    if got != entry["sha256"].lower():
        raise ValueError(f"{path} is not the file registered for {name}: its sha256 is {got}, expected "
                         f"{entry['sha256']} (a damaged download or copy; delete it and download or reinstall)")
    return path


def weights_info(name: str) -> dict | None:
    """What ``PRETRAINED`` holds for model ``name`` (None: no weights): the file, where it lives, its size
    when present here, and the validation figure of the run that trained it (from its metrics.json)."""
    import json

    entry = PRETRAINED.get(name)
    if entry is None:
        return None
    path = WEIGHTS_DIR / entry["file"]
    size = path.stat().st_size if path.is_file() else entry.get("bytes")  # a url entry records its size
    info = {"file": entry["file"], "shipped": path.is_file(), "url": entry.get("url"),
            "megabytes": round(size / 1e6, 2) if size else None}
    if entry.get("metrics") and (WEIGHTS_DIR / entry["metrics"]).is_file():
        m = json.loads((WEIGHTS_DIR / entry["metrics"]).read_text())
        info |= {"dataset": m["dataset"], "scale": m.get("scale"), "val_accuracy": m["val"]["accuracy"],
                 "command": m["command"]}
    return info


def load_pretrained(name: str, **kwargs) -> nn.Module:
    """Model ``name`` with its registered weights, on the CPU, in float32 and eval mode.

    ``model.classes`` are the labels it was trained with. A ``num_classes`` or ``in_chans`` other
    than the weights' own is a ValueError; other arguments (``dropout``...) go to ``create_model``.
    """
    from .models import create_model
    from .train import load_weights, read_checkpoint

    path = pretrained_path(name)
    ckpt = read_checkpoint(path)
    config = ckpt.get("config") or {}
    cfg = config.get("default_cfg") or {}
    shipped = {"num_classes": cfg.get("num_classes"), "in_chans": (cfg.get("input_size") or [None])[0]}
    for key, value in kwargs.items():
        if key in shipped and value != shipped[key]:
            raise ValueError(f"pretrained {name} weights ({path.name}) have {key}={shipped[key]}, not {value}: "
                             f"drop {key}, or build the model with pretrained=False and train it")
    model = create_model(name, **{**(config.get("model_kwargs") or {}), **kwargs})
    load_weights(model, ckpt["model"], path)  # load_state_dict copies the fp16 tensors into float32 ones
    model.classes = list(config.get("classes") or [])
    return model.eval()


def export_pretrained(checkpoint, name: str, dest_dir=WEIGHTS_DIR, fp16: bool = True) -> dict:
    """Write ``dest_dir/NAME.pt`` (fp16 weights + metadata) and ``NAME.json`` (the run's metrics.json, if any).
    ``fp16=False`` keeps float32, for a model whose answers fp16 changes (measure it: the real-data test
    of ``tests/test_pretrained.py`` scores every shipped file against its run's validation figure).

    Never overwrites: an existing target is a FileExistsError. Returns what to register: the
    file, its size and sha256, and the line to paste into ``PRETRAINED``.
    """
    import io

    import torch

    from .runs import atomic_write
    from .train import read_checkpoint

    checkpoint = Path(checkpoint)
    ckpt = read_checkpoint(checkpoint)
    config = ckpt.get("config") or {}
    if not config.get("model_name"):
        raise ValueError(f"{checkpoint} does not name its model (config['model_name']): only checkpoints of "
                         "models built by fercore.models.create_model can be exported")
    dest_dir = Path(dest_dir)
    out, metrics_src = dest_dir / f"{name}.pt", checkpoint.with_name("metrics.json")
    metrics = dest_dir / f"{name}.json" if metrics_src.is_file() else None
    for target in filter(None, (out, metrics)):
        if target.exists():
            raise FileExistsError(f"{target} already exists; export never replaces weights: choose another name")
    floats = {k: v for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel()}
    too_big = [k for k, v in floats.items() if v.abs().max() > torch.finfo(torch.float16).max]
    if fp16 and too_big:  # would become inf in fp16
        raise ValueError(f"{checkpoint}: {', '.join(too_big)} exceed fp16's range (65504); cannot ship it in fp16")
    state = {k: v.half() if fp16 and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    keep = ("epoch", "best_epoch", "best_metric", "monitor", "mode")
    stripped = {"format_version": ckpt.get("format_version", 1), "model": state, "config": config,
                **{k: ckpt[k] for k in keep if k in ckpt}}
    buf = io.BytesIO()
    torch.save(stripped, buf)
    dest_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out, buf.getvalue())
    if metrics:
        atomic_write(metrics, metrics_src.read_bytes())
    entry = {"file": out.name, "sha256": sha256_of(out), "metrics": metrics.name if metrics else None, "url": None}
    size = out.stat().st_size
    return {"file": str(out), "bytes": size, "megabytes": round(size / 1e6, 2), "sha256": entry["sha256"],
            "metrics": str(metrics) if metrics else None, "fits_in_package": size <= MAX_SHIPPED_BYTES,
            "register": f"{config['model_name']!r}: {entry!r},"}
