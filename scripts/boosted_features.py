"""Would trees do more with the classical baselines' features than a ridge? Measured before
`features_boost` was built in: scikit-learn's HistGradientBoostingRegressor (a wider search
than the method's: 100 / 300 trees, rate 0.03 / 0.1, depth 2 / 3, leaves of 5 / 20; grouped
5-fold CV on the training patients) beside the ridge, on the slice features (each slice,
and its patient's mean prediction) and on `stack_ridge`'s stack summary (one row a patient),
on the splits of a learning folder's `features_ridge` runs (their split.csv). MSE in y², a
row a split, then the means.

    .venv/bin/python scripts/boosted_features.py results/ct-ich-learning-recipe \
        --target runs/ct-ich.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GridSearchCV

from duiit.config import Config
from duiit.data.load import load_cohorts
from duiit.methods.classical import grouped_search, image_features, patient_folds, stack_features

GRID = {
    "max_iter": [100, 300],
    "learning_rate": [0.03, 0.1],
    "max_depth": [2, 3],
    "min_samples_leaf": [5, 20],
}


def boosted(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> GridSearchCV:
    search = GridSearchCV(
        HistGradientBoostingRegressor(random_state=0, early_stopping=False),
        GRID,
        cv=patient_folds(groups),
        scoring="neg_mean_squared_error",
    )
    return search.fit(x, y, groups=groups)


def ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> GridSearchCV:
    return grouped_search(x, y, groups, classes=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a learning folder with features_ridge runs")
    parser.add_argument("--target", type=Path, required=True, help="the target manifest")
    args = parser.parse_args()
    runs = args.folder / "runs" / "PURE-CT" / "features_ridge"
    first = sorted(runs.glob("split-*"))[0]
    cfg = Config.model_validate(yaml.safe_load((first / "config.yaml").read_text()))
    target, _ = load_cohorts(args.target, [], cfg.data, quiet=True)
    patients = np.asarray(target.patient_ids)
    ages = target.labels.numpy().astype(float)
    x = image_features(target.images)
    ids, stacks = stack_features(x, patients)
    stack_ages = pd.Series(ages).groupby(patients).first().loc[ids].to_numpy()
    rows = []
    for run in sorted(runs.glob("split-*")):
        split = pd.read_csv(run / "split.csv", dtype={"patient_id": str})
        part = split.groupby("patient_id")["part"].first()
        train, test = (np.isin(patients, part.index[part == p]) for p in ("train", "test"))
        s_train, s_test = (np.isin(ids, part.index[part == p]) for p in ("train", "test"))
        row = {"split": run.name}
        for name, fit in (("ridge", ridge), ("boosted", boosted)):
            pred = fit(x[train], ages[train], patients[train]).predict(x[test])
            row[f"slice {name}"] = ((pred - ages[test]) ** 2).mean()
            mean = pd.Series(pred).groupby(patients[test]).mean()
            true = pd.Series(ages[test]).groupby(patients[test]).first().loc[mean.index]
            row[f"slice {name}, per patient"] = ((mean - true) ** 2).mean()
            model = fit(stacks[s_train], stack_ages[s_train], ids[s_train])
            pred = model.predict(stacks[s_test])
            row[f"stack {name}"] = ((pred - stack_ages[s_test]) ** 2).mean()
        rows.append(row)
        print(row, flush=True)
    frame = pd.DataFrame(rows).set_index("split")
    print(frame.round(1).to_string())
    print(frame.mean().round(1).to_string())


if __name__ == "__main__":
    main()
