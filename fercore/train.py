"""Trainer: fit, evaluate, checkpoints, resume, history, in one loop you can read in a sitting.

The data path is the point (DESIGN.md, principle 1): a dataset's uint8 ``images`` and its
``targets`` move to the device once; each batch is indexed there and turned into the model's
input by ``fercore.transforms.ModelInput`` (the one model-input path: [0, 1], the batched
augmentation, the crop to the model's input size, normalisation). No DataLoader workers, no
per-sample Python.

Constructing a Trainer changes nothing outside it: ``fit`` seeds the global RNGs (on a fresh
run; a resumed one restores them) and, under ``torchrun`` (``WORLD_SIZE > 1``), joins the
process group (``fercore.runs.init_distributed``) and wraps the model in
DistributedDataParallel: each process trains on a disjoint share of every epoch's
permutation, metrics are summed across processes, and only rank 0 writes files and shows
progress bars.
"""
from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from . import runs
from .data.augment import build_augment
from .losses import loss_for
from .metrics import confusion_matrix, metrics_from_confusion
from .transforms import ModelInput, as_images, predict_logits

MONITORS = ("val_accuracy", "val_macro_f1", "val_loss")
FORMAT_VERSION = 1  # of the checkpoint dict; bump it when its layout changes, and say how to read the old one


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` picks this process's GPU when there is one (``LOCAL_RANK`` under torchrun), else the CPU.

    Asking for a device this machine lacks (``"cuda"`` without a GPU) is a ValueError that says so.
    """
    if device == "auto":
        return torch.device(f"cuda:{runs.local_rank()}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for, but this machine has no usable CUDA GPU "
                             "(torch.cuda.is_available() is False); use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


class Trainer:
    """Train and evaluate ``model`` on ``FERDataset``s; see ``fit``, ``evaluate``, ``predict_proba``.

    ``monitor`` names the validation metric that picks ``best.pt`` and drives early stopping
    and ``ReduceLROnPlateau``; ``mode=None`` means ``"min"`` for losses, else ``"max"``.
    ``callbacks`` are called as ``cb(trainer, record)`` after each epoch (rank 0 only).
    ``config`` (JSON-like values) is stored in every checkpoint beside the model's name.
    ``sync_bn`` turns batch norm into SyncBatchNorm under torchrun (torch supports it on GPUs
    only), so that the statistics come from the global batch rather than each process's share.
    """

    sync_every = 20  # batches between host syncs (NaN check, progress bar): fewer syncs keep a GPU busy
    # A training loss above explode_factor * log K (K classes; log K is the cross-entropy of a uniform guess)
    # has diverged, finite or not: 1e4 * log 7 = 19459. A working run never comes near it, and a
    # diverging one passes it within a few batches (SGD at lr=100 reaches 1e18).
    explode_factor = 1e4

    def __init__(self, model: nn.Module, loss=None, optimizer=None, scheduler=None, augment=None, device="auto", *,
                 out_dir=None, batch_size=64, eval_batch_size=512, monitor="val_accuracy", mode=None, patience=None,
                 amp=True, seed=0, channels_last=True, sync_bn=False, progress=True, callbacks=(), config=None):
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS} (checkpoints are chosen on validation only), got {monitor!r}")
        self.world, self.rank = runs.world_size(), runs.rank()  # read from the environment; nothing is joined yet
        self.device = resolve_device(device)
        self.seed, self.sync_bn = seed, sync_bn
        self.model = model.to(self.device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        self.net = self.model  # becomes the DistributedDataParallel wrapper in fit under torchrun
        self.input = ModelInput(self.model, self.device, channels_last)
        self.loss = loss if loss is not None else nn.CrossEntropyLoss()
        if isinstance(self.loss, nn.Module):  # class weights are a buffer of the loss
            self.loss = self.loss.to(self.device)
        self.optimizer = optimizer or torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.scheduler, self.augment = scheduler, augment
        self.generator = torch.Generator().manual_seed(seed + self.rank)  # CPU: augment draws its parameters there
        self.amp_dtype = None
        if amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        cfg = getattr(model, "default_cfg", {}) or {}
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.monitor, self.mode, self.patience = monitor, mode or ("min" if "loss" in monitor else "max"), patience
        self.callbacks = list(callbacks)
        self.show = progress and self.rank == 0
        try:  # round-trip through JSON now, so that checkpoints always load with weights_only=True
            self.config = json.loads(json.dumps({**(config or {}), "model_name": getattr(model, "model_name", None),
                                                 "model_kwargs": getattr(model, "model_kwargs", {}), "default_cfg": cfg}))
        except TypeError as e:
            raise ValueError(f"config must hold JSON-like values only (dict, list, str, number, bool, None): {e}") from e
        self.history: list[dict] = []
        self.epoch, self.best_epoch, self.best_metric, self.stopped_early = 0, 0, None, False

    @classmethod
    def from_recipe(cls, model: nn.Module, recipe, train=None, **kw) -> "Trainer":
        """A Trainer with the recipe's optimizer, scheduler, augmentation, batch size, patience and loss.

        ``train`` (the training set) is needed when the recipe weights the classes; its
        ``label_mode`` (FERPlus) picks the loss (``fercore.losses.loss_for``), else cross-entropy.
        """
        if recipe.augment and "augment" not in kw:
            kw["augment"] = build_augment(**recipe.augment)
        if recipe.class_weights and "loss" not in kw and train is None:
            raise ValueError("this recipe weights the classes (class_weights="
                             f"{recipe.class_weights!r}): pass the training set as from_recipe(..., train=...)")
        if "loss" not in kw and train is not None:  # the training set's label mode picks the loss
            weight = class_weights(train.targets, train.num_classes) if recipe.class_weights else None
            kw["loss"] = loss_for(getattr(train, "label_mode", None), weight)
        kw.setdefault("batch_size", recipe.batch_size)
        kw.setdefault("patience", recipe.patience)
        kw.setdefault("monitor", recipe.monitor)
        kw["config"] = {"recipe": recipe.to_dict(), **(kw.get("config") or {})}
        trainer = cls(model, optimizer=build_optimizer(model, recipe), **kw)
        trainer.scheduler = build_scheduler(trainer.optimizer, recipe, trainer.mode)
        return trainer

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """The model's input height and width (None for a module without ``default_cfg``)."""
        return self.input.input_hw

    # ---------------------------------------------------------------- distributed
    def _join(self) -> None:
        """Under torchrun: join the process group (once per process; ``evaluate`` needs it for its sums)."""
        self.world = runs.init_distributed(self.device)

    def _wrap(self) -> None:
        """Under torchrun: wrap the model in DistributedDataParallel once, for training."""
        if self.world == 1 or self.net is not self.model:
            return
        if self.sync_bn:
            if self.device.type != "cuda":
                raise ValueError("sync_bn=True: torch's SyncBatchNorm runs on GPUs only; on CPUs each process "
                                 "normalises with the statistics of its own share of the batch")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # keeps the optimizer's parameters
        self.net = nn.parallel.DistributedDataParallel(self.model)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    # ---------------------------------------------------------------- training
    def _check_loss(self, losses: torch.Tensor, start: int, limit: float, n_batches: int) -> None:
        """Raise FloatingPointError for the first non-finite or exploded loss of batches ``start``, ``start + 1``, ...

        One host sync; called every ``sync_every`` batches.
        """
        bad = (~torch.isfinite(losses) | (losses > limit)).nonzero()
        if not len(bad):
            return
        i = bad[0, 0].item()
        value = losses[i].item()
        what = (f"training loss exploded to {value:.3g} (over {self.explode_factor:g} x log K = {limit:.0f})"
                if math.isfinite(value) else f"non-finite training loss ({value})")
        saved = f"; {self.out_dir / 'last.pt'} still holds epoch {self.epoch}" if self.out_dir and self.epoch else ""
        raise FloatingPointError(f"{what} at epoch {self.epoch + 1}, batch {start + i + 1} of {n_batches}{saved}. "
                                 "Try a lower learning rate, amp=False, or check the data and the loss.")

    def _train_epoch(self, images: torch.Tensor, targets: torch.Tensor) -> dict:
        self.net.train()
        n = len(images)
        # The permutation depends on (seed, epoch) only, like DistributedSampler.set_epoch: every rank
        # draws the same one and takes every world-th index (a tail of < world images sits out).
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).to(self.device)
        batches = perm[: n - n % self.world][self.rank::self.world].split(self.batch_size)
        losses = torch.zeros(len(batches), device=self.device)
        correct = torch.zeros((), device=self.device)
        limit, checked = None, 0
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.show)
        for b, idx in enumerate(bar):
            x, y = self.input(images[idx], self.augment, self.generator), targets[idx]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                # A margin head (A-Softmax) needs the labels to bend the target's logit; going through
                # self.net keeps DistributedDataParallel's gradient sync. Evaluation calls model(x) alone.
                logits = self.net(x, y) if getattr(self.model, "takes_targets", False) else self.net(x)
                loss = self.loss(logits, y)
                # A model's own regulariser (Deep-Emotion's L2 on its FC weights) is optimised but not
                # logged: train_loss stays comparable with val_loss.
                total = loss + self.model.penalty() if callable(getattr(self.model, "penalty", None)) else loss
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses[b] = loss.detach()
            correct += (logits.argmax(1) == (y.argmax(1) if y.ndim == 2 else y)).sum()
            limit = limit or self.explode_factor * math.log(max(logits.shape[1], 2))
            if (b + 1) % self.sync_every == 0 or b + 1 == len(batches):
                self._check_loss(losses[checked: b + 1], checked, limit, len(batches))
                checked = b + 1
                bar.set_postfix(loss=f"{losses[b].item():.3f}")
        if self.world > 1:  # DDP keeps the weights equal; make the batch-norm statistics rank 0's (the saved ones) too
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        sizes = torch.tensor([len(i) for i in batches], device=self.device, dtype=torch.float)
        totals = self._all_reduce(torch.stack([(losses * sizes).sum(), correct.float(), sizes.sum()]))
        return {"train_loss": (totals[0] / totals[2]).item(), "train_accuracy": (totals[1] / totals[2]).item(),
                "train_images": int(totals[2].item())}

    def fit(self, train, val=None, epochs: int = 1, resume: bool | str | Path = False) -> list[dict]:
        """Train until ``epochs`` epochs in total are done (or early stopping); return the history.

        ``resume=True`` continues from ``out_dir/last.pt`` when it exists (else starts fresh);
        a path resumes from that checkpoint. ``best.pt`` is the epoch with the best
        ``monitor`` on ``val``; without ``val`` it is simply the last epoch. A fresh run seeds
        Python, NumPy and torch with ``seed + rank`` (ranks differ in dropout and augmentation,
        not in the permutation). When ``fit`` returns, every rank sees the files rank 0 wrote.
        """
        if resume is True and self.out_dir is None:
            raise ValueError("resume=True reads out_dir/last.pt, but this Trainer has no out_dir")
        self._join()
        self._wrap()
        if resume:
            path = self.out_dir / "last.pt" if resume is True else Path(resume)
            if resume is not True or path.exists():
                self._load(path)
        if self.epoch == 0:
            seed_everything(self.seed + self.rank)
            self.generator.manual_seed(self.seed + self.rank)
        # A resumed run that had already stopped early stays stopped: more epochs would change its result.
        self.config["classes"], self.stopped_early = list(train.classes), self._patience_spent(val)
        images, targets = train.images.to(self.device), train.targets.to(self.device)
        epoch_bar = tqdm(range(self.epoch, self.epoch if self.stopped_early else epochs), desc="fit",
                         disable=not self.show)
        for _ in epoch_bar:
            t0 = time.perf_counter()
            record = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
            record.update(self._train_epoch(images, targets))
            record["img_per_s"] = record["train_images"] / (time.perf_counter() - t0)
            m = self.evaluate(val) if val is not None else {}
            record.update(val_loss=m.get("loss"), val_accuracy=m.get("accuracy"), val_macro_f1=m.get("macro_f1"))
            record["seconds"] = time.perf_counter() - t0
            self.epoch += 1
            value = record[self.monitor]
            improved = val is None or self.best_metric is None or (
                value > self.best_metric if self.mode == "max" else value < self.best_metric)
            if improved:
                self.best_epoch, self.best_metric = self.epoch, value
            record["is_best"] = improved
            record["best_by"] = self.monitor if val is not None else "last epoch (no validation set)"
            self.history.append(record)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if val is not None:
                    self.scheduler.step(value)
            elif self.scheduler is not None:
                self.scheduler.step()
            self._write(improved)
            epoch_bar.set_postfix({k: f"{record[k]:.3f}" for k in ("train_loss", "val_accuracy") if record[k] is not None})
            if self.rank == 0:
                for cb in self.callbacks:
                    cb(self, record)
            if self._patience_spent(val):
                self.stopped_early = True
                break
        runs.barrier()  # rank 0 may still be writing best.pt, which the others read next
        return self.history

    def _patience_spent(self, val) -> bool:
        """Early stopping's test: ``patience`` epochs since the best one (never before the first epoch)."""
        return bool(val is not None and self.patience and self.epoch and self.epoch - self.best_epoch >= self.patience)

    # ---------------------------------------------------------------- evaluation
    def _logits(self, images: torch.Tensor, tta=None, batch_size=None) -> torch.Tensor:
        return predict_logits(self.model, images, tta, batch_size or self.eval_batch_size, model_input=self.input,
                              amp_dtype=self.amp_dtype)

    def evaluate(self, dataset, tta=None, batch_size=None) -> dict:
        """``classification_metrics`` of ``dataset`` plus its mean ``loss`` (summed across ranks)."""
        self._join()
        shard = torch.arange(self.rank, len(dataset), self.world)
        logits = self._logits(dataset.images[shard], tta, batch_size)
        targets = dataset.targets[shard].to(self.device)
        loss_sum = self.loss(logits, targets).float() * len(shard) if len(shard) else torch.zeros((), device=self.device)
        labels = targets.argmax(1) if targets.ndim == 2 else targets
        cm = self._all_reduce(confusion_matrix(labels, logits.argmax(1), dataset.num_classes))
        metrics = metrics_from_confusion(cm, dataset.classes)
        metrics["loss"] = self._all_reduce(loss_sum.detach()).item() / metrics["n"]
        return metrics

    def predict_proba(self, images, tta=None, batch_size=None) -> torch.Tensor:
        """Class probabilities ``(N, K)`` (CPU float): ``fercore.transforms.predict_proba`` on this Trainer's device."""
        return self._logits(as_images(images, "predict_proba"), tta, batch_size).softmax(1).cpu()

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """The checkpoint: one self-describing dict that loads with ``torch.load(weights_only=True)``."""
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"format_version": FORMAT_VERSION, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "monitor": self.monitor, "mode": self.mode,
                "history": self.history, "rng": rng, "config": self.config}

    def _write(self, improved: bool) -> None:
        """last.pt every epoch, best.pt when the monitored metric improved, history as CSV and JSON (rank 0 only)."""
        if self.out_dir is None or self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        runs.atomic_write(self.out_dir / "last.pt", buf.getvalue())
        if improved:
            runs.atomic_write(self.out_dir / "best.pt", buf.getvalue())
        runs.write_json(self.out_dir / "history.json", self.history, indent=1)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(self.history[0]))
        writer.writeheader()
        writer.writerows(self.history)
        runs.atomic_write(self.out_dir / "history.csv", text.getvalue().encode())

    def _load(self, path: Path) -> None:
        """Resume from ``path``: weights, optimizer, scheduler, scaler, counters, history and RNG streams."""
        ckpt = read_checkpoint(path, self.device, need=RESUME_KEYS)
        load_weights(self.model, ckpt["model"], path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt["scheduler"] is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError) as err:
            raise ValueError(f"{path}: its optimizer or scheduler state does not fit this Trainer's ({err})") from err
        if ckpt["scaler"]:  # empty when saved without fp16 scaling
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.best_epoch, self.best_metric = ckpt["epoch"], ckpt["best_epoch"], ckpt["best_metric"]
        self.history = ckpt["history"]
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        self.generator.set_state(rng["generator"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        if self.world > 1:  # the file holds rank 0's streams: give the other ranks their own again
            seed_everything(self.seed + self.rank + 1000 * self.epoch)
            self.generator.manual_seed(self.seed + self.rank + 1000 * self.epoch)

    def load_best(self) -> nn.Module:
        """Load ``out_dir/best.pt``'s weights into the model (e.g. before the one test-set evaluation)."""
        runs.barrier()  # under torchrun, wait until rank 0 has written it
        path = self.out_dir / "best.pt"
        load_weights(self.model, read_checkpoint(path, self.device)["model"], path)
        return self.model


# ---------------------------------------------------------------- reading checkpoints
RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "best_epoch", "best_metric", "history", "rng")


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def _load_error(err: Exception) -> str:
    """torch.load's reason in a few words. Its weights-only message advises weights_only=False, which would
    run whatever code the file holds: fercore never does, so that advice is left out."""
    text = str(err)
    if "Weights only load failed" not in text:
        return f"{type(err).__name__}: {_first_line(err)}"
    if "GLOBAL" in text or "Unsupported global" in text:
        return "it holds Python objects besides tensors, which fercore does not load: loading them can run code"
    return "its bytes are not a pickle of tensors"


def read_checkpoint(path, device="cpu", need=("model",)) -> dict:
    """The one checkpoint reader: ``torch.load(weights_only=True)`` with one-line errors that name the file.

    A missing file is a FileNotFoundError; a truncated or foreign file, one without the
    ``need``-ed entries, or one of an unknown ``format_version`` is a ValueError. A file
    without ``format_version`` (written before the key existed) has version 1's layout.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # zip, pickle and weights-only errors all mean: not a file we wrote, or not all of it
        raise ValueError(f"{path} is not a checkpoint fercore can read, or is truncated "
                         f"({_load_error(err)})") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a fercore Trainer checkpoint: it has no 'model' entry")
    version = ckpt.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format_version {version!r}, but this fercore reads version "
                         f"{FORMAT_VERSION} only (was it written by another fercore version?)")
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is not a checkpoint a Trainer can resume from")
    return ckpt


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _mismatches(model: nn.Module, state: dict, skip=()) -> list[str]:
    """What keeps ``state`` from loading into ``model`` (tensors in ``skip`` aside): shapes, missing, unexpected."""
    own = model.state_dict()
    shapes = [f"{k} {list(state[k].shape)} in the file, {list(v.shape)} in the model"
              for k, v in own.items() if k in state and k not in skip and state[k].shape != v.shape]
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    return ([f"shapes differ: {_few(shapes)}"] if shapes else []) + \
           ([f"missing from the file: {_few(missing)}"] if missing else []) + \
           ([f"not in the model: {_few(unexpected)}"] if unexpected else [])


def load_weights(model: nn.Module, state: dict, path) -> None:
    """``model.load_state_dict(state)``, or a one-line ValueError naming the model and the first differing shapes."""
    parts = _mismatches(model, state)
    if parts:
        name = getattr(model, "model_name", None) or type(model).__name__
        kwargs = getattr(model, "model_kwargs", None)
        raise ValueError(f"{path} holds weights for another architecture than {name}"
                         f"{f'({kwargs})' if kwargs else ''}: {'; '.join(parts)}")
    model.load_state_dict(state)


# ---------------------------------------------------------------- fine-tuning: weights from another run
def class_axes(model: nn.Module) -> dict[str, int]:
    """The tensors of ``model`` whose shape follows its number of classes (its head), each with the axis that does.

    Found by building the same model with one class more, on the meta device (no memory, no random
    numbers drawn), and seeing which shapes change: this holds for any head (a Linear's weight and
    bias, A-Softmax's weight, the last layer of an MLP classifier) and never takes a layer that
    happens to have K channels for the head. A model not built by ``create_model`` has none.
    """
    from .models import create_model

    name, kwargs = getattr(model, "model_name", None), getattr(model, "model_kwargs", None)
    if name is None or kwargs is None:
        return {}
    with torch.device("meta"):
        probe = create_model(name, **{**kwargs, "num_classes": model.default_cfg["num_classes"] + 1}).state_dict()
    return {k: next(i for i, (a, b) in enumerate(zip(v.shape, probe[k].shape)) if a != b)
            for k, v in model.state_dict().items() if k in probe and probe[k].shape != v.shape and probe[k].ndim == v.ndim}


def init_weights(model: nn.Module, ckpt: dict, path, classes=None) -> dict:
    """Initialise ``model`` with the weights of checkpoint ``ckpt`` (read from ``path``), to fine-tune it.

    Weights only, unlike a resume: no optimizer, scheduler, epoch or history. Every parameter and
    buffer (batch-norm statistics, A-Softmax's iteration counter) is copied, by name. When
    ``classes`` differs from the checkpoint's class list (``config["classes"]``: other names or
    another order), the class tensors (``class_axes``) keep the model's fresh initialisation except
    the rows of the classes both lists hold, copied by class name: FER2013's 7 classes into CK+'s 8
    keep all rows but contempt's. Any other tensor that does not fit (another width, other
    channels) is a one-line ValueError naming the file and the model arguments that differ.

    Returns what was done: ``loaded`` (tensors copied whole), ``reinitialised`` (count) and
    ``reinitialised_tensors`` (names), and the class rows ``kept``, ``new`` and ``dropped``.
    """
    state, own = ckpt["model"], model.state_dict()
    config = ckpt.get("config") or {}
    source = list(config.get("classes") or [])  # [] (a checkpoint that names none): no row can be matched
    target = source if classes is None else list(classes)
    axes = class_axes(model) if source != target else {}
    parts = _mismatches(model, state, skip=axes)
    if parts:
        name = getattr(model, "model_name", None) or type(model).__name__
        theirs, ours = config.get("model_kwargs") or {}, getattr(model, "model_kwargs", None) or {}
        args = [f"{k}={theirs.get(k)!r} in the file, {ours.get(k)!r} here" for k in sorted({*theirs, *ours} - {"num_classes"})
                if theirs.get(k) != ours.get(k)]
        raise ValueError(f"{path} holds weights of another architecture than this {name}"
                         f"{f' ({_few(args)})' if args else ''}: {'; '.join(parts)}")
    shared = [(target.index(c), source.index(c)) for c in target if c in source]
    dst, src = (torch.tensor(i) for i in zip(*shared)) if shared else (None, None)
    with torch.no_grad():  # state_dict() tensors share storage with the model's: copying into them sets it
        for k, v in own.items():
            if k not in axes:
                v.copy_(state[k])
            elif shared:
                v.index_copy_(axes[k], dst.to(v.device), state[k].index_select(axes[k], src.to(state[k].device)).to(v))
    return {"loaded": len(own) - len(axes), "reinitialised": len(axes), "reinitialised_tensors": sorted(axes),
            "class_rows": {"kept": [c for c in target if c in source], "new": [c for c in target if c not in source],
                           "dropped": [c for c in source if c not in target]} if axes else None}


def load_model(checkpoint_path, device="cpu") -> nn.Module:
    """Rebuild a model from a Trainer checkpoint with ``fercore.models.create_model``; eval mode."""
    from .models import create_model

    path = Path(checkpoint_path)
    ckpt = read_checkpoint(path, device)
    cfg = ckpt.get("config") or {}
    if not cfg.get("model_name"):
        raise ValueError(f"{checkpoint_path} does not name its model (config['model_name'] is missing): it was "
                         "trained on a model not built by fercore.models.create_model; build that model yourself "
                         "and load_state_dict(torch.load(path, weights_only=True)['model']).")
    try:
        model = create_model(cfg["model_name"], **cfg.get("model_kwargs", {}))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} names a model this fercore cannot build: {_first_line(err)}") from err
    load_weights(model, ckpt["model"], path)
    return model.to(device).eval()


def class_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy weights ``n / (K * n_k)`` (sklearn's "balanced"): every class weighs ``n / K`` in total.

    Hard labels are counted; soft targets ``(N, K)`` (FERPlus votes) add up their probabilities.
    ``K`` counts the classes present; an absent class gets weight 0, as there is nothing of it to weigh.
    """
    targets = torch.as_tensor(targets)
    if targets.ndim == 2:
        counts = targets.float().sum(0)
    else:
        counts = torch.bincount(targets.long(), minlength=num_classes).float()
    weights = counts.sum() / ((counts > 0).sum() * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def build_optimizer(model: nn.Module, recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer: ``adam``, ``adamw`` or ``sgd`` (Nesterov momentum)."""
    params, lr, wd = model.parameters(), recipe.lr, recipe.weight_decay
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=wd, nesterov=recipe.momentum > 0)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; valid: adam, adamw, sgd")


def build_scheduler(optimizer: torch.optim.Optimizer, recipe, mode: str = "max"):
    """The recipe's schedule: ``cosine`` over its epochs, ``plateau`` (halve the lr) or ``step`` (/10 at thirds)."""
    if recipe.scheduler is None:
        return None
    if recipe.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs)
    if recipe.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5,
                                                          patience=max(1, (recipe.patience or 6) // 3))
    if recipe.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, recipe.epochs // 3), gamma=0.1)
    raise ValueError(f"unknown scheduler {recipe.scheduler!r}; valid: None, cosine, plateau, step")
