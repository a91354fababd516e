"""Trainer: resume equals a straight run, selection on validation only, early stopping, NaN,
checkpoints, history files, TTA, a learnable toy problem, recipes, and DDP under torchrun."""
import csv
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from fercore.data.augment import BatchAugment, build_augment
from fercore.data.base import FERDataset
from fercore.models import create_model
from fercore.recipes import Recipe
from fercore.train import Trainer, load_model, resolve_device

REPO = Path(__file__).resolve().parents[1]
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "train_images", "img_per_s", "val_loss",
                   "val_accuracy", "val_macro_f1", "seconds", "is_best", "best_by"]


pytestmark = pytest.mark.usefixtures("one_thread")


def toy(n=200, seed=0, classes=4) -> FERDataset:
    """48x48 noise with a bright quadrant that says the class: easy, but needs the image to solve."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    images = torch.randint(0, 80, (n, 1, 48, 48), generator=g, dtype=torch.uint8)
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c, 2)
        images[i, 0, r * 24:(r + 1) * 24, q * 24:(q + 1) * 24] += 120
    return FERDataset(images, y, [f"c{i}" for i in range(classes)], name="toy")


def tiny_model(**kw):
    torch.manual_seed(0)
    return create_model("simple_cnn", num_classes=4, width=8, **kw)


def plain_model():
    """No batch norm and no dropout: a step is the same however a batch is split across processes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 4))
    model.default_cfg = {"input_size": (1, 48, 48), "mean": (0.5,), "std": (0.5,)}
    return model


def trainer(out_dir=None, model=None, **kw) -> Trainer:
    kw = {"device": "cpu", "batch_size": 32, "progress": False, **kw}  # CPU: bit-exact comparisons
    return Trainer(model or tiny_model(), out_dir=out_dir, **kw)


def snapshot(states: dict):
    """A callback that keeps a copy of the weights after every epoch."""
    return lambda t, record: states.__setitem__(t.epoch, {k: v.clone() for k, v in t.model.state_dict().items()})


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def scripted_validation(t: Trainer, key: str, values: list[float]) -> None:
    """Replace the monitored validation number by a scripted sequence, one value per epoch."""
    real = t.evaluate
    t.evaluate = lambda dataset, **kw: {**real(dataset, **kw), key: values[t.epoch]}


# ---------------------------------------------------------------- no side effects until fit
def test_constructing_a_trainer_leaves_the_global_rngs_and_the_process_group_alone(monkeypatch):
    model = tiny_model()
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    before = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():  # as torchrun sets them
        monkeypatch.setenv(key, value)
    for _ in range(2):  # e.g. a Trainer built only to evaluate, then another
        Trainer(model, device="cpu", seed=5, progress=False)
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2]) and torch.initial_seed() == 13
    assert not dist.is_initialized()


def test_fit_seeds_the_run_whatever_the_caller_did_after_building_the_trainer():
    a = trainer(seed=7)  # tiny_model has dropout: the global torch RNG shapes the run
    a.fit(toy(64), epochs=1)
    b = trainer(seed=7)
    torch.manual_seed(99)
    random.seed(99)
    b.fit(toy(64), epochs=1)
    assert same_weights(a.model.state_dict(), b.model.state_dict()) and torch.initial_seed() == 7


# ---------------------------------------------------------------- resume
def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path):
    train, val = toy(), toy(64, seed=1)

    def run(out_dir, epochs, resume=False):
        model = tiny_model()
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        aug = build_augment(crop_padding=3, hflip=True, erasing=0.5)  # draws from the trainer's generator
        t = trainer(out_dir, model, optimizer=opt, scheduler=sched, augment=aug)
        t.fit(train, val, epochs=epochs, resume=resume)
        return t

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)  # a new Trainer, a new model, state from last.pt
    assert resumed.epoch == 2 and [r["epoch"] for r in resumed.history] == [1, 2]
    assert same_weights(straight.model.state_dict(), resumed.model.state_dict())
    assert resumed.history[1]["train_loss"] == straight.history[1]["train_loss"]
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"] == 2e-3 / 4
    assert torch.equal(resumed.generator.get_state(), straight.generator.get_state())


