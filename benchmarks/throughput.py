"""Trainer throughput beside the model's raw ceiling, measured in the same run.

    python benchmarks/throughput.py --model simple_cnn [--batch-size 64] [--images 2048] [--rounds 7] [--model-arg width=0.5]

Prints one JSON object. ``ceiling_img_per_s`` is the bare forward+backward+optimizer step
on a normalised float batch already in memory; ``trainer_img_per_s`` is an epoch of the
real ``Trainer.fit`` (uint8 -> float, the recipe's batched augmentation, normalisation,
progress bookkeeping) on FER2013-shaped data (N, 1, 48, 48). Target ratio on a CPU: >= 0.9.
A model that eats landmark regions (``--model prior_attention``) trains on what
``fercore.faces.regions.model_regions`` makes of those faces, as ``train`` does: the stacked
blocks (N, 2, 32, 32), cut once (at synthetic faces' landmarks; ``blocks_s`` is that time) before
either is timed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from fercore.cli import _key_values  # the parser train uses, so --model-arg reads the same
from fercore.data import FERDataset
from fercore.data.synthetic import render_faces
from fercore.faces.regions import model_regions
from fercore.labels import EMOTIONS_7
from fercore.models import create_model, get_model_info
from fercore.train import Trainer


def fer2013_shaped(n: int, seed: int = 0) -> FERDataset:
    """Random 48x48 grey faces with plausible 68 landmarks (the synthetic faces') for region models."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=g)
    landmarks = render_faces(n, size=48, seed=seed)["landmarks"]
    return FERDataset(images, torch.randint(0, 7, (n,), generator=g), EMOTIONS_7, {"landmarks": landmarks},
                      name="random", split="train")


class Ceiling:
    """The model's bare training step on one normalised float batch already in memory."""

    def __init__(self, name: str, batch_size: int, model_args: dict):
        self.model = create_model(name, **model_args).to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-3)
        c, h, w = self.model.default_cfg["input_size"]
        self.x = torch.randn(batch_size, c, h, w).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 7, (batch_size,))
        self.run(3)

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(self.x), self.y)
            # A model's own loss term (RAN's region-biased loss, Deep-Emotion's L2) is part of its step.
            penalty = getattr(self.model, "penalty", None)
            (loss + penalty() if callable(penalty) else loss).backward()
            self.opt.step()
        return steps * len(self.x) / (time.perf_counter() - start)


class TrainerRun:
    """The real Trainer with the recipe's augmentation: one more epoch per ``run``."""

    def __init__(self, name: str, recipe, data: FERDataset):
        model = create_model(name, **recipe.model_args)  # the recipe's width, as train builds it
        self.trainer = Trainer.from_recipe(model, recipe, device="cpu", out_dir=None, progress=False)
        self.data = data
        self.trainer.fit(data.subset(range(recipe.batch_size * 3)), None, epochs=1)  # warm-up

    def run(self) -> float:
        start = time.perf_counter()
        self.trainer.fit(self.data, None, epochs=self.trainer.epoch + 1)
        return len(self.data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--scale", default="standard", help="whose recipe (augmentation, batch size) to use")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                        help="overrides the recipe's model_args, as in train (e.g. width=0.25)")
    args = parser.parse_args()

    info = get_model_info(args.model)
    recipe = info.recipes[args.scale].with_overrides(batch_size=args.batch_size)
    try:
        model_args = _key_values(args.model_arg, "--model-arg")
    except ValueError as err:
        parser.error(str(err))
    recipe = recipe.with_args({"model_args": {**recipe.model_args, **model_args}})
    data = fer2013_shaped(args.images - args.images % recipe.batch_size)
    start = time.perf_counter()
    data = model_regions(data, info.default_cfg(), cache_dir=False, progress=False)  # as train does
    blocks_s = time.perf_counter() - start
    steps = len(data) // recipe.batch_size
    ceiling, trainer = Ceiling(args.model, recipe.batch_size, recipe.model_args), TrainerRun(args.model, recipe, data)
    # Alternate the two, so that a busy moment on the machine hits both alike; report medians.
    ceilings, trainers = [], []
    for _ in range(args.rounds):
        ceilings.append(ceiling.run(steps))
        trainers.append(trainer.run())
    ceil, train = statistics.median(ceilings), statistics.median(trainers)
    print(json.dumps({
        "model": args.model, "recipe": args.scale, "batch_size": recipe.batch_size, "images": len(data),
        "augment": recipe.augment, "model_args": recipe.model_args, "threads": torch.get_num_threads(), "input": list(data.images.shape[1:]),
        **({"regions": info.regions, "blocks_s": round(blocks_s, 3)} if info.regions else {}),
        "rounds": args.rounds, "trainer_img_per_s": round(train, 1), "ceiling_img_per_s": round(ceil, 1),
        "trainer_runs": [round(v, 1) for v in trainers], "ceiling_runs": [round(v, 1) for v in ceilings],
        "ratio": round(train / ceil, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
