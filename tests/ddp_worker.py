"""Run by tests/test_train.py under ``torchrun --nproc_per_node=2``: two CPU processes (gloo).

Trains two epochs with DistributedDataParallel, then rank 0 writes ``result.json`` in the
folder given as the first argument: how many processes took part, how far the ranks' weights
drifted apart (DDP keeps them equal) and how many validation images were counted.
"""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import tiny_model, toy  # noqa: E402

from fercore.train import Trainer  # noqa: E402

out_dir = Path(sys.argv[1])
trainer = Trainer(tiny_model(), device="cpu", out_dir=out_dir, batch_size=32, progress=False)
trainer.fit(toy(200), toy(63, seed=1), epochs=2)
flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
low, high = flat.clone(), flat.clone()
dist.all_reduce(low, op=dist.ReduceOp.MIN)
dist.all_reduce(high, op=dist.ReduceOp.MAX)
val_n = trainer.evaluate(toy(63, seed=1))["n"]
if dist.get_rank() == 0:
    result = {"world_size": dist.get_world_size(), "max_weight_difference_between_ranks": (high - low).abs().max().item(),
              "val_n": val_n}
    (out_dir / "result.json").write_text(json.dumps(result))
dist.destroy_process_group()
