"""FER2013 load time on real data: a first load that decodes, then cached loads of every split.

    python benchmarks/load_time.py [--data-root PATH] [--repeat N]

Prints one JSON object. The first load starts from an empty temporary cache and decodes the
whole source (all usages, as the loader always does); then each split is loaded ``--repeat``
times from that cache, and the slowest and fastest times are reported. A cached load lists the
files and hashes every byte of them (the cache key, fercore.data.cache), then reads one .npz.
A split the data lacks (PrivateTest in the image-folder copy) is reported with its error
message and the time the loader took to give it.
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
    parser.add_argument("--repeat", type=int, default=3, help="cached loads per split (default 3)")
    args = parser.parse_args()
    result = {"data_root": str(args.data_root), "source": str(locate_fer2013(args.data_root)),
              "cpu_count": os.cpu_count(), "first_load_s": None, "splits": {}}
    with tempfile.TemporaryDirectory() as cache_dir:
        result["first_load_s"] = timed_load(args.data_root, "train", cache_dir)["seconds"]
        for split in USAGES:
            runs = [timed_load(args.data_root, split, cache_dir) for _ in range(max(1, args.repeat))]
            seconds = [r.pop("seconds") for r in runs]
            result["splits"][split] = {**runs[0], "cached_load_s": max(seconds), "fastest_cached_load_s": min(seconds)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
