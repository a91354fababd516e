"""Trainer: fit, evaluate, checkpoints, resume, history, in one loop you can read in a sitting.

The data path is the point (DESIGN.md, principle 1): a dataset's uint8 ``images`` and its
``targets`` move to the device once; each batch is indexed there, scaled to [0, 1],
augmented as a whole batch, centre-cropped to the model's input size, normalised and fed to
the model. No DataLoader workers, no per-sample Python.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same code runs with DistributedDataParallel: each
process trains on a disjoint share of every epoch's permutation, metrics are summed across
processes, and only rank 0 writes files and shows progress bars.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from .data.augment import build_augment, center_crop, tta_views
from .metrics import confusion_matrix, metrics_from_confusion

MONITORS = ("val_accuracy", "val_macro_f1", "val_loss")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` picks this process's GPU when there is one (``LOCAL_RANK`` under torchrun), else the CPU."""
    if device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, then rename: a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Trainer:
    """Train and evaluate ``model`` on ``FERDataset``s; see ``fit``, ``evaluate``, ``predict_proba``.

    ``monitor`` names the validation metric that picks ``best.pt`` and drives early stopping
    and ``ReduceLROnPlateau``; ``mode=None`` means ``"min"`` for losses, else ``"max"``.
    ``callbacks`` are called as ``cb(trainer, record)`` after each epoch (rank 0 only).
    ``config`` (JSON-like values) is stored in every checkpoint beside the model's name.
    """

    sync_every = 20  # batches between host syncs (NaN check, progress bar): fewer syncs keep a GPU busy

    def __init__(self, model: nn.Module, loss=None, optimizer=None, scheduler=None, augment=None, device="auto", *,
                 out_dir=None, batch_size=64, eval_batch_size=512, monitor="val_accuracy", mode=None, patience=None,
                 amp=True, seed=0, channels_last=True, progress=True, callbacks=(), config=None):
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS} (checkpoints are chosen on validation only), got {monitor!r}")
        self.world, self.rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
        self.device = resolve_device(device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.world > 1 and self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.seed = seed
        seed_everything(seed + self.rank)  # ranks differ in dropout and augmentation, not in the permutation
        self.model = model.to(self.device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        self.net = nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
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
        self.input_hw = tuple(cfg["input_size"][-2:]) if "input_size" in cfg else None
        self.mean = torch.tensor(cfg.get("mean", (0.5,)), device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.5,)), device=self.device).view(1, -1, 1, 1)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.monitor, self.mode, self.patience = monitor, mode or ("min" if "loss" in monitor else "max"), patience
        self.channels_last, self.callbacks = channels_last, list(callbacks)
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

        ``train`` (the training set) is needed only when the recipe weights the classes.
        """
        if recipe.augment and "augment" not in kw:
            kw["augment"] = build_augment(**recipe.augment)
        if recipe.class_weights and "loss" not in kw:
            if train is None:
                raise ValueError("this recipe weights the classes (class_weights="
                                 f"{recipe.class_weights!r}): pass the training set as from_recipe(..., train=...)")
            kw["loss"] = nn.CrossEntropyLoss(weight=class_weights(train.targets, train.num_classes))
        kw.setdefault("batch_size", recipe.batch_size)
        kw.setdefault("patience", recipe.patience)
        kw.setdefault("monitor", recipe.monitor)
        kw["config"] = {"recipe": recipe.to_dict(), **(kw.get("config") or {})}
        trainer = cls(model, optimizer=build_optimizer(model, recipe), **kw)
        trainer.scheduler = build_scheduler(trainer.optimizer, recipe, trainer.mode)
        return trainer

    # ---------------------------------------------------------------- data path
    def _prepare(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """uint8 batch on the device -> the model's input: [0, 1], augmented (train), cropped, normalised."""
        x = x.float().div_(255)
        if train and self.augment is not None:
            x = self.augment(x, generator=self.generator)
        if self.input_hw and tuple(x.shape[-2:]) != self.input_hw:
            x = center_crop(x, self.input_hw[0])
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    # ---------------------------------------------------------------- training
    def _train_epoch(self, images: torch.Tensor, targets: torch.Tensor) -> dict:
        self.net.train()
        n = len(images)
        # The permutation depends on (seed, epoch) only, like DistributedSampler.set_epoch: every rank
        # draws the same one and takes every world-th index (a tail of < world images sits out).
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).to(self.device)
        batches = perm[: n - n % self.world][self.rank::self.world].split(self.batch_size)
        losses = torch.zeros(len(batches), device=self.device)
        correct = torch.zeros((), device=self.device)
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.show)
        for b, idx in enumerate(bar):
            x, y = self._prepare(images[idx], train=True), targets[idx]
            with self._autocast():
                logits = self.net(x)
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
            if (b + 1) % self.sync_every == 0 or b + 1 == len(batches):
                bad = (~torch.isfinite(losses[: b + 1])).nonzero()
                if len(bad):
                    saved = f"; {self.out_dir / 'last.pt'} still holds epoch {self.epoch}" if self.out_dir and self.epoch else ""
                    raise FloatingPointError(
                        f"non-finite training loss ({losses[bad[0, 0]].item()}) at epoch {self.epoch + 1}, batch "
                        f"{bad[0, 0].item() + 1} of {len(batches)}{saved}. "
                        "Try a lower learning rate, amp=False, or check the data and the loss.")
                bar.set_postfix(loss=f"{losses[b].item():.3f}")
        sizes = torch.tensor([len(i) for i in batches], device=self.device, dtype=torch.float)
        totals = self._all_reduce(torch.stack([(losses * sizes).sum(), correct.float(), sizes.sum()]))
        return {"train_loss": (totals[0] / totals[2]).item(), "train_accuracy": (totals[1] / totals[2]).item(),
                "train_images": int(totals[2].item())}

    def fit(self, train, val=None, epochs: int = 1, resume: bool | str | Path = False) -> list[dict]:
        """Train until ``epochs`` epochs in total are done (or early stopping); return the history.

        ``resume=True`` continues from ``out_dir/last.pt`` when it exists (else starts fresh);
        a path resumes from that checkpoint. ``best.pt`` is the epoch with the best
        ``monitor`` on ``val``; without ``val`` it is simply the last epoch.
        """
        if resume is True and self.out_dir is None:
            raise ValueError("resume=True reads out_dir/last.pt, but this Trainer has no out_dir")
        if resume:
            path = self.out_dir / "last.pt" if resume is True else Path(resume)
            if resume is not True or path.exists():
                self._load(path)
        self.config["classes"], self.stopped_early = list(train.classes), False
        images, targets = train.images.to(self.device), train.targets.to(self.device)
        epoch_bar = tqdm(range(self.epoch, epochs), desc="fit", disable=not self.show)
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
            if val is not None and self.patience and self.epoch - self.best_epoch >= self.patience:
                self.stopped_early = True
                break
        return self.history

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _logits(self, images: torch.Tensor, tta=None, batch_size=None) -> torch.Tensor:
        """Float logits ``(N, K)`` of uint8 ``images``; TTA views are combined by averaging logits."""
        self.model.eval()
        out = []
        for chunk in images.split(batch_size or self.eval_batch_size):
            views = tta_views(chunk.to(self.device), tta, self.input_hw[0] if self.input_hw else None)  # (B, V, C, s, s)
            with self._autocast():
                logits = self.model(self._prepare(views.flatten(0, 1)))
            out.append(logits.float().view(len(chunk), views.shape[1], -1).mean(1))
        return torch.cat(out)

    def evaluate(self, dataset, tta=None, batch_size=None) -> dict:
        """``classification_metrics`` of ``dataset`` plus its mean ``loss`` (summed across ranks)."""
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
        """Class probabilities ``(N, K)`` (CPU float) of uint8 images ``(N, C, H, W)``."""
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images (N, C, H, W) with values 0..255, got {images.dtype} {tuple(images.shape)}")
        return self._logits(images, tta, batch_size).softmax(1).cpu()

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """The checkpoint: one self-describing dict that loads with ``torch.load(weights_only=True)``."""
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "monitor": self.monitor, "mode": self.mode,
                "history": self.history, "rng": rng, "config": self.config}

    def _write(self, improved: bool) -> None:
        """last.pt every epoch, best.pt when the monitored metric improved, history as CSV and JSON."""
        if self.out_dir is None or self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        _atomic_write(self.out_dir / "last.pt", buf.getvalue())
        if improved:
            _atomic_write(self.out_dir / "best.pt", buf.getvalue())
        _atomic_write(self.out_dir / "history.json", json.dumps(self.history, indent=1).encode())
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(self.history[0]))
        writer.writeheader()
        writer.writerows(self.history)
        _atomic_write(self.out_dir / "history.csv", text.getvalue().encode())

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
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
        self.model.load_state_dict(torch.load(self.out_dir / "best.pt", map_location=self.device, weights_only=True)["model"])
        return self.model


def load_model(checkpoint_path, device="cpu") -> nn.Module:
    """Rebuild a model from a Trainer checkpoint with ``fercore.models.create_model``; eval mode."""
    from .models import create_model

    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle, zip and weights-only errors all mean: not our file
        raise ValueError(f"{path} is not a checkpoint fercore can read ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a fercore Trainer checkpoint: it has no 'model' entry")
    cfg = ckpt.get("config") or {}
    if not cfg.get("model_name"):
        raise ValueError(f"{checkpoint_path} does not name its model (config['model_name'] is missing): it was "
                         "trained on a model not built by fercore.models.create_model; build that model yourself "
                         "and load_state_dict(torch.load(path, weights_only=True)['model']).")
    model = create_model(cfg["model_name"], **cfg.get("model_kwargs", {}))
    model.load_state_dict(ckpt["model"])
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
