"""What each model costs per face: parameters, FLOPs and CPU latency (fercore.compare.model_cost).

    python benchmarks/cost.py [--scale standard] [--repeats 50] [--only MODEL ...]

Prints one JSON object: per model, built with its ``--scale`` recipe's model arguments (the width
and crop size the stored runs used), batch 1, on this machine's CPU with its threads. Latency
is a wall-clock figure: measure it alone, with nothing else on the cores.
"""
from __future__ import annotations

import argparse
import json

import torch

from fercore.compare import recipe_cost
from fercore.models import list_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="standard", choices=("smoke", "standard", "full"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", nargs="+", default=None, metavar="MODEL")
    args = parser.parse_args()
    models = {name: recipe_cost(name, args.scale, args.repeats) for name in args.only or list_models()}
    print(json.dumps({"scale": args.scale, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "models": models}, indent=2))


if __name__ == "__main__":
    main()
