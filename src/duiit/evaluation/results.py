"""An experiment folder's finished runs as one table: what `duiit report` reads, whichever
backend wrote the folder; and its audit: the runs that are unfinished or damaged."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from duiit.evaluation.stats import RAW_FID
from duiit.files import read_json, write_text

# metrics.csv's columns, as training.loop.MetricsLog writes them.
METRICS_COLUMNS = ("stage", "step", "name", "value")


def collect(out: Path) -> pd.DataFrame:
    """All finished runs of an experiment folder as one table (one row per run)."""
    rows = []
    for result_path in sorted((out / "runs").glob("*/*/split-*/result.json")):
        r = read_json(result_path)
        run_dir = result_path.parent
        row = {
            "setting": run_dir.parent.parent.name,
            "method": r["method"],
            "split": r["split_seed"],
            "target": r["target"],
            "sources": "+".join(r["sources"]),
            "n_train": r["n"]["train"],
            "n_test": r["n"]["test"],
            "fit_seconds": r["fit_seconds"],
            "train_label_mean": r.get("train_label_mean"),
            **r["metrics"],
            "run_dir": str(run_dir),
        }
        q = run_dir / "quality.json"
        if q.exists():
            row.update({k: v for k, v in read_json(q).items() if k != "notes"})
        rows.append(row)
    return pd.DataFrame(rows)


def split_predictions(folder: Path) -> dict[str, pd.DataFrame]:
    """split-NN -> the finished run's test predictions, for each split-NN run folder of
    `folder` (one method's runs, or a grid's quality references): what the analyses of
    scripts/ read beside the report."""
    return {
        run.name: pd.read_csv(run / "test_predictions.csv", dtype={"patient_id": str})
        for run in sorted(folder.glob("split-*"))
        if (run / "test_predictions.csv").exists()
    }


@dataclass
class Audit:
    """What a report must say before its tables, one line each (`notes`), and the files of
    finished runs it must not read (`damaged`)."""

    notes: list[str] = field(default_factory=list)
    damaged: set[Path] = field(default_factory=set)


def _read_back(path: Path) -> pd.DataFrame | str:
    """A CSV duiit wrote, or why it cannot be trusted: every one ends with a line break, so
    one without is cut short."""
    try:
        if not path.read_bytes().endswith(b"\n"):
            return "cut short in its last line"
        return pd.read_csv(path)
    except FileNotFoundError:
        return "missing"
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return f"unreadable ({' '.join(str(exc).split())})"


def _complete(df: pd.DataFrame, columns: list[str]) -> int:
    """Rows holding every one of `columns` (a row cut short lacks its last cells)."""
    if not set(columns) <= set(df.columns):
        return 0
    return int(df[columns].notna().all(axis=1).sum())


def _damage(run_dir: Path) -> dict[str, str]:
    """A finished run's files that disagree with its result.json or are cut short: name ->
    why. What a run killed mid-write or a full disk would leave (duiit writes atomically, so
    it takes another program or a copy to do it)."""
    n = read_json(run_dir / "result.json")["n"]
    found: dict[str, str] = {}
    preds = _read_back(run_dir / "test_predictions.csv")
    if isinstance(preds, str):
        found["test_predictions.csv"] = preds
    elif (rows := _complete(preds, ["label", "prediction"])) != n["test"]:
        found["test_predictions.csv"] = f"{rows} complete rows for {n['test']} test images"
    metrics = _read_back(run_dir / "metrics.csv")
    if isinstance(metrics, str) or _complete(metrics, list(METRICS_COLUMNS)) != len(metrics):
        found["metrics.csv"] = metrics if isinstance(metrics, str) else "a row cut short"
    split = _read_back(run_dir / "split.csv")
    parts = (
        split["part"].value_counts().to_dict()
        if not isinstance(split, str) and "part" in split
        else {}
    )
    if any(parts.get(p, 0) != n[p] for p in ("train", "val", "test")):
        parts_held = "/".join(str(parts.get(p, 0)) for p in ("train", "val", "test"))
        held = split if isinstance(split, str) else f"{parts_held} images"
        expected = f"{n['train']}/{n['val']}/{n['test']}"
        found["split.csv"] = f"train/val/test parts: {held}, not the run's {expected}"
    return found


def _rows(text: str) -> list[list[str]]:
    """A CSV table's cells as written, less the run folders (a moved folder keeps its runs)."""
    rows = list(csv.reader(io.StringIO(text)))
    keep = [i for i, name in enumerate(rows[0] if rows else []) if name != "run_dir"]
    return [[row[i] if i < len(row) else None for i in keep] for row in rows]


def audit(out: Path, results: pd.DataFrame) -> Audit:
    """Unfinished runs (a folder without result.json: stopped, failed, or still running),
    damaged files of finished runs, which the report leaves out and names, and splits whose
    translations were scored by more than one reference; a runs.csv that does not match the
    finished runs is written again."""
    found = Audit()
    for raw in sorted(c for c in results.columns if c.startswith(RAW_FID)):
        mixed = [int(k) for k, n in results.groupby("split")[raw].nunique().items() if n > 1]
        if mixed:
            found.notes.append(
                f"split(s) {', '.join(map(str, mixed))}: {raw.removeprefix(RAW_FID)} "
                "translations scored by more than one quality reference (one trained again "
                "since: their raw-source task FIDs differ); translation scores pair only runs "
                "that one reference scored, the others are left out of those tests"
            )
    finished = set(results["run_dir"]) if not results.empty else set()
    for run_dir in sorted((out / "runs").glob("*/*/split-*")):
        rel = run_dir.relative_to(out).as_posix()
        if str(run_dir) not in finished:
            found.notes.append(
                f"{rel}: unfinished (no result.json): it stopped, failed or is still running; "
                "`duiit experiment` on this folder finishes it"
            )
            continue
        for name, why in _damage(run_dir).items():
            found.notes.append(f"{rel}/{name} is damaged ({why}); the report does not read it")
            found.damaged.add(run_dir / name)
    table = results.to_csv(index=False)
    runs_csv = out / "runs.csv"
    if not runs_csv.exists():
        found.notes.append(
            "runs.csv was missing (`duiit experiment` writes it when it ends: this one was "
            "stopped or is still running); written from the finished runs' result.json"
        )
        write_text(table, runs_csv)
    elif _rows(runs_csv.read_text()) != _rows(table):
        found.notes.append(
            "runs.csv is damaged or out of date (it does not match the finished runs' "
            "result.json, which the report reads); written again"
        )
        write_text(table, runs_csv)
    return found