def test_resume_true_without_a_checkpoint_starts_fresh_and_a_missing_path_is_an_error(tmp_path):
    t = trainer(tmp_path)
    assert len(t.fit(toy(64), epochs=1, resume=True)) == 1
    with pytest.raises(FileNotFoundError):
        trainer(tmp_path).fit(toy(64), epochs=2, resume=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="no out_dir"):
        trainer().fit(toy(64), epochs=1, resume=True)


# ---------------------------------------------------------------- selection, early stopping
@pytest.mark.parametrize("monitor, key, values, best, lrs", [
    ("val_accuracy", "accuracy", [0.3, 0.6, 0.9, 0.5, 0.4], 3, [1e-3] * 4 + [5e-4]),
    ("val_loss", "loss", [1.0, 0.4, 0.6, 0.8, 0.9], 2, [1e-3] * 3 + [5e-4, 2.5e-4]),
])
def test_best_checkpoint_is_chosen_on_validation_only(tmp_path, monitor, key, values, best, lrs):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mode = "min" if key == "loss" else "max"
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=0)
    states = {}
    t = trainer(tmp_path, model, optimizer=opt, scheduler=plateau, monitor=monitor, callbacks=[snapshot(states)])
    scripted_validation(t, key, values)
    t.fit(toy(96), toy(32, seed=1), epochs=5)
    assert t.mode == mode and t.best_epoch == best and t.best_metric == values[best - 1]
    assert [r["is_best"] for r in t.history] == [i + 1 <= best for i in range(5)]
    assert [r["lr"] for r in t.history] == pytest.approx(lrs)  # the plateau schedule saw the monitored metric
    best_ckpt = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best_ckpt["epoch"] == best and same_weights(best_ckpt["model"], states[best])
    assert not same_weights(best_ckpt["model"], states[5])  # not simply the last epoch
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 5
    t.load_best()
    assert same_weights(t.model.state_dict(), states[best])


def test_early_stopping_after_patience_epochs_without_improvement():
    t = trainer(patience=2)
    scripted_validation(t, "accuracy", [0.5, 0.7, 0.6, 0.7, 0.9, 0.95])  # 0.7 again is no improvement
    history = t.fit(toy(96), toy(32, seed=1), epochs=6)
    assert len(history) == 4 and t.epoch == 4 and t.stopped_early and t.best_epoch == 2


def test_resuming_a_run_that_stopped_early_trains_no_further(tmp_path):
    """--resume on a finished run (crossval --resume over its done folds) must not add epochs past the stop."""
    t = trainer(tmp_path, patience=2)
    scripted_validation(t, "accuracy", [0.5, 0.7, 0.6, 0.7, 0.9, 0.95])
    t.fit(toy(96), toy(32, seed=1), epochs=6)
    again = trainer(tmp_path, patience=2)
    scripted_validation(again, "accuracy", [0.99] * 6)  # would improve, if it trained
    history = again.fit(toy(96), toy(32, seed=1), epochs=6, resume=True)
    assert len(history) == 4 and again.epoch == 4 and again.stopped_early and again.best_epoch == 2


def test_monitor_must_be_a_validation_metric():
    with pytest.raises(ValueError, match=r"monitor must be one of .*validation only.*'train_loss'"):
        trainer(monitor="train_loss")


# ---------------------------------------------------------------- NaN
class NaNFromEpoch2Batch4(nn.Module):
    def __init__(self):
        super().__init__()
        self.trainer, self.calls = None, 0

    def forward(self, logits, y):
        loss = nn.functional.cross_entropy(logits, y)
        if self.trainer.epoch == 1:  # one epoch done: this is epoch 2
            self.calls += 1
            if self.calls >= 4:
                return loss * float("nan")
        return loss


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    loss, states = NaNFromEpoch2Batch4(), {}
    t = trainer(tmp_path, loss=loss, callbacks=[snapshot(states)])
    loss.trainer = t
    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 4 of 7; .*last\.pt still holds epoch 1"):
        t.fit(toy(), epochs=3)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and same_weights(last["model"], states[1])
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1


class PlusConstant(nn.Module):
    """Cross-entropy plus a constant: a finite loss as large as we like."""

    def __init__(self, constant):
        super().__init__()
        self.constant = constant

    def forward(self, logits, y):
        return nn.functional.cross_entropy(logits, y) + self.constant


