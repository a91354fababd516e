"""``python -m fercore reproduce``: every paper's experiment at one scale, one run at a time, in one table.

``EXPERIMENTS`` lists the runs the notebooks make, each with the paper's figure and what that figure
was measured on. ``reproduce`` trains them one after another with the recipes of the chosen scale
(``run_experiment``, or ``cross_validate`` for CK+'s subject folds), each in ``OUT/<model>_<dataset>``:

- a run whose ``metrics.json`` (or ``cv.json``) is already there is read, not retrained, and a run
  that stopped part-way resumes from its ``last.pt``, so a killed reproduction continues where it was;
- a run that cannot start (its data is not under ``--data-root``, ``full`` without a GPU) becomes a
  row that says why, and the others go on;
- it writes ``OUT/table.json`` and ``OUT/table.md`` after every run, and prints a progress line with
  an estimate of the time left (the mean of this session's runs times the runs still to do whose data is there).

At ``smoke`` every run uses the offline data of its notebook (synthetic faces, simulated FERPlus
votes), so its figures say how the pipeline behaves, not what the papers' models reach; the
cross-validated rows run at ``standard`` and ``full`` only.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import find_datasets, load_dataset
from .data.download import DownloadError
from .experiment import cross_validate, paper_table, run_experiment
from .faces.regions import model_regions
from .runs import atomic_write, write_json
from .train import Trainer, load_model

# What a dataset calls its splits: the figures say which one they were measured on.
SPLIT_NAMES = {"fer2013": {"val": "PublicTest", "test": "PrivateTest"},
               "ferplus": {"val": "FER2013Valid", "test": "FER2013Test"}}
STORED_REPRODUCTION = "reproduce_standard"  # under notebooks/results/: the metrics of `reproduce --scale standard` runs
COLUMNS = ("model", "dataset", "paper %", "paper measured on", "ours %", "measured on", "ten_crop %", "scale",
           "epochs (best)", "seconds", "status", "command")


@dataclass(frozen=True)
class Experiment:
    model: str
    dataset: str                 # at standard and full
    paper: float | None          # the paper's accuracy, %
    paper_split: str             # what the paper's figure was measured on
    notebook: str
    smoke_dataset: str | None = "synthetic"  # None: not run at smoke (a duplicate of another row there)
    folds: int | None = None     # subject-independent cross-validation (CK+, JAFFE)
    tta: str | None = None       # the test-time augmentation the paper reports with

    def dataset_at(self, scale: str) -> str | None:
        return self.smoke_dataset if scale == "smoke" else self.dataset

    def skip_reason(self, scale: str) -> str | None:
        if scale == "smoke" and self.folds:
            return "cross-validation runs at standard and full only (ten trainings)"
        if scale == "smoke" and self.smoke_dataset is None:
            return "at smoke this is the same run as the model's row above"
        return None


_FER = "FER2013 PrivateTest"
_FERPLUS = "FERPlus test (the course report)"
EXPERIMENTS = (
    Experiment("vgg_fer", "ferplus", 73.2, _FERPLUS, "01", smoke_dataset="simulated_ferplus"),
    Experiment("vgg_fer", "ckplus", None, "— (the course report has no CK+ figure)", "01", folds=10),
    Experiment("deep_emotion", "fer2013", 70.02, _FER, "02"),
    Experiment("deepfer", "fer2013", 74.85, _FER, "02"),
    Experiment("deep_emotion", "ckplus", 98.0, "CK+, the paper's split", "02", folds=10),
    Experiment("deepfer", "ckplus", 99.47, "CK+, the paper's split", "02", folds=10),
    Experiment("prior_attention", "fer2013", None, "— (the paper reports FERG only)", "03"),
    Experiment("prior_attention", "ferg", 97.5, "FERG, random 80/10/10 split", "03", smoke_dataset=None),
    Experiment("prior_attention", "ckplus", None, "— (the paper reports FERG only)", "03", folds=10),
    Experiment("resnet18_fer", "fer2013", 72.4, _FER + ", ten-crop", "04", tta="ten_crop"),
    Experiment("resnet18_cbam", "fer2013", 73.1, _FER + ", ten-crop", "04", tta="ten_crop"),
    Experiment("resnet18_cbam_asoftmax", "fer2013", 73.5, _FER + ", ten-crop", "04", tta="ten_crop"),
    Experiment("ran", "ferplus", 86.0, _FERPLUS, "05", smoke_dataset="simulated_ferplus"),
    Experiment("ran_face_only", "ferplus", None, "— (RAN's baseline)", "05", smoke_dataset="simulated_ferplus"),
)


def _row(exp: Experiment, dataset: str, scale: str, **cells) -> dict:
    base = {"model": exp.model, "dataset": dataset, "paper %": "—" if exp.paper is None else exp.paper,
            "paper measured on": exp.paper_split, "ours %": "not run", "measured on": "—", "ten_crop %": "—",
            "scale": scale, "epochs (best)": "—", "seconds": "—", "status": "", "command": "—"}
    return {**base, **cells}


def _done_row(exp: Experiment, dataset: str, scale: str, m: dict, status: str) -> dict:
    paper = {} if exp.paper is None else {(exp.model, dataset): exp.paper}
    shown = paper_table(paper, [(m, status)])[0]
    split = shown["split"]
    if split in ("val", "test"):
        split = f'{split} ({SPLIT_NAMES[dataset][split]})' if dataset in SPLIT_NAMES else split
    seconds = m.get("seconds") or sum(f.get("seconds", 0) for f in m.get("per_fold", ())) or "—"
    return _row(exp, dataset, scale, **{"ours %": shown["ours %"], "measured on": split,
                                        "ten_crop %": shown.get("ten_crop %", "—"), "epochs (best)": shown["epochs (best)"],
                                        "seconds": seconds, "status": status, "command": m["command"]})


def _run(exp: Experiment, dataset: str, scale: str, data_root, out: Path, device: str, seed: int) -> tuple[dict, str]:
    """Train (or resume) one experiment; returns its metrics and how it was obtained."""
    done = out / ("cv.json" if exp.folds else "metrics.json")
    if done.is_file():
        return json.loads(done.read_text()), "read from an earlier run"
    common = dict(scale=scale, device=device, seed=seed, progress=False, resume=True)
    if exp.folds:
        return cross_validate(exp.model, dataset, data_root, folds=exp.folds, out=out, **common), "trained"
    resumed = (out / "last.pt").is_file()
    m = run_experiment(exp.model, dataset, data_root, out=out, **common)
    if exp.tta:  # the paper's figure is a ten-crop one: measure ours the same way, on the same split
        split = "test" if m["test"] else "val"
        if split == "test" or not m["recipe"].get("val_subset"):  # the whole split, as the run's own figure
            model = load_model(out / "best.pt")
            ds = model_regions(load_dataset(dataset, data_root, split, **m["data_args"]), model.default_cfg, progress=False)
            m["tta"] = {exp.tta: Trainer(model, device=device, progress=False).evaluate(ds, tta=exp.tta)}
            write_json(out / "metrics.json", m)
    return m, "resumed" if resumed else "trained"


def stored_runs(folder=None) -> dict[tuple[str, str], tuple[str, dict]]:
    """The stored ``standard`` run of each experiment: ``(model, dataset) -> (file, metrics)``, for those stored.

    A run of ``reproduce --scale standard`` kept in ``folder/reproduce_standard/<model>_<dataset>/`` (its
    ``metrics.json`` or ``cv.json``) comes first; else the reference run the experiment's notebook stored,
    ``folder/NN_<model>_<dataset>_standard.json`` (``_cv.json`` for cross-validation)."""
    from .experiment import RESULTS, reference_runs

    folder = Path(folder or RESULTS)
    found = {}
    for exp in EXPERIMENTS:
        done, tail = ("cv.json", "cv") if exp.folds else ("metrics.json", "standard")
        runs = reference_runs(f"{STORED_REPRODUCTION}/{exp.model}_{exp.dataset}/{done}", folder)
        runs = runs or reference_runs(f"{exp.notebook}_{exp.model}_{exp.dataset}_{tail}.json", folder)
        for source, m in runs.items():
            found[(exp.model, exp.dataset)] = (source, m)
    return found


def stored_table(folder=None) -> list[dict]:
    """The ``standard`` table from the stored reference runs (``stored_runs``), without training: a row per
    experiment, each with the command that made its run, or why it has none."""
    found = stored_runs(folder)
    rows = []
    for exp in EXPERIMENTS:
        if (exp.model, exp.dataset) in found:
            source, m = found[(exp.model, exp.dataset)]
            rows.append(_done_row(exp, exp.dataset, "standard", m, f"stored: {source}"))
        else:
            rows.append(_row(exp, exp.dataset, "standard", status="not run: no stored reference run"))
    return rows


def write_table(rows: list[dict], out: Path) -> None:
    """``out/table.json`` (the rows) and ``out/table.md`` (the same as a Markdown table)."""
    write_json(out / "table.json", rows)
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    atomic_write(out / "table.md", ("\n".join(lines) + "\n").encode())  # a reader never sees half a table


def reproduce(scale: str = "smoke", *, only=None, data_root=None, out="runs/reproduce", device: str = "auto",
              seed: int = 0, log=None) -> list[dict]:
    """Run ``EXPERIMENTS`` (or those of the models in ``only``) at ``scale``; returns the table's rows.
    With ``only``, the table also holds the other experiments that an earlier call finished in ``out``, so
    a reproduction made in parts ends with one table. Progress lines go to ``log`` (default: stderr)."""
    log = log or sys.stderr
    known = sorted({e.model for e in EXPERIMENTS})
    unknown = [m for m in only or () if m not in known]
    if unknown:
        raise ValueError(f"--only: no experiment of {', '.join(map(repr, unknown))}; valid: {', '.join(known)}")
    chosen = [e for e in EXPERIMENTS if not only or e.model in only]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: reproduce writes one folder per run and its tables there")
    out.mkdir(parents=True, exist_ok=True)
    no_gpu = scale == "full" and device == "auto" and not torch.cuda.is_available()
    rows, spent, todo = [], [], [e for e in chosen if not e.skip_reason(scale)]
    found = {d["name"] for d in find_datasets(data_root) if d["found"]}  # for the time left only
    present = {e: e.dataset_at(scale) in found for e in todo}
    for exp in EXPERIMENTS:
        if exp not in chosen:  # not asked for: its row only if an earlier call finished it here, so the table grows
            dataset = exp.dataset_at(scale)
            done = out / f"{exp.model}_{dataset}" / ("cv.json" if exp.folds else "metrics.json")
            if dataset and not exp.skip_reason(scale) and done.is_file():
                rows.append(_done_row(exp, dataset, scale, json.loads(done.read_text()), "read from an earlier run"))
            continue
        if (why := exp.skip_reason(scale)) or (why := no_gpu and "full is the paper's budget and needs a GPU; "
                                                           "this machine has none (--device cpu forces it)"):
            rows.append(_row(exp, exp.dataset, scale, status=f"not run: {why}"))
            continue
        dataset = exp.dataset_at(scale)
        k = todo.index(exp) + 1
        label = f"[{k}/{len(todo)}] {exp.model} on {dataset} ({scale})"
        print(f"{label} ...", file=log, flush=True)
        start = time.perf_counter()
        try:
            m, status = _run(exp, dataset, scale, data_root, out / f"{exp.model}_{dataset}", device, seed)
        except (FileNotFoundError, FileExistsError, ValueError, DownloadError) as err:
            rows.append(_row(exp, dataset, scale, status=f"not run: {err}"))
            print(f"{label}: not run: {err}", file=log, flush=True)
            continue
        if status != "read from an earlier run":
            spent.append(time.perf_counter() - start)
        rows.append(_done_row(exp, dataset, scale, m, status))
        left = sum(present[e] for e in todo[k:])  # a run whose data is missing costs no time
        eta = f"; about {left * sum(spent) / len(spent) / 60:.1f} min left" if spent and left else ""
        print(f"{label}: {rows[-1]['ours %']}% on {rows[-1]['measured on']}, {status}{eta}", file=log, flush=True)
        write_table(rows, out)
    write_table(rows, out)
    return rows
