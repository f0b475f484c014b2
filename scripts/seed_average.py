"""Would an ensemble of two runs help? Averages, slice by slice, the test predictions of two
sets of runs of the same splits (the same recipe with two seeds: a grid's quality
references and its own target-only runs; or two methods, e.g. the CNN and the boosted
trees of docs/results-real.md) and pairs the average with each set alone, split
by split (corrected resampled t-test); nothing is trained or re-predicted.

    .venv/bin/python scripts/seed_average.py results/real-ct-ich-v3/references \\
        results/real-ct-ich-v3/runs/PURE-CT/target_only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from duiit.evaluation import stats
from duiit.evaluation.metrics import prediction_metrics
from duiit.evaluation.results import split_predictions
from duiit.report.tables import to_markdown


def scores(frame: pd.DataFrame, column: str) -> tuple[float, float]:
    """Slice and patient MSE of one prediction column: the report's own scores."""
    got = prediction_metrics(
        frame[column].to_numpy(), frame["label"].to_numpy(), None, frame["patient_id"].to_numpy()
    )
    return got["mse"], got["patient_mse"]


def holdout_ratio(folder: Path, splits: list[str]) -> float:
    """n_test / n_train of the splits (the correction's overlap term), from their result.json,
    by the report's own rule (`stats.holdout_ratio`)."""
    sizes = [json.loads((folder / name / "result.json").read_text())["n"] for name in splits]
    return stats.holdout_ratio(
        pd.DataFrame({"n_test": [n["test"] for n in sizes], "n_train": [n["train"] for n in sizes]})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="a folder of split-NN run folders")
    parser.add_argument("second", type=Path, help="another, of runs of the same splits")
    args = parser.parse_args()
    first, second = split_predictions(args.first), split_predictions(args.second)
    shared = sorted(set(first) & set(second))
    if len(shared) < 2:
        raise SystemExit(f"{args.first} and {args.second} share {len(shared)} finished split(s)")
    rows = []
    for name in shared:
        both = first[name].merge(
            second[name][["path", "slice", "label", "prediction"]],
            on=["path", "slice"],
            suffixes=("", "_second"),
        )
        same = len(both) == len(first[name]) == len(second[name])
        if not same or not np.allclose(both["label"], both["label_second"]):
            raise SystemExit(f"{name}: the two runs were not tested on the same slices")
        both["average"] = (both["prediction"] + both["prediction_second"]) / 2
        row = {"split": name}
        for column, label in (("prediction", "first"), ("prediction_second", "second")):
            row[f"{label} mse"], row[f"{label} patient_mse"] = scores(both, column)
        row["average mse"], row["average patient_mse"] = scores(both, "average")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("split")
    print(to_markdown(table.round(1).reset_index()))
    ratio = holdout_ratio(args.first, shared)
    tests = []
    for alone in ("first", "second"):
        row: list[object] = [alone]
        for level in ("mse", "patient_mse"):
            mine, theirs = table[f"average {level}"], table[f"{alone} {level}"]
            c = stats.compare(mine, theirs, ratio)
            row += [round(theirs.mean(), 1), round(mine.mean(), 1)]
            row += [f"{int((mine < theirs).sum())} of {c.n}", round(c.p, 3)]
        tests.append(row)
    columns = ["average vs"] + [
        f"{level} {what}"
        for level in ("slice", "patient")
        for what in ("alone", "average", "average lower", "p (corrected)")
    ]
    print(f"\nmeans over {len(shared)} splits; corrected t-test, n_test/n_train = {ratio:.3f}")
    print(to_markdown(pd.DataFrame(tests, columns=columns)))


if __name__ == "__main__":
    main()
