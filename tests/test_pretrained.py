"""Shipped weights: export to fp16, sha256 on load, create_model(pretrained=True), download, predict's default."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from fercore import pretrained
from fercore.cli import main
from fercore.data.download import DownloadError
from fercore.labels import EMOTIONS_7
from fercore.models import create_model
from fercore.predict import SAMPLE_PHOTO, predict_image
from fercore.train import Trainer, read_checkpoint
from tests.http_helpers import serve_folder

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path):
    """A run folder as train leaves it: best.pt (an untrained simple_cnn, saved as the Trainer saves) + metrics.json."""
    model = create_model("simple_cnn")
    with torch.no_grad():  # batch-norm statistics away from 0 and 1, so that loading them is tested too
        for name, buf in model.named_buffers():
            if "running" in name:
                buf.uniform_(0.5, 1.5)
    trainer = Trainer(model, device="cpu", progress=False)
    trainer.config["classes"] = list(EMOTIONS_7)
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(trainer.state_dict(), folder / "best.pt")
    (folder / "metrics.json").write_text('{"test": {"accuracy": 0.5}}\n')
    return folder


@pytest.fixture
def registered(run, tmp_path, monkeypatch):
    """The run exported into a temp weights folder and registered as simple_cnn's (and predict's default)."""
    weights = tmp_path / "weights"
    info = pretrained.export_pretrained(run / "best.pt", "simple_cnn_synthetic", weights)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", "simple_cnn")
    monkeypatch.setattr(pretrained, "PRETRAINED", {"simple_cnn": {"file": "simple_cnn_synthetic.pt", "sha256": info["sha256"],
                                                                  "metrics": "simple_cnn_synthetic.json", "url": None}})
    return weights / "simple_cnn_synthetic.pt"


def test_export_writes_fp16_weights_and_metadata_only(run, tmp_path):
    info = pretrained.export_pretrained(run / "best.pt", "tiny", tmp_path / "w")
    out = tmp_path / "w" / "tiny.pt"
    assert info["file"] == str(out) and info["bytes"] == out.stat().st_size and info["fits_in_package"]
    assert info["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    entry = {"file": "tiny.pt", "sha256": info["sha256"], "metrics": "tiny.json", "url": None}
    assert info["register"] == f"'simple_cnn': {entry!r},"  # a line to paste into PRETRAINED
    assert (tmp_path / "w" / "tiny.json").read_bytes() == (run / "metrics.json").read_bytes()
    ckpt = read_checkpoint(out)  # the one checkpoint reader reads it
    original = read_checkpoint(run / "best.pt")
    assert {"optimizer", "scheduler", "rng", "history"}.isdisjoint(ckpt)
    assert ckpt["config"] == original["config"] and ckpt["format_version"] == original["format_version"]
    assert {v.dtype for v in ckpt["model"].values() if v.is_floating_point()} == {torch.float16}
    float32_state = sum(v.numel() * v.element_size() for v in original["model"].values())
    assert out.stat().st_size < 0.55 * float32_state  # half the bytes, plus a little metadata


def test_export_fp32_keeps_the_weights_exact(run, tmp_path, capsys):
    from fercore.cli import main

    assert main(["export", str(run / "best.pt"), "--out", str(tmp_path / "exact.pt"), "--fp32"]) == 0
    capsys.readouterr()
    original = read_checkpoint(run / "best.pt")["model"]
    shipped = read_checkpoint(tmp_path / "exact.pt")["model"]
    assert all(torch.equal(shipped[k], v) and shipped[k].dtype == v.dtype for k, v in original.items())


def test_pretrained_model_predicts_as_the_float32_one_up_to_fp16(run, registered):
    model = create_model("simple_cnn", pretrained=True)
    assert not model.training and model.classes == list(EMOTIONS_7)
    assert {p.dtype for p in model.state_dict().values() if p.is_floating_point()} == {torch.float32}
    reference = create_model("simple_cnn").eval()
    reference.load_state_dict(read_checkpoint(run / "best.pt")["model"])
    x = torch.randn(16, 1, 48, 48)
    with torch.no_grad():
        got, want = model(x), reference(x)
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    assert not torch.equal(got, want)  # it is the fp16 copy that was loaded


def test_tampered_weights_name_the_file_and_both_hashes(registered):
    data = bytearray(registered.read_bytes())
    data[len(data) // 2] ^= 1
    registered.write_bytes(bytes(data))
    expected = pretrained.PRETRAINED["simple_cnn"]["sha256"]
    with pytest.raises(ValueError) as err:
        create_model("simple_cnn", pretrained=True)
    assert str(registered) in str(err.value) and expected in str(err.value)
    assert hashlib.sha256(bytes(data)).hexdigest() in str(err.value)


def test_model_without_weights_names_it_and_those_with(registered, monkeypatch):
    with pytest.raises(ValueError, match=r"'vgg_fer' has no pretrained weights.*with weights: simple_cnn\)"):
        create_model("vgg_fer", pretrained=True)
    monkeypatch.setattr(pretrained, "PRETRAINED", {})
    with pytest.raises(ValueError, match="with weights: none yet"):
        create_model("simple_cnn", pretrained=True)


def test_other_classes_or_channels_than_the_weights_are_an_error(registered):
    with pytest.raises(ValueError, match=r"simple_cnn_synthetic.pt\) have num_classes=7, not 8"):
        create_model("simple_cnn", pretrained=True, num_classes=8)
    with pytest.raises(ValueError, match="have in_chans=1, not 3"):
        create_model("simple_cnn", pretrained=True, in_chans=3)
    assert create_model("simple_cnn", pretrained=True, num_classes=7, dropout=0.0).model_kwargs["dropout"] == 0.0


@pytest.fixture
def server(registered, tmp_path):
    """A local HTTP server holding the exported file as remote.pt: the internet in this test."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "remote.pt").write_bytes(registered.read_bytes())
    with serve_folder(site) as url:
        yield f"{url}/remote.pt"