def test_a_loss_that_explodes_without_nan_stops_like_a_nan(tmp_path):
    model = tiny_model()
    sgd = torch.optim.SGD(model.parameters(), lr=100, momentum=0.9)  # the run: loss 6e18, never NaN
    with pytest.raises(FloatingPointError, match=r"training loss exploded to \S+ \(over 10000 x log K = 13863\) "
                                                 r"at epoch 1, batch \d of 7\. Try a lower learning rate"):
        trainer(tmp_path, model, optimizer=sgd).fit(toy(), epochs=3)
    assert not (tmp_path / "last.pt").exists()
    # The bound is 1e4 x log K (13863 for K = 4): a loss of 10001 is bad but finite training, 20001 is not.
    assert trainer(loss=PlusConstant(1e4)).fit(toy(64), epochs=1)[0]["train_loss"] > 1e4
    with pytest.raises(FloatingPointError, match="exploded to 2e\\+04"):
        trainer(loss=PlusConstant(2e4)).fit(toy(64), epochs=1)


# ---------------------------------------------------------------- checkpoints, history, load_model
def test_checkpoint_loads_weights_only_and_load_model_rebuilds_the_model(tmp_path):
    train = toy()
    t = trainer(tmp_path, config={"dataset": "toy", "recipe": {"epochs": 1}})
    t.fit(train, toy(64, seed=1), epochs=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "best_metric", "best_epoch", "monitor", "mode",
            "history", "rng", "config"} <= set(ckpt)
    assert ckpt["config"]["model_name"] == "simple_cnn" and ckpt["config"]["model_kwargs"] == {"num_classes": 4, "width": 8}
    assert ckpt["config"]["classes"] == train.classes and ckpt["config"]["dataset"] == "toy"
    assert ckpt["config"]["default_cfg"]["input_size"] == [1, 48, 48]
    assert set(ckpt["rng"]) >= {"torch", "generator"}
    model = load_model(tmp_path / "best.pt")
    assert not model.training and same_weights(model.state_dict(), t.model.state_dict())
    images = train.images[:20]
    assert torch.allclose(trainer(model=model).predict_proba(images), t.predict_proba(images), atol=1e-6)


def test_load_model_names_a_checkpoint_without_a_model_name(tmp_path):
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    trainer(tmp_path, plain).fit(toy(32), epochs=1)
    with pytest.raises(ValueError, match=r"last\.pt does not name its model"):
        load_model(tmp_path / "last.pt")


def test_config_must_be_json_like():
    with pytest.raises(ValueError, match="JSON-like"):
        trainer(config={"recipe": Recipe(epochs=1)})


def test_history_files_and_no_validation_set(tmp_path):
    t = trainer(tmp_path, progress=True)
    history = t.fit(toy(), epochs=2)
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert list(rows[0]) == HISTORY_COLUMNS and [int(r["epoch"]) for r in rows] == [1, 2]
    assert json.loads((tmp_path / "history.json").read_text()) == history
    assert all(r["train_images"] == 200 and r["val_accuracy"] is None for r in history)
    assert all(r["best_by"] == "last epoch (no validation set)" and r["is_best"] for r in history)
    assert float(rows[1]["train_loss"]) == pytest.approx(history[1]["train_loss"])
    best, last = (torch.load(tmp_path / f, weights_only=True) for f in ("best.pt", "last.pt"))
    assert best["epoch"] == last["epoch"] == 2 and same_weights(best["model"], last["model"])


