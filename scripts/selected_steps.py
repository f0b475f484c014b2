"""Which training step did validation-based model selection keep, per (setting, method)?

The predictor kept is the one with the lowest validation loss (the first minimum of
`val_selection` in the stage that trains it). For DUIIT that fixes how far the jointly
trained translator had come when the kept predictor was made.

    .venv/bin/python scripts/selected_steps.py runs/phantom-claims
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def selected_steps(experiment: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(experiment.glob("runs/*/*/split-*/metrics.csv")):
        metrics = pd.read_csv(path)
        val = metrics[metrics["name"] == "val_selection"]
        val = val[val["stage"] == val["stage"].iloc[-1]]
        rows.append(
            {
                "setting": path.parts[-4],
                "method": path.parts[-3],
                "kept step": int(val.loc[val["value"].idxmin(), "step"]),
                "of": int(val["step"].max()),
            }
        )
    runs = pd.DataFrame(rows)
    return runs.groupby(["setting", "method"]).agg(
        runs=("kept step", "size"),
        median=("kept step", "median"),
        min=("kept step", "min"),
        max=("kept step", "max"),
        of=("of", "max"),
    )


if __name__ == "__main__":
    print(selected_steps(Path(sys.argv[1])).to_string())