def test_weights_with_a_url_are_downloaded_once_into_the_cache(server, registered, tmp_path, monkeypatch):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    sha = pretrained.PRETRAINED["simple_cnn"]["sha256"]
    monkeypatch.setattr(pretrained, "PRETRAINED", {"simple_cnn": {"file": "remote.pt", "sha256": sha, "url": server}})
    assert pretrained.pretrained_path("simple_cnn") == tmp_path / "cache" / "weights" / "remote.pt"
    assert create_model("simple_cnn", pretrained=True).classes == list(EMOTIONS_7)
    assert sorted(p.name for p in (tmp_path / "cache" / "weights").iterdir()) == ["remote.pt"]


def test_models_lists_weights_with_a_url_by_size_and_downloads_nothing(server, registered, tmp_path, monkeypatch, capsys):
    from tests.cli_helpers import cli

    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    entry = {**pretrained.PRETRAINED["simple_cnn"], "file": "remote.pt", "url": server, "bytes": registered.stat().st_size,
             "metrics": None}
    monkeypatch.setattr(pretrained, "PRETRAINED", {"simple_cnn": entry})
    code, stdout, _ = cli(capsys, "models")
    line = next(line for line in stdout.splitlines() if line.startswith("simple_cnn:"))
    assert code == 0 and f"remote.pt ({round(entry['bytes'] / 1e6, 2)} MB, downloaded on first use)" in line
    assert not (tmp_path / "cache").exists()


def test_a_download_with_the_wrong_hash_raises_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "PRETRAINED", {"simple_cnn": {"file": "remote.pt", "sha256": "0" * 64, "url": server}})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        create_model("simple_cnn", pretrained=True)
    assert list((tmp_path / "cache" / "weights").iterdir()) == []


