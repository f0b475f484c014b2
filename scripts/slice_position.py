"""Would the slice's place in its stack help the age predictor? Measured before building it
into every method's predictor (issue 23's last untried input), on an experiment folder's
saved runs, without training a network:

- the classical baseline's features -> ridge, with and without the slice's place (a spline
  of its rank in the patient's stack, 0 at the first slice, 1 at the last), fitted on each
  split's training patients (strength by patient-grouped CV, as `features_ridge`);
- the saved CNN's predictions, recalibrated on the split's validation patients by a ridge
  on the prediction alone, and on the prediction with the place (spline and interaction):
  the place's gain is the difference between the two, not the recalibration's.

The place comes from the integer in each file's name (CT-ICH's brain/<n>.jpg), ranked within
its patient.

    .venv/bin/python scripts/slice_position.py runs/ct-ich-learning-mse --method target_only
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from flip_average import saved_runs, squared_errors
from sklearn.preprocessing import SplineTransformer

from duiit.evaluation import stats
from duiit.methods.base import FittedModel
from duiit.methods.classical import grouped_search, image_features
from duiit.training.runtime import Runtime


def places(paths: np.ndarray, patients: np.ndarray) -> np.ndarray:
    """Each slice's rank in its patient's stack by the number in its file name, in [0, 1]."""
    numbers = []
    for p in paths:
        found = re.findall(r"\d+", Path(p).stem)
        if not found:
            raise SystemExit(f"{p}: no slice number in the file name")
        numbers.append(int(found[-1]))
    frame = pd.DataFrame({"n": numbers, "g": patients})
    rank = frame.groupby("g")["n"].rank(method="first") - 1
    size = frame.groupby("g")["n"].transform("size") - 1
    return (rank / size.clip(lower=1)).to_numpy()


def spline(place: np.ndarray) -> np.ndarray:
    """A cubic B-spline basis of the place (5 knots on [0, 1]): any smooth curve of it."""
    basis = SplineTransformer(n_knots=5, degree=3).fit(np.array([[0.0], [1.0]]))
    return basis.transform(place[:, None])


def main() -> None:
    runs, target = saved_runs(__doc__)
    rt = Runtime.create("cpu", "fp32")
    paths, patients = target.meta["path"].to_numpy(), target.patient_ids
    labels = target.labels.numpy().astype(float)
    place = spline(places(paths, patients))
    features = image_features(target.images)
    rows = []
    for run_dir, split in zip(runs["run_dir"], runs["split"], strict=True):
        run = Path(run_dir)
        parts = pd.read_csv(run / "split.csv")
        part = {
            k: np.isin(paths, parts.loc[parts["part"] == k, "path"])
            for k in ("train", "val", "test")
        }
        tr, va, te = part["train"], part["val"], part["test"]
        preds = {}
        for name, x in (("ridge", features), ("ridge+place", np.hstack([features, place]))):
            preds[name] = grouped_search(x[tr], labels[tr], patients[tr], classes=False).predict(
                x[te]
            )
        model = FittedModel.load(run / "model.pt")
        cnn = np.zeros(len(labels))
        cnn[va | te] = model.predict(target.images[va | te].float(), rt).ravel()
        preds["cnn"] = cnn[te]
        with_place = np.hstack([cnn[:, None], place, cnn[:, None] * place])
        for name, x in (("cnn recal", cnn[:, None]), ("cnn recal+place", with_place)):
            preds[name] = grouped_search(x[va], labels[va], patients[va], classes=False).predict(
                x[te]
            )
        scores = {k: squared_errors(v, labels[te], patients[te]) for k, v in preds.items()}
        rows.append({"split": split, **{f"{k} {m}": v[i] for k, v in scores.items()
                                        for i, m in enumerate(("slice", "patient"))}})  # fmt: skip
    table = pd.DataFrame(rows)
    print(table.round(1).to_string(index=False))
    print("mean:", "  ".join(f"{c} {table[c].mean():.1f}" for c in table.columns[1:]))
    ratio = stats.holdout_ratio(runs)
    tests = []
    for base, other in (("ridge", "ridge+place"), ("cnn recal", "cnn recal+place"),
                        ("cnn", "cnn recal")):  # fmt: skip
        for level in ("slice", "patient"):
            c = stats.compare(table[f"{other} {level}"], table[f"{base} {level}"], ratio)
            lower = int((table[f"{other} {level}"] < table[f"{base} {level}"]).sum())
            tests.append((f"{other} vs {base}", level, c.mean_diff, lower, c.p, c.p_wilcoxon))
    out = pd.DataFrame(tests, columns=["test", "mse", "lower by", "splits lower", "p", "p (W)"])
    out["q (BH)"] = stats.bh(out["p"])
    print(f"\nPaired over {len(table)} splits (corrected resampled t-test; one BH family):")
    print(out.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
