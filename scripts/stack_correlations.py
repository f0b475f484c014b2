"""Where is age in a CT-ICH head CT: in a slice, or in the stack? For each of the features
`stack_ridge` summarises, its correlation with age per slice (every slice its own row) and
per patient (the feature's mean over the patient's stack); and, on an experiment folder's
splits, `stack_ridge` refitted on the stack means alone (no maxima, quartiles, spreads or
slice count), to separate what averaging over the stack gives from what the extremes add.
Nothing is trained but ridges.

    .venv/bin/python scripts/stack_correlations.py runs/ct-ich-learning-recipe
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from flip_average import saved_runs

from duiit.methods.classical import (
    FEATURES,
    STACK_BASE,
    STACK_COLUMNS,
    grouped_search,
    image_features,
    stack_features,
)
from duiit.report.tables import to_markdown


def main() -> None:
    runs, target = saved_runs(__doc__)
    patients = target.patient_ids
    ages = target.labels.numpy().astype(float)
    features = image_features(target.images)
    ids, stacks = stack_features(features, patients)
    stack_ages = pd.Series(ages).groupby(patients).first().loc[ids].to_numpy()
    rows = []
    for name in STACK_BASE:
        per_slice = np.corrcoef(features[:, FEATURES.index(name)], ages)[0, 1]
        per_stack = np.corrcoef(stacks[:, STACK_COLUMNS.index(f"{name}_mean")], stack_ages)[0, 1]
        rows.append({"feature": name, "r per slice": per_slice, "r of the stack mean": per_stack})
    table = pd.DataFrame(rows).sort_values("r of the stack mean", key=abs, ascending=False)
    print(f"{len(ages)} slices of {len(ids)} patients")
    print(to_markdown(table.round(2)))
    means = [STACK_COLUMNS.index(f"{name}_mean") for name in STACK_BASE]
    scores = []
    for run_dir, split in zip(runs["run_dir"], runs["split"], strict=True):
        parts = pd.read_csv(Path(run_dir) / "split.csv", dtype={"patient_id": str})
        part = parts.groupby("patient_id")["part"].first()
        train = np.isin(ids, part.index[part == "train"])
        test = np.isin(ids, part.index[part == "test"])
        fit = grouped_search(stacks[train][:, means], stack_ages[train], ids[train], False)
        err = (fit.predict(stacks[test][:, means]) - stack_ages[test]) ** 2
        const = (stack_ages[test] - stack_ages[test].mean()) ** 2
        scores.append({"split": split, "patient_mse": err.mean(), "constant": const.mean()})
    frame = pd.DataFrame(scores)
    print(to_markdown(frame.round(1)))
    mean = frame.mean(numeric_only=True)
    print(
        f"stack means alone: patient mse {mean['patient_mse']:.1f} against the test patients' "
        f"mean {mean['constant']:.1f} ({mean['patient_mse'] / mean['constant']:.2f}x), "
        f"{len(frame)} splits"
    )


if __name__ == "__main__":
    main()
