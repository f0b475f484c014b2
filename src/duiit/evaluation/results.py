"""An experiment folder's finished runs as one table: what `duiit report` reads, whichever
backend wrote the folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from duiit.files import read_json


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
