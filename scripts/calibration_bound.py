"""Could recalibrating a predictor's outputs reach a bar its error misses? For each split, the
best straight line from the predictions to the true ages, fitted on the test patients
themselves: an optimistic bound (no recalibration fitted on other patients does better on
these), per slice and per patient (a patient's slice predictions averaged), beside the
predictor as it is and the test patients' mean (the report's constant). A slope below 1
says the predictions spread more than what they know about age. Nothing is trained or
re-predicted.

    .venv/bin/python scripts/calibration_bound.py results/real-ct-ich-v3/runs/PURE-CT/target_only \\
        results/real-ct-ich-v3/runs/MIX-CT-MRI/transfer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from duiit.evaluation.metrics import constant_predictor_metrics, per_patient, prediction_metrics
from duiit.evaluation.results import split_predictions
from duiit.files import read_json
from duiit.report.tables import to_markdown


def best_line(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """The MSE of the least-squares line a·pred + b on these very labels, and its slope a
    (0 for a constant prediction: the line is then the labels' mean)."""
    spread = float(np.var(pred))
    slope = float(np.cov(pred, true, bias=True)[0, 1]) / spread if spread > 0 else 0.0
    fitted = slope * (pred - pred.mean()) + true.mean()
    return float(np.mean((fitted - true) ** 2)), slope


def split_row(frame: pd.DataFrame) -> dict[str, float]:
    """One split's scores: as predicted, after the best line, and the constant's."""
    pred, true = frame["prediction"].to_numpy(float), frame["label"].to_numpy(float)
    patients = frame["patient_id"].to_numpy()
    got = prediction_metrics(pred, true, None, patients)
    constant = constant_predictor_metrics(true, None, patients)
    per = per_patient(pred, patients, true=true)
    line, slope = best_line(pred, true)
    patient_line, _ = best_line(per["prediction"].to_numpy(), per["label"].to_numpy())
    return {
        "mse": got["mse"],
        "mse, best line": line,
        "constant": constant["mse"],
        "slope": slope,
        "patient_mse": got["patient_mse"],
        "patient_mse, best line": patient_line,
        "patient constant": constant["patient_mse"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="folders of split-NN run folders")
    args = parser.parse_args()
    summary = []
    for folder in args.folders:
        runs = split_predictions(folder)
        if not runs:
            raise SystemExit(f"{folder}: no split-NN folder with a test_predictions.csv")
        result = read_json(folder / next(iter(runs)) / "result.json")
        if "mse" not in result["metrics"]:
            raise SystemExit(f"{folder}: runs of class labels; a line to the labels needs numbers")
        table = pd.DataFrame({name: split_row(frame) for name, frame in runs.items()}).T
        print(f"{folder}\n{to_markdown(table.round(2).rename_axis('split').reset_index())}\n")
        mean = table.mean()
        summary.append(
            {
                "runs": str(folder),
                "splits": len(table),
                **mean.round(1).to_dict(),
                "slope": round(mean["slope"], 2),
                "best line / constant": round(mean["mse, best line"] / mean["constant"], 2),
                "patient best line / constant": round(
                    mean["patient_mse, best line"] / mean["patient constant"], 2
                ),
            }
        )
    print("means over the splits (y² for an age; the ratios: of the means)")
    print(to_markdown(pd.DataFrame(summary)))


if __name__ == "__main__":
    main()
