"""Would averaging a slice's prediction with its left-right mirror's help? Re-scores the saved
models of an experiment folder's runs on their own test patients, with and without the
mirror, without training anything (the plain score reproduces each run's
test_predictions.csv, which the script checks).

    .venv/bin/python scripts/flip_average.py runs/ct-ich-learning-mse --method target_only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from duiit.config import Config
from duiit.data import load_cohorts
from duiit.data.cohort import Cohort
from duiit.evaluation import stats
from duiit.evaluation.metrics import prediction_metrics
from duiit.methods.base import FittedModel
from duiit.training.runtime import Runtime


def squared_errors(
    pred: np.ndarray, label: np.ndarray, patients: np.ndarray
) -> tuple[float, float]:
    """Slice MSE and patient MSE (a patient's slice predictions averaged): the report's own
    scores (`prediction_metrics`)."""
    scores = prediction_metrics(pred, label, None, patients)
    return scores["mse"], scores["patient_mse"]


def saved_runs(doc: str) -> tuple[pd.DataFrame, Cohort]:
    """The command line of a script on an experiment folder's saved runs: the finished runs
    of `--method` (runs.csv rows, by split) and the target cohort as they read it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="an experiment folder (runs.csv beside runs/)")
    parser.add_argument("--method", default="target_only", help="whose saved runs to use")
    args = parser.parse_args()
    runs = pd.read_csv(args.folder / "runs.csv")
    runs = runs[runs["method"] == args.method].sort_values("split")
    if runs.empty:
        raise SystemExit(f"{args.folder}/runs.csv has no finished {args.method} run")
    first = Path(runs["run_dir"].iloc[0])
    cfg = Config.model_validate(yaml.safe_load((first / "config.yaml").read_text()))
    manifest = yaml.safe_load((args.folder / "experiment.yaml").read_text())["target"]
    target, _ = load_cohorts(Path(manifest), [], cfg.data, quiet=True)
    return runs, target


def main() -> None:
    runs, target = saved_runs(__doc__)
    rt = Runtime.create("cpu", "fp32")
    paths = target.meta["path"].to_numpy()
    rows = []
    for run_dir, split in zip(runs["run_dir"], runs["split"], strict=True):
        run = Path(run_dir)
        parts = pd.read_csv(run / "split.csv")
        test = np.isin(paths, parts.loc[parts["part"] == "test", "path"])
        x, y = target.images[test].float(), target.labels[test].numpy()
        model = FittedModel.load(run / "model.pt")
        plain = model.predict(x, rt).ravel()
        mirrored = model.predict(torch.flip(x, dims=[-1]), rt).ravel()
        saved = pd.read_csv(run / "test_predictions.csv")
        assert np.allclose(np.sort(saved["prediction"]), np.sort(plain), atol=1e-3), run
        rows.append(
            (split, *squared_errors(plain, y, target.patient_ids[test]),
             *squared_errors((plain + mirrored) / 2, y, target.patient_ids[test]))
        )  # fmt: skip
    table = pd.DataFrame(
        rows, columns=["split", "mse", "patient_mse", "flip_mse", "flip_patient_mse"]
    )
    print(table.round(1).to_string(index=False))
    print("mean  " + "  ".join(f"{c} {table[c].mean():.1f}" for c in table.columns[1:]))
    ratio = stats.holdout_ratio(runs)
    for plain_col, flip_col in (("mse", "flip_mse"), ("patient_mse", "flip_patient_mse")):
        c = stats.compare(table[flip_col], table[plain_col], ratio)
        lower = int((table[flip_col] < table[plain_col]).sum())
        print(
            f"{plain_col}: the mirror average is {c.mean_diff:.1f} lower, on {lower} of "
            f"{len(table)} splits; corrected p {c.p:.2f}, Wilcoxon p {c.p_wilcoxon:.2f}"
        )


if __name__ == "__main__":
    main()
