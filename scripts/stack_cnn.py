"""Does the slice CNN hold what the stack summary holds? A patient-level head on a trained
target-only CNN: its pooled features averaged over each patient's stack -> ridge (strength
by CV on the training patients), alone and beside `stack_ridge`'s stack summary, against
the stack summary alone; per patient, on an experiment folder's saved runs (their model.pt:
the folder itself, not its committed records). Nothing is trained but ridges. The CNN's
features of its own training patients are those of images it was fitted on, so the ridge
learns from features tighter than a new patient's: a bound on what this head can do, not a
method.

    .venv/bin/python scripts/stack_cnn.py runs/ct-ich-learning-recipe --method target_only
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from flip_average import saved_runs

from duiit.methods.base import FittedModel
from duiit.methods.classical import grouped_search, image_features, stack_features
from duiit.report.tables import to_markdown


def main() -> None:
    runs, target = saved_runs(__doc__)
    patients = target.patient_ids
    ids, summary = stack_features(image_features(target.images), patients)
    ages = pd.Series(target.labels.numpy().astype(float)).groupby(patients).first().loc[ids]
    ages = ages.to_numpy()
    rows = []
    for run_dir, split in zip(runs["run_dir"], runs["split"], strict=True):
        net = FittedModel.load(Path(run_dir) / "model.pt").predictor.eval()
        with torch.no_grad():
            feats = torch.cat(
                [
                    net.features(target.images[i : i + 256].float())
                    for i in range(0, len(patients), 256)
                ]
            ).numpy()
        cnn = pd.DataFrame(feats).groupby(patients).mean().loc[ids].to_numpy()
        parts = pd.read_csv(Path(run_dir) / "split.csv", dtype={"patient_id": str})
        part = parts.groupby("patient_id")["part"].first()
        train = np.isin(ids, part.index[part == "train"])
        test = np.isin(ids, part.index[part == "test"])
        row = {
            "split": split,
            "test patients' mean": ((ages[test] - ages[test].mean()) ** 2).mean(),
        }
        inputs = {
            "CNN features": cnn,
            "stack summary": summary,
            "both": np.hstack([cnn, summary]),
        }
        for name, x in inputs.items():
            fit = grouped_search(x[train], ages[train], ids[train], classes=False)
            row[name] = ((fit.predict(x[test]) - ages[test]) ** 2).mean()
        rows.append(row)
    frame = pd.DataFrame(rows)
    mean = frame.mean(numeric_only=True).to_frame().T.assign(split="mean")
    print("patient MSE (y²) by what the ridge sees:")
    print(to_markdown(pd.concat([frame, mean]).round(1)))
    both_lower = int((frame["both"] < frame["stack summary"]).sum())
    print(f"both lower than the stack summary alone on {both_lower} of {len(frame)} splits")


if __name__ == "__main__":
    main()
