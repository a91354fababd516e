"""Trainer throughput beside the model's raw ceiling, measured in the same run.

    python benchmarks/throughput.py --model simple_cnn [--batch-size 64] [--images 4096]

Prints one JSON object. ``ceiling_img_per_s`` is the bare forward+backward+optimizer step
on a normalised float batch already in memory; ``trainer_img_per_s`` is one epoch of the
real ``Trainer.fit`` (uint8 -> float, the recipe's batched augmentation, normalisation,
progress bookkeeping) on FER2013-shaped data (N, 1, 48, 48). Target ratio on a CPU: >= 0.9.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fercore.data import FERDataset
from fercore.labels import EMOTIONS_7
from fercore.models import create_model, get_model_info
from fercore.train import Trainer


def fer2013_shaped(n: int, seed: int = 0) -> FERDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=g)
    return FERDataset(images, torch.randint(0, 7, (n,), generator=g), EMOTIONS_7, name="random", split="train")


def ceiling(name: str, batch_size: int, steps: int) -> float:
    model = create_model(name).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    c, h, w = model.default_cfg["input_size"]
    x = torch.randn(batch_size, c, h, w).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def trainer_rate(name: str, recipe, data: FERDataset) -> float:
    model = create_model(name)
    trainer = Trainer.from_recipe(model, recipe, device="cpu", out_dir=None, progress=False)
    trainer.fit(data.subset(range(recipe.batch_size * 3)), None, epochs=1)  # warm-up
    trainer = Trainer.from_recipe(create_model(name), recipe, device="cpu", out_dir=None, progress=False)
    start = time.perf_counter()
    trainer.fit(data, None, epochs=1)
    return len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--scale", default="standard", help="whose recipe (augmentation, batch size) to use")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--images", type=int, default=4096)
    args = parser.parse_args()

    recipe = get_model_info(args.model).recipes[args.scale].with_overrides(batch_size=args.batch_size)
    data = fer2013_shaped(args.images - args.images % recipe.batch_size)
    steps = len(data) // recipe.batch_size
    ceil_before = ceiling(args.model, recipe.batch_size, steps)
    trainer = trainer_rate(args.model, recipe, data)
    ceil_after = ceiling(args.model, recipe.batch_size, steps)
    ceil = max(ceil_before, ceil_after)  # the better of two, so noise cannot flatter the ratio
    print(json.dumps({
        "model": args.model, "recipe": args.scale, "batch_size": recipe.batch_size, "images": len(data),
        "augment": recipe.augment, "threads": torch.get_num_threads(),
        "trainer_img_per_s": round(trainer, 1), "ceiling_img_per_s": round(ceil, 1),
        "ceiling_runs_img_per_s": [round(ceil_before, 1), round(ceil_after, 1)],
        "ratio": round(trainer / ceil, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
