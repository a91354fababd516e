"""The decode cache: keyed by content, one file per source, and a broken file rebuilt, not fatal."""
import os
import warnings
import zipfile

import numpy as np
import pytest

from fercore.data.cache import cached_arrays, fingerprint

KEYS = ("file", "images")


class Source:
    """A source file and a build function that counts its calls and returns the file's bytes."""

    def __init__(self, path, text="abc"):
        self.path, self.calls = path, 0
        path.write_text(text)

    def build(self):
        self.calls += 1
        data = np.frombuffer(self.path.read_bytes(), np.uint8)
        return {"file": np.array(["x.png", "y.png"]), "images": data.copy()}

    def load(self, cache, **kw):
        return cached_arrays("t", [self.path], self.build, cache_dir=cache, keys=KEYS, **kw)


def test_cache_round_trip_rebuilds_only_when_sources_change(tmp_path):
    cache = tmp_path / "cache"
    source = Source(tmp_path / "source.csv", "a")
    first = source.load(cache)
    second = source.load(cache)
    assert source.calls == 1
    assert set(second) == {"file", "images"}
    assert (second["file"] == first["file"]).all() and (second["images"] == first["images"]).all()
    source.path.write_text("changed, so size and mtime differ")
    source.load(cache)
    assert source.calls == 2
    assert not list(cache.glob("*.tmp"))


def test_same_size_and_restored_mtime_still_rebuilds(tmp_path):
    """Item 7 of issue 10: the key held path, size and mtime only, so this served the old bytes."""
    cache = tmp_path / "cache"
    source = Source(tmp_path / "source.csv", "abc")
    assert bytes(source.load(cache)["images"]) == b"abc"
    stat = source.path.stat()
    source.path.write_text("xyz")  # same size
    os.utime(source.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.path.stat().st_mtime_ns == stat.st_mtime_ns and source.path.stat().st_size == stat.st_size
    assert bytes(source.load(cache)["images"]) == b"xyz" and source.calls == 2


def test_a_new_cache_file_removes_only_the_superseded_one_of_its_source(tmp_path):
    cache = tmp_path / "cache"
    source = Source(tmp_path / "a.csv", "one")
    other_file = Source(tmp_path / "b.csv", "two")
    source.load(cache)
    source.load(cache, extra={"size": 64})  # other settings: another source, kept
    other_file.load(cache)  # another file, same tag: kept
    cached_arrays("u", [source.path], source.build, cache_dir=cache)  # another tag: kept
    (cache / "unrelated.npz").write_bytes(b"not ours")
    before = set(p.name for p in cache.iterdir())
    assert len(before) == 5
    old = cache / f"t-{fingerprint([source.path])}.npz"
    assert old.name in before
    source.path.write_text("uno")
    source.load(cache)
    after = set(p.name for p in cache.iterdir())
    assert after == before - {old.name} | {f"t-{fingerprint([source.path])}.npz"}


def test_cache_files_of_version_1_for_the_tag_are_removed_when_a_new_one_is_written(tmp_path):
    # Version 1 named files <tag>-<16 hex>.npz (size+mtime key); nothing reads them any more,
    # and each FER2013 one is 80-90 MB, so the first new write of that tag removes them.
    cache = tmp_path / "cache"
    cache.mkdir()
    legacy, other_tag = cache / "t-0123456789abcdef.npz", cache / "u-0123456789abcdef.npz"
    legacy.write_bytes(b"old")
    other_tag.write_bytes(b"old")
    Source(tmp_path / "a.csv").load(cache)
    assert not legacy.exists() and other_tag.exists()


def test_folder_sources_are_hashed_by_name_and_bytes(tmp_path):
    root = tmp_path / "data"
    (root / "happy").mkdir(parents=True)
    for name, text in (("happy/a.png", "aa"), ("happy/b.png", "bb")):
        (root / name).write_text(text)
    files = ["happy/a.png", "happy/b.png"]
    key = fingerprint(files, root=root)
    assert fingerprint(files, root=root) == key
    (root / "happy/a.png").write_text("ab")  # same size
    assert fingerprint(files, root=root) != key
    (root / "happy/a.png").write_text("aa")
    assert fingerprint(files, root=root) == key
    (root / "happy/a.png").rename(root / "happy/c.png")  # a renamed file is another source content
    assert fingerprint(["happy/b.png", "happy/c.png"], root=root) != key
    # The source part (before the dash) names the folder, not what it holds.
    assert fingerprint(["happy/b.png", "happy/c.png"], root=root).split("-")[0] == key.split("-")[0]


def _good_npz(path):
    np.savez(path, a_file=np.array(["x.png", "y.png"]), a_images=np.arange(4000, dtype=np.uint8))
    return path.read_bytes()


def _flip_byte(data: bytes) -> bytes:
    k = len(data) // 2
    return data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "flipped byte", "missing array", "npy file"])
def test_broken_cache_file_is_named_deleted_and_rebuilt(tmp_path, damage):
    """Item 8 of issue 10: a truncated, empty or corrupt cache broke every later load with a traceback."""
    cache = tmp_path / "cache"
    source = Source(tmp_path / "source.csv", "abc")
    source.load(cache)
    path = next(cache.glob("t-*.npz"))
    good = _good_npz(tmp_path / "good.npz")
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is no zip archive" * 10)
    elif damage == "flipped byte":
        path.write_bytes(_flip_byte(good))
    elif damage == "missing array":
        np.savez(path, a_file=np.array(["x.png"]))
    else:
        with open(path, "wb") as f:
            np.save(f, np.arange(3))
    with pytest.warns(UserWarning, match=f"{path}: unreadable cache file .*rebuilding from the sources") as caught:
        arrays = source.load(cache)
    assert len([w for w in caught if "unreadable cache" in str(w.message)]) == 1
    assert "\n" not in str(caught[0].message)
    assert bytes(arrays["images"]) == b"abc" and source.calls == 2
    assert [p.name for p in cache.iterdir()] == [path.name]  # rebuilt under the same name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bytes(source.load(cache)["images"]) == b"abc" and source.calls == 2  # and read back cleanly
    assert zipfile.is_zipfile(path)


def test_a_cache_that_cannot_be_written_warns_and_the_load_goes_on(tmp_path):
    source = Source(tmp_path / "source.csv", "abc")
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="cannot write this cache file"):
        assert bytes(source.load(blocked)["images"]) == b"abc"
    assert blocked.read_text() == "a file where the cache folder should be"