# ---------------------------------------------------------------- evaluation
def test_evaluate_and_predict_with_tta_and_a_smaller_model_input():
    model = tiny_model()
    model.default_cfg["input_size"] = (1, 40, 40)  # 48x48 images are centre-cropped (or ten-cropped) to 40
    t, data = trainer(model=model), toy(50)
    for tta in (None, "none", "flip", "ten_crop"):
        m = t.evaluate(data, tta=tta, batch_size=16)
        assert m["n"] == 50 and sum(map(sum, m["confusion"])) == 50
        assert 0 <= m["accuracy"] <= 1 and m["loss"] > 0 and len(m["per_class_recall"]) == 4
        p = t.predict_proba(data.images, tta=tta)
        assert p.shape == (50, 4) and torch.allclose(p.sum(1), torch.ones(50))
    # the views really are what they claim: centre 40x40, and flip = the mean of the logits of it and its mirror
    x = (data.images[:8, :, 4:44, 4:44].float() / 255 - 0.5) / 0.5
    model.eval()  # as predict_proba runs it (and then puts it back in the mode it was in)
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(-1))
    assert torch.allclose(t.predict_proba(data.images[:8]), plain.softmax(1), atol=1e-5)
    assert torch.allclose(t.predict_proba(data.images[:8], tta="flip"), ((plain + mirrored) / 2).softmax(1), atol=1e-5)
    with pytest.raises(ValueError, match="TTA mode"):
        t.evaluate(data, tta="five_crop")
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        t.predict_proba(data.images.float())


def test_learns_an_easy_problem_and_trains_with_soft_targets():
    train, val = toy(256), toy(128, seed=1)
    model = tiny_model()
    t = trainer(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=3e-3), batch_size=16)
    history = t.fit(train, val, epochs=4)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert t.best_metric > 0.8  # chance is 0.25
    # FERPlus-style vote targets (N, K) go through the same loss and metrics
    soft = FERDataset(train.images, nn.functional.one_hot(train.targets, 4) * 0.7 + 0.075, train.classes)
    record = trainer().fit(soft, soft, epochs=1)[0]
    assert record["train_loss"] > 0 and 0 <= record["val_accuracy"] <= 1


