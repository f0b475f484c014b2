"""Would averaging a slice's prediction with its left-right mirror's help? Re-scores the saved
models of an experiment folder's runs on their own test patients, with and without the
mirror, without training anything (the plain score reproduces each run's
test_predictions.csv, which the script checks).

    .venv/bin/python scripts/flip_average.py runs/ct-ich-learning-mse --method target_only
    .venv/bin/python scripts/flip_average.py runs/real-ct-ich-v3 --references \
        --target runs/ct-ich.csv    # a grid's quality references (their model.pt needed)
"""

from __future__ import annotations

import argparse
import json
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
from duiit.files import read_json
from duiit.methods.base import FittedModel
from duiit.training.runtime import Runtime


def squared_errors(
    pred: np.ndarray, label: np.ndarray, patients: np.ndarray
) -> tuple[float, float]:
    """Slice MSE and patient MSE (a patient's slice predictions averaged): the report's own
    scores (`prediction_metrics`)."""
    scores = prediction_metrics(pred, label, None, patients)
    return scores["mse"], scores["patient_mse"]


def reference_runs(folder: Path) -> pd.DataFrame:
    """A grid's quality references (the target-only predictor of each split, with its own
    seed) as runs.csv rows: they are in no runs.csv, and a grid stopped part-way (or its
    records kept by scripts/keep_runs.py) has no runs.csv at all."""
    rows = []
    for ref in sorted((folder / "references").glob("split-*")):
        if (ref / "result.json").exists() and (ref / "model.pt").exists():
            result = json.loads((ref / "result.json").read_text())
            n = result["n"]
            rows.append((str(ref), result["split_seed"], n["test"], n["train"]))
    return pd.DataFrame(rows, columns=["run_dir", "split", "n_test", "n_train"])


def saved_runs(doc: str) -> tuple[pd.DataFrame, Cohort]:
    """The command line of a script on an experiment folder's saved runs: the finished runs
    of `--method` (runs.csv rows, by split) or the quality references, and the target cohort
    as they read it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="an experiment folder (runs.csv beside runs/)")
    parser.add_argument("--method", default="target_only", help="whose saved runs to use")
    parser.add_argument(
        "--references", action="store_true", help="the grid's quality references instead"
    )
    parser.add_argument(
        "--target", type=Path, help="the target manifest, if not where experiment.yaml says"
    )
    args = parser.parse_args()
    if args.references:
        runs, whose = reference_runs(args.folder), "quality reference with its model.pt"
    else:
        runs = pd.read_csv(args.folder / "runs.csv")
        runs, whose = runs[runs["method"] == args.method], f"finished {args.method} run"
    runs = runs.sort_values("split")
    if runs.empty:
        raise SystemExit(f"{args.folder} has no {whose}")
    first = Path(runs["run_dir"].iloc[0])
    cfg = Config.model_validate(yaml.safe_load((first / "config.yaml").read_text()))
    manifest = (
        args.target or yaml.safe_load((args.folder / "experiment.yaml").read_text())["target"]
    )
    target, _ = load_cohorts(Path(manifest), [], cfg.data, quiet=True)
    return runs, target


def main() -> None:
    runs, target = saved_runs(__doc__)
    paths = target.meta["path"].to_numpy()
    rows = []
    for run_dir, split in zip(runs["run_dir"], runs["split"], strict=True):
        run = Path(run_dir)
        # re-predicted in the precision the run predicted its test slices in (bf16 or fp32)
        rt = Runtime.create("cpu", "bf16" if read_json(run / "env.json")["bf16"] else "fp32")
        parts = pd.read_csv(run / "split.csv")
        test = np.isin(paths, parts.loc[parts["part"] == "test", "path"])
        x, y = target.images[test].float(), target.labels[test].numpy()
        model = FittedModel.load(run / "model.pt")
        plain = model.predict(x, rt).ravel()
        mirrored = model.predict(torch.flip(x, dims=[-1]), rt).ravel()
        saved = pd.read_csv(run / "test_predictions.csv")
        if not np.allclose(np.sort(saved["prediction"]), np.sort(plain), atol=1e-3):
            raise SystemExit(f"{run}: the predictions made here differ from test_predictions.csv")
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
