"""Run by tests/test_train.py under ``torchrun --nproc_per_node=2``: two CPU processes (gloo).

``python ddp_worker.py OUT LOG`` trains twice for two epochs with DistributedDataParallel:

* ``OUT/aug``: ``tiny_model`` (batch norm, dropout) with augmentation, 32 images per process
  and step: the ranks' dropout and augmentation differ, their weights must not;
* ``OUT/exact``: ``plain_model`` (no batch norm, no dropout), no augmentation, 16 images per
  process and step, for the test to compare with one process taking 32 per step.

Every file write (``fercore.runs.atomic_write``) is logged as ``LOG/writes_rank<R>.json``;
rank 0 writes ``LOG/result.json``: the world size, how far the ranks' weights and buffers
drifted apart, how many validation images were counted, and what ``sync_bn=True`` said on a CPU.
"""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import plain_model, tiny_model, toy  # noqa: E402

from fercore import runs  # noqa: E402
from fercore.data.augment import build_augment  # noqa: E402
from fercore.train import Trainer  # noqa: E402

out_dir, log_dir = Path(sys.argv[1]), Path(sys.argv[2])
written, real_write = [], runs.atomic_write


def logged_write(path, data):
    written.append(str(Path(path).relative_to(out_dir)))
    real_write(path, data)


runs.atomic_write = logged_write
train, val = toy(200), toy(63, seed=1)
spread = 0.0
for name, model, batch, augment in [("aug", tiny_model(), 32, build_augment(crop_padding=3, hflip=True)),
                                    ("exact", plain_model(), 16, None)]:
    trainer = Trainer(model, device="cpu", out_dir=out_dir / name, batch_size=batch, augment=augment, progress=False)
    trainer.fit(train, val, epochs=2)
    flat = torch.cat([t.detach().float().flatten() for t in trainer.model.state_dict().values()])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    spread = max(spread, (high - low).abs().max().item())
val_n = trainer.evaluate(val)["n"]
try:  # torch's SyncBatchNorm has no CPU kernels: asking for it here must say so, on every rank alike
    Trainer(tiny_model(), device="cpu", sync_bn=True, progress=False).fit(toy(8), epochs=1)
    sync_bn = "trained"
except ValueError as err:
    sync_bn = str(err)
rank = dist.get_rank()
(log_dir / f"writes_rank{rank}.json").write_text(json.dumps(written))
if rank == 0:
    result = {"world_size": dist.get_world_size(), "max_weight_difference_between_ranks": spread, "val_n": val_n,
              "sync_bn": sync_bn}
    (log_dir / "result.json").write_text(json.dumps(result))
dist.destroy_process_group()
