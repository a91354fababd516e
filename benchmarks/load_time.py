"""FER2013 load time on real data: a first load that decodes, then a second that reads the cache.

    python benchmarks/load_time.py [--data-root PATH]

Prints one JSON object. Each split starts from its own empty temporary cache, so every first
load decodes the whole source (all usages, as the loader always does) and every second load
is a cache hit. A split the data lacks (PrivateTest in the image-folder copy) is reported with
its error message and the time the loader took to give it.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from fercore.data import load_dataset
from fercore.data.fer2013 import USAGES, locate_fer2013

REPO = Path(__file__).resolve().parents[1]


def timed_load(root: Path, split: str, cache_dir: str) -> dict:
    start = time.perf_counter()
    try:
        n = len(load_dataset("fer2013", root, split, cache_dir=cache_dir))
        return {"images": n, "seconds": round(time.perf_counter() - start, 3)}
    except ValueError as err:
        return {"error": str(err), "seconds": round(time.perf_counter() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("FERCORE_DATA", REPO.parent / "shared" / "data")),
                        help="folder holding FER2013 (default: $FERCORE_DATA or ../shared/data)")
    args = parser.parse_args()
    result = {"data_root": str(args.data_root), "source": str(locate_fer2013(args.data_root)),
              "cpu_count": os.cpu_count(), "splits": {}}
    for split in USAGES:
        with tempfile.TemporaryDirectory() as cache_dir:
            first = timed_load(args.data_root, split, cache_dir)
            second = timed_load(args.data_root, split, cache_dir)
        result["splits"][split] = {**{k: v for k, v in first.items() if k != "seconds"},
                                   "first_load_s": first["seconds"], "second_load_s": second["seconds"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
