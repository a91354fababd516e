"""How fast the offline synthetic faces are drawn (single process, CPU).

    python benchmarks/synthetic_speed.py [--n 2000] [--repeats 3]

Prints one JSON object: faces per second for 48 px grey and 128 px RGB faces, the best of
``--repeats`` runs of ``render_faces(n)`` each (all of it: sampling, geometry, drawing,
lighting and noise).
"""
from __future__ import annotations

import argparse
import json
import time

from fercore.data.synthetic import render_faces


def faces_per_second(n: int, repeats: int, **kw) -> float:
    render_faces(64, **kw)  # warm up (imports, caches)
    best = float("inf")
    for seed in range(repeats):
        start = time.perf_counter()
        render_faces(n, seed=seed, **kw)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="faces per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest counts")
    args = parser.parse_args()
    print(json.dumps({
        "faces_per_s_48_gray": round(faces_per_second(args.n, args.repeats, size=48), 1),
        "faces_per_s_128_rgb": round(faces_per_second(args.n, args.repeats, size=128, rgb=True), 1),
        "n": args.n,
    }))


if __name__ == "__main__":
    main()
