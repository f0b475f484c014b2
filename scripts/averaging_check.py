"""Would averaging predictions close the predictor's gap? Two checks on a finished grid's
records, without training anything: (1) each quality reference (the recipe's target-only,
its own seed) scored on its test patients as recorded and with each slice's prediction
averaged with that of its left-right mirror image (flips are among the recipe's training
augmentations); (2) where the grid's own target-only run of a split is finished too (the
same recipe and split, another seed), the two runs' test predictions averaged (an ensemble
of two). Each is paired with the single run split by split (corrected resampled t-test).

    .venv/bin/python scripts/averaging_check.py results/real-ct-ich-v3 --target runs/ct-ich.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from duiit.config import load_config
from duiit.data import load_manifest
from duiit.evaluation import stats
from duiit.methods import FittedModel
from duiit.report.tables import to_markdown
from duiit.training.runtime import Runtime


def scores(pred: np.ndarray, label: np.ndarray, patient: np.ndarray) -> tuple[float, float]:
    """(slice MSE, patient MSE): a patient's slice predictions averaged, as the report does."""
    per = pd.DataFrame({"p": pred, "y": label, "g": patient}).groupby("g").mean()
    return float(np.mean((pred - label) ** 2)), float(np.mean((per.p - per.y) ** 2))


def flip_averaged(run: Path, target: pd.DataFrame, scratch: Path) -> tuple[np.ndarray, ...]:
    """The run's test slices predicted as they are and averaged with their mirror images;
    the plain predictions must equal the recorded ones (else the check reads other images)."""
    split = pd.read_csv(run / "split.csv", dtype={"patient_id": str})
    test = split[split["part"] == "test"]
    target[target["path"].isin(set(test["path"]))].to_csv(scratch, index=False)
    cfg = load_config(run / "config.yaml")
    fitted = FittedModel.load(run / "model.pt")
    rt = Runtime.from_config(cfg.train)
    modality = str(pd.read_json(run / "result.json", typ="series")["target"])
    [cohort] = load_manifest(scratch, cfg.data, True, fitted.codec.classes, predicting=modality)
    with torch.no_grad():
        plain = fitted.predict(cohort.images, rt)
        mirrored = fitted.predict(cohort.images.flip(-1), rt)
    recorded = pd.read_csv(run / "test_predictions.csv", dtype={"patient_id": str})
    if not np.allclose(np.sort(plain), np.sort(recorded["prediction"]), atol=1e-4):
        raise SystemExit(f"{run}: the predictions made here differ from test_predictions.csv")
    label, patient = cohort.labels.numpy(), np.asarray(cohort.patient_ids)
    return plain, (plain + mirrored) / 2, label, patient


def paired(table: pd.DataFrame, ours: str, other: str, ratio: float) -> list[object]:
    """One row: the averaged column against the single run's, per slice and per patient."""
    table = table.dropna(subset=[f"{ours} mse"])
    row: list[object] = [ours]
    for level in ("mse", "patient_mse"):
        mine, theirs = table[f"{ours} {level}"], table[f"{other} {level}"]
        c = stats.compare(mine, theirs, ratio)
        lower = int((mine < theirs).sum())
        row += [round(theirs.mean(), 1), round(mine.mean(), 1), f"{lower} of {c.n}", round(c.p, 3)]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a grid folder (or its kept records)")
    parser.add_argument("--target", type=Path, required=True, help="the grid's target manifest")
    args = parser.parse_args()
    target = pd.read_csv(args.target, dtype={"patient_id": str})
    scratch = args.target.parent / f".{args.target.stem}-averaging-check.csv"
    rows, ratios = [], []
    try:
        for ref in sorted((args.folder / "references").glob("split-*")):
            plain, flipped, label, patient = flip_averaged(ref, target, scratch)
            row = {"split": ref.name}
            for name, pred in (("single", plain), ("flip-averaged", flipped)):
                row[f"{name} mse"], row[f"{name} patient_mse"] = scores(pred, label, patient)
            own = args.folder / "runs" / "PURE-CT" / "target_only" / ref.name
            if (own / "test_predictions.csv").exists():
                other = pd.read_csv(own / "test_predictions.csv", dtype={"patient_id": str})
                mine = pd.read_csv(ref / "test_predictions.csv", dtype={"patient_id": str})
                both = mine.merge(other, on=["path", "slice"], suffixes=("", "_other"))
                pred = (both["prediction"] + both["prediction_other"]).to_numpy() / 2
                scored = scores(pred, both["label"].to_numpy(), both["patient_id"].to_numpy())
                row["two-seed mse"], row["two-seed patient_mse"] = scored
            rows.append(row)
            n = pd.read_json(ref / "result.json", typ="series")["n"]
            ratios.append(n["test"] / n["train"])
    finally:
        scratch.unlink(missing_ok=True)
    table = pd.DataFrame(rows).set_index("split")
    print(to_markdown(table.round(1).reset_index()))
    ratio = float(np.median(ratios))
    tests = [paired(table, "flip-averaged", "single", ratio)]
    if "two-seed mse" in table:
        tests.append(paired(table, "two-seed", "single", ratio))
    columns = ["averaged"] + [
        f"{level} {what}"
        for level in ("slice", "patient")
        for what in ("single", "averaged", "averaged lower", "p (corrected)")
    ]
    print(f"mean over the splits each has; corrected t-test, n_test/n_train = {ratio:.3f}")
    print(to_markdown(pd.DataFrame(tests, columns=columns)))


if __name__ == "__main__":
    main()
