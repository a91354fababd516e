import numpy as np

from fercore.data.cache import cached_arrays


def test_cache_round_trip_rebuilds_only_when_sources_change(tmp_path):
    source = tmp_path / "source.csv"
    source.write_text("a")
    calls = []

    def build():
        calls.append(1)
        return {"file": np.array(["x.png", "y.png"]), "images": np.arange(6, dtype=np.uint8).reshape(2, 3)}

    first = cached_arrays("t", [source], build, cache_dir=tmp_path / "cache")
    second = cached_arrays("t", [source], build, cache_dir=tmp_path / "cache")
    assert len(calls) == 1
    assert set(second) == {"file", "images"}
    assert (second["file"] == first["file"]).all() and (second["images"] == first["images"]).all()
    source.write_text("changed, so size and mtime differ")
    cached_arrays("t", [source], build, cache_dir=tmp_path / "cache")
    assert len(calls) == 2
    assert not list((tmp_path / "cache").glob("*.tmp"))