def test_cli_export_prints_size_and_sha256_and_never_overwrites(run, tmp_path, capsys):
    out = tmp_path / "weights" / "cnn.pt"
    assert main(["export", str(run / "best.pt"), "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == out.stat().st_size and info["sha256"] == pretrained.sha256_of(out)
    before = out.read_bytes()
    assert main(["export", str(run / "best.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} already exists" in err
    assert out.read_bytes() == before
    assert main(["export", str(run / "best.pt"), "--out", str(tmp_path / "cnn.pth")]) == 2
    assert "must name a .pt file" in capsys.readouterr().err


def test_predict_without_checkpoint_uses_the_registered_default(run, registered, capsys):
    assert main(["predict", str(SAMPLE_PHOTO), "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert main(["predict", str(SAMPLE_PHOTO), "--json", "--checkpoint", str(run / "best.pt")]) == 0
    own = json.loads(capsys.readouterr().out)
    assert len(shipped[0]["faces"]) == 1 and shipped[0]["faces"][0]["label"] == own[0]["faces"][0]["label"]
    for c, p in own[0]["faces"][0]["probabilities"].items():
        assert shipped[0]["faces"][0]["probabilities"][c] == pytest.approx(p, abs=0.01)


def test_predict_without_checkpoint_or_shipped_weights_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED", {})
    assert main(["predict", str(SAMPLE_PHOTO)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--checkpoint" in err and "no pretrained weights" in err


def test_shipped_weights_fit_the_package_and_match_their_hashes():
    for name, entry in pretrained.PRETRAINED.items():
        path = pretrained.WEIGHTS_DIR / entry["file"]
        if entry.get("url") is None:
            assert path.stat().st_size <= pretrained.MAX_SHIPPED_BYTES, f"{name}: {path} is over 10 MB"
            assert pretrained.sha256_of(path) == entry["sha256"], f"{name}: {path} does not match its sha256"
            assert entry.get("metrics") is None or (pretrained.WEIGHTS_DIR / entry["metrics"]).is_file()
        else:  # too large for the package: downloaded, its size and the run's metrics.json recorded here
            assert entry["url"].startswith("https://") and len(entry["sha256"]) == 64, name
            assert entry["bytes"] > pretrained.MAX_SHIPPED_BYTES and not path.exists(), f"{name}: ship it in the package"
            assert (pretrained.WEIGHTS_DIR / entry["metrics"]).is_file(), name
    package_data = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("fercore = ["))
    assert '"weights/*.pt"' in package_data and '"weights/*.json"' in package_data  # (tomllib needs Python 3.11)


def test_the_shipped_model_calls_the_bundled_smiling_face_happy(capsys):
    """The weights in fercore/weights/ (vgg_fer, real FERPlus): loaded offline, they read the bundled photo right."""

    model = create_model("vgg_fer", pretrained=True)
    assert model.classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    faces = predict_image(model, SAMPLE_PHOTO, model.classes)["faces"]
    assert len(faces) == 1 and faces[0]["label"] == "happy" and faces[0]["probabilities"]["happy"] > 0.5
    assert main(["predict", str(SAMPLE_PHOTO)]) == 0  # no --checkpoint: the same shipped model
    assert "happy" in capsys.readouterr().out


def test_predict_with_weights_that_cannot_be_downloaded_is_one_error_line(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "PRETRAINED", {"simple_cnn": {"file": "remote.pt", "sha256": "0" * 64, "url": server}})
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", "simple_cnn")
    assert main(["predict", str(SAMPLE_PHOTO)]) == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if "127.0.0.1 - -" not in line]  # not the server's log
    assert len(ours) == 1 and ours[0].startswith("error: ") and "checksum mismatch" in ours[0]


def test_models_lists_every_model_with_parameters_and_its_weights(registered, capsys):
    from fercore.models import list_models
    from tests.cli_helpers import cli

    (registered.parent / "simple_cnn_synthetic.json").write_text(json.dumps(
        {"dataset": "synthetic", "scale": "smoke", "val": {"accuracy": 0.625}, "command": "python -m fercore train ..."}))
    code, stdout, err = cli(capsys, "models", "--json")
    assert code == 0, err
    rows = {r["model"]: r for r in json.loads(stdout)}
    assert sorted(rows) == list_models()
    assert rows["ran"]["parameters"] == sum(p.numel() for p in create_model("ran").parameters())
    assert rows["ran"]["parameters_standard"] == sum(p.numel() for p in create_model("ran", width=0.25, crop_size=32).parameters())
    w = rows["simple_cnn"]["weights"]
    assert w["shipped"] and w["val_accuracy"] == 0.625 and w["megabytes"] == round(registered.stat().st_size / 1e6, 2)
    assert rows["ran"]["weights"] is None
    code, stdout, _ = cli(capsys, "models")
    lines = {line.split(":")[0]: line for line in stdout.splitlines()}
    assert "simple_cnn_synthetic.pt" in lines["simple_cnn"] and "val 62.5% on synthetic (smoke)" in lines["simple_cnn"]
    assert "no shipped weights" in lines["ran"] and "M at standard" in lines["ran"]


@pytest.mark.parametrize("name", sorted(n for n, e in pretrained.PRETRAINED.items() if e.get("metrics")))
def test_shipped_fp16_weights_score_what_their_run_scored(name, real_data):
    """fp16 costs no accuracy: the shipped weights give their run's validation figure on the real data."""
    from fercore.data import load_dataset
    from fercore.faces.regions import model_regions

    m = json.loads((pretrained.WEIGHTS_DIR / pretrained.PRETRAINED[name]["metrics"]).read_text())
    if m["dataset"] not in ("fer2013", "ferplus"):
        pytest.skip(f"{name} was trained on {m['dataset']}")
    try:
        val = load_dataset(m["dataset"], real_data, "val", **m["data_args"])
    except FileNotFoundError as err:
        pytest.skip(str(err))
    try:
        model = create_model(name, pretrained=True)
    except DownloadError as err:  # weights with a url, offline and not in the cache
        pytest.skip(str(err))
    result = Trainer(model, device="cpu", progress=False).evaluate(model_regions(val, model.default_cfg, progress=False))
    assert result["n"] == m["val"]["n"]
    assert abs(result["accuracy"] - m["val"]["accuracy"]) <= 2 / result["n"], (result["accuracy"], m["val"]["accuracy"])