# ---------------------------------------------------------------- recipes
def test_from_recipe_builds_optimizer_schedule_augmentation_and_patience():
    recipe = Recipe(epochs=4, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
                    scheduler="cosine", patience=3, augment={"hflip": True, "crop_padding": 2})
    t = Trainer.from_recipe(tiny_model(), recipe, device="cpu", progress=False, config={"dataset": "toy"})
    assert isinstance(t.optimizer, torch.optim.SGD) and t.optimizer.param_groups[0]["lr"] == 0.1
    assert isinstance(t.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and t.scheduler.T_max == 4
    assert isinstance(t.augment, BatchAugment) and len(t.augment.ops) == 2
    assert t.patience == 3 and t.batch_size == 16
    assert t.config["recipe"] == json.loads(json.dumps(recipe.to_dict())) and t.config["dataset"] == "toy"
    plateau = Trainer.from_recipe(tiny_model(), Recipe(epochs=2, scheduler="plateau"), monitor="val_loss", progress=False)
    assert plateau.scheduler.mode == "min" and plateau.augment is None
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        Trainer.from_recipe(tiny_model(), Recipe(epochs=1, optimizer="lamb"))


# ---------------------------------------------------------------- DDP
def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("torchrun")
    if not exe.exists():
        pytest.skip(f"torchrun not found beside {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(exe), "--standalone", "--nproc_per_node=2", *map(str, args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


RUN_FILES = ["best.pt", "history.csv", "history.json", "last.pt"]


@pytest.mark.slow
def test_ddp_two_cpu_processes_under_torchrun(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    log.mkdir()
    torchrun(REPO / "tests" / "ddp_worker.py", out, log)
    result = json.loads((log / "result.json").read_text())
    assert result["world_size"] == 2 and result["max_weight_difference_between_ranks"] == 0  # buffers too
    assert result["val_n"] == 63  # every validation image counted once, the odd one too
    assert "sync_bn=True: torch's SyncBatchNorm runs on GPUs only" in result["sync_bn"]
    writes = {r: json.loads((log / f"writes_rank{r}.json").read_text()) for r in (0, 1)}
    assert writes[1] == []  # rank 1 wrote nothing
    for name in ("aug", "exact"):
        assert sorted(p.name for p in (out / name).iterdir()) == RUN_FILES  # one set, no temp files left behind
        assert sorted({w for w in writes[0] if w.startswith(name + "/")}) == [f"{name}/{f}" for f in RUN_FILES]
    ckpt = torch.load(out / "aug" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and [r["train_images"] for r in ckpt["history"]] == [200, 200]

    # Two processes of 16 images per step = one process of 32: DDP averages the two halves' gradients,
    # which is the gradient of the mean loss over the 32. Not bit-exact: the sums are added in another
    # order (and Adam divides by sqrt of tiny second moments), so it agrees to float tolerance. Exact
    # needs no augmentation (each rank draws its own), no dropout (likewise) and no batch norm (each
    # rank normalises with its own 16 images' statistics; SyncBatchNorm would fix that, on GPUs only).
    single = trainer(tmp_path / "single", plain_model(), batch_size=32)
    single.fit(toy(200), toy(63, seed=1), epochs=2)
    ddp = torch.load(out / "exact" / "last.pt", weights_only=True)
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-5)
    for a, b in zip(ddp["history"], single.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5) and a["val_accuracy"] == b["val_accuracy"]


@pytest.mark.slow
def test_train_command_under_torchrun_writes_one_run(tmp_path):
    out = tmp_path / "run"
    proc = torchrun("-m", "fercore", "train", "--model", "simple_cnn", "--dataset", "synthetic", "--scale", "smoke",
                    "--epochs", "2", "--out", out, "--quiet")
    json.loads(proc.stdout)  # one metrics JSON on stdout (rank 0's), not one per rank
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES + ["metrics.json"])  # no temp or lock files
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and [r["train_images"] for r in metrics["history"]] == [3500, 3500]
    assert metrics["history"] == json.loads((out / "history.json").read_text())
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == metrics["best_epoch"] and metrics["val"]["n"] == 700


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_with_amp_trains_resumes_and_loads_on_cpu(tmp_path):
    t = trainer(tmp_path, device="cuda", augment=build_augment(crop_padding=2, hflip=True))
    assert t.amp_dtype in (torch.bfloat16, torch.float16)
    t.fit(toy(), toy(64, seed=1), epochs=1)
    resumed = trainer(tmp_path, device="cuda")
    history = resumed.fit(toy(), toy(64, seed=1), epochs=2, resume=True)
    assert [r["epoch"] for r in history] == [1, 2] and all(r["train_loss"] < 10 for r in history)
    model = load_model(tmp_path / "last.pt", device="cpu")
    assert same_weights(model.state_dict(), {k: v.cpu() for k, v in resumed.model.state_dict().items()})


def test_load_model_names_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt is not a checkpoint fercore can read"):
        load_model(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a fercore Trainer checkpoint"):
        load_model(tmp_path / "other.pt")
    torch.save({"model": {}, "callback": print}, tmp_path / "code.pt")  # a pickle that names a function
    with pytest.raises(ValueError, match="holds Python objects besides tensors") as err:
        load_model(tmp_path / "code.pt")
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)  # never the advice to run its code
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="noise.pt is not a checkpoint fercore can read"):
        load_model(tmp_path / "noise.pt")


def test_checkpoints_carry_a_format_version_and_an_unknown_one_is_refused(tmp_path):
    trainer(tmp_path).fit(toy(64), epochs=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["format_version"] == 1
    torch.save({**ckpt, "format_version": 99}, tmp_path / "future.pt")
    for load in (load_model, lambda path: trainer(tmp_path).fit(toy(64), epochs=2, resume=path)):
        with pytest.raises(ValueError, match=r"future\.pt has checkpoint format_version 99, but this fercore reads "
                                             r"version 1 only"):
            load(tmp_path / "future.pt")


def one_line_error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_truncated_foreign_and_wrong_architecture_checkpoints_are_one_line_errors(tmp_path):
    trainer(tmp_path).fit(toy(64), epochs=1)
    last = tmp_path / "last.pt"
    data = last.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    ckpt = torch.load(last, weights_only=True)
    ckpt["config"]["model_kwargs"]["width"] = 16  # the file's weights are width 8
    torch.save(ckpt, tmp_path / "wide.pt")

    def resume(path, model=None):
        return lambda: trainer(tmp_path / "new", model).fit(toy(64), epochs=2, resume=path)

    for call in (lambda: load_model(tmp_path / "half.pt"), resume(tmp_path / "half.pt")):
        assert "half.pt is not a checkpoint fercore can read, or is truncated" in one_line_error(call)
    for call in (lambda: load_model(tmp_path / "other.pt"), resume(tmp_path / "other.pt")):
        assert "other.pt is not a fercore Trainer checkpoint" in one_line_error(call)
    shapes = (r"holds weights for another architecture than simple_cnn\(\{'num_classes': 4, 'width': 16\}\): "
              r"shapes differ: features\.0\.0\.weight \[8, 1, 3, 3\] in the file, \[16, 1, 3, 3\] in the model, .* and \d+ more")
    assert re.search("wide.pt " + shapes, one_line_error(lambda: load_model(tmp_path / "wide.pt")))
    wider = create_model("simple_cnn", num_classes=4, width=16)
    assert re.search("last.pt " + shapes, one_line_error(resume(last, wider)))
    t = trainer(tmp_path, wider)
    assert re.search("best.pt " + shapes, one_line_error(t.load_best))
    torch.save({"model": ckpt["model"]}, tmp_path / "weights_only.pt")
    assert "weights_only.pt lacks optimizer, scheduler" in one_line_error(resume(tmp_path / "weights_only.pt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_device_the_machine_lacks_is_a_clear_error():
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"device '{device}' was asked for, but this machine has no usable CUDA GPU"):
            resolve_device(device)
    with pytest.raises(ValueError, match="unknown device 'gpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")


def test_checkpoints_and_history_go_through_the_one_atomic_writer(tmp_path, monkeypatch):
    from fercore import runs

    written, real = [], runs.atomic_write
    monkeypatch.setattr(runs, "atomic_write", lambda path, data: (written.append(Path(path).name), real(path, data)))
    trainer(tmp_path).fit(toy(64), epochs=2)
    assert sorted(written) == sorted(["last.pt", "best.pt", "history.json", "history.csv"] * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(written))  # nothing written another way


# ---------------------------------------------------------------- class imbalance
def test_class_weights_balance_hard_and_soft_targets():
    from fercore.train import class_weights
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)  # class 3 absent
    w = class_weights(y, 4)
    # n / (K * n_k) = 10 / (3 * [6, 3, 1]), K counting the 3 classes present; an absent class weighs 0
    assert torch.allclose(w, torch.tensor([10 / 18, 10 / 9, 10 / 3, 0.0]))
    assert torch.allclose((w * torch.bincount(y, minlength=4)).sum(), torch.tensor(10.0))  # total weight kept
    soft = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])  # counts 1.5, 0.5, 0
    assert torch.allclose(class_weights(soft, 3), torch.tensor([2 / 3, 2 / 1, 0.0]))


