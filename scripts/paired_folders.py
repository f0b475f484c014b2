"""Pair one method's runs with others' across experiment folders, split by split (split k
holds the same patients in every folder made from the same target and split settings), with
the report's corrected resampled t-test and one Benjamini-Hochberg family over every row
printed (translation scores pair only runs one quality reference scored, as in the report).
For comparisons `duiit report` cannot make, because the two runs live in folders made with
different settings.

    .venv/bin/python scripts/paired_folders.py runs/ct-ich-learning-mse:target_only \\
        runs/ct-ich-learning-mse:features_ridge runs/ct-ich-learning-cnn:target_only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from duiit.evaluation import stats
from duiit.report.tables import to_markdown


def scores(spec: str, metric: str) -> pd.Series:
    """FOLDER:METHOD -> its per-split `metric` from the folder's runs.csv."""
    folder, _, method = spec.rpartition(":")
    runs = pd.read_csv(Path(folder) / "runs.csv")
    runs = runs[runs["method"] == method]
    if runs.empty:
        raise SystemExit(f"{folder}/runs.csv has no finished run of {method!r}")
    return stats.per_split(runs, metric).sort_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ours", help="FOLDER:METHOD whose runs every other is paired with")
    parser.add_argument("others", nargs="+", help="FOLDER:METHOD to compare with")
    parser.add_argument("--metrics", nargs="+", default=["mse", "patient_mse"])
    args = parser.parse_args()
    ratio = stats.holdout_ratio(pd.read_csv(Path(args.ours.rpartition(":")[0]) / "runs.csv"))
    rows = []
    for other in args.others:
        for metric in args.metrics:
            ours, theirs = scores(args.ours, metric), scores(other, metric)
            shared = ours.index.intersection(theirs.index)
            c = stats.compare(ours[shared], theirs[shared], ratio)
            better = int((ours[shared] < theirs[shared]).sum())
            rows.append((other, metric, c.mean_diff, f"{better} of {c.n}", c.p, c.p_wilcoxon))
    table = pd.DataFrame(
        rows, columns=["vs", "metric", "diff (other - ours)", "ours lower", "p", "p (Wilcoxon)"]
    )
    table["q (BH, these rows)"] = stats.bh(table["p"])
    print(f"ours: {args.ours}; corrected resampled t-test, n_test/n_train = {ratio:.3f}")
    print(to_markdown(table.round(4)))


if __name__ == "__main__":
    main()