def test_recipe_class_weights_reach_the_loss_and_need_the_training_set():
    data = toy(60, classes=4)
    recipe = Recipe(epochs=1, class_weights="balanced")
    t = Trainer.from_recipe(tiny_model(), recipe, data, device="cpu", progress=False)
    counts = torch.bincount(data.targets, minlength=4).float()
    assert torch.allclose(t.loss.weight, 60 / (4 * counts))
    logits, y = torch.randn(5, 4), data.targets[:5]
    expected = (t.loss.weight[y] * nn.functional.cross_entropy(logits, y, reduction="none")).sum() / t.loss.weight[y].sum()
    assert torch.allclose(t.loss(logits, y), expected)
    assert Trainer.from_recipe(tiny_model(), Recipe(epochs=1), data, progress=False).loss.weight is None
    with pytest.raises(ValueError, match="pass the training set"):
        Trainer.from_recipe(tiny_model(), recipe, progress=False)


def test_recipe_with_args_replaces_fields_and_single_augment_options():
    base = Recipe(epochs=3, augment={"hflip": True, "rotate": 10.0})
    r = base.with_args({"class_weights": "balanced", "augment.rotate": 0, "lr": 0.01})
    assert r.class_weights == "balanced" and r.lr == 0.01 and r.augment == {"hflip": True, "rotate": 0}
    assert base.augment == {"hflip": True, "rotate": 10.0}  # the registered recipe is not changed
    assert base.with_args({"augment": {}}).augment == {}
    assert r.with_args({"class_weights": "none"}).class_weights is None
    with pytest.raises(ValueError, match="unknown recipe field 'lrate'.*valid: .*class_weights"):
        base.with_args({"lrate": 1})
    with pytest.raises(ValueError, match="class_weights must be one of"):
        base.with_args({"class_weights": "inverse"})
    with pytest.raises(ValueError, match="'lr' is not a dict"):
        base.with_args({"lr.x": 1})
