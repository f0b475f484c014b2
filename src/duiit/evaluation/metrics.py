"""Prediction metrics on the real target test split."""

from __future__ import annotations

import numpy as np
import pandas as pd


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MSE (the paper's measure), MAE and R² in label units."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    err = pred - true
    ss_tot = float(((true - true.mean()) ** 2).sum())
    return {
        "mse": float((err**2).mean()),
        "mae": float(np.abs(err).mean()),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }


def classification_metrics(pred: np.ndarray, true: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (mean over classes present in truth or prediction)."""
    pred, true = np.asarray(pred, int), np.asarray(true, int)
    f1s = []
    for k in range(n_classes):
        tp = int(((pred == k) & (true == k)).sum())
        fp, fn = int(((pred == k) & (true != k)).sum()), int(((pred != k) & (true == k)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((pred == true).mean()), "macro_f1": float(np.mean(f1s))}


def per_patient(
    pred: np.ndarray,
    patients: np.ndarray,
    classes: tuple[str, ...] | None = None,
    true: np.ndarray | None = None,
) -> pd.DataFrame:
    """A patient's slice predictions combined, one row per patient (in order of appearance):
    the mean with its spread over the slices (`prediction_sd`, sample sd; blank for one
    slice) for regression; for classes the most frequent class index and the share of the
    patient's slices that predict it (`agreement`). With `true`, the patient's label beside
    it (mean, or most frequent class). The patient-level scores and `duiit predict`'s
    per-patient table both come from here."""
    ids = pd.Series(np.asarray(patients, dtype=str), name="patient_id")
    frame = pd.DataFrame({"p": np.asarray(pred, float)})
    if true is not None:
        frame["t"] = np.asarray(true, float)
    groups = frame.groupby(ids, sort=False)
    out = pd.DataFrame({"slices": groups.size()})
    if classes is None:
        out["prediction"] = groups["p"].mean()
        out["prediction_sd"] = groups["p"].std()
        if true is not None:
            out["label"] = groups["t"].mean()
        return out.reset_index()
    votes = groups["p"].agg(lambda v: v.value_counts().sort_index().idxmax())
    out["prediction"] = votes.astype(int)
    out["agreement"] = groups["p"].agg(lambda v: v.value_counts().max() / len(v))
    if true is not None:
        out["label"] = groups["t"].agg(lambda v: v.value_counts().sort_index().idxmax())
        out["label"] = out["label"].astype(int)
    return out.reset_index()


def prediction_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    classes: tuple[str, ...] | None,
    patients: np.ndarray | None = None,
) -> dict[str, float]:
    """Slice-level metrics and, for regression with `patients` given, the same metrics per
    patient (`patient_mse`, ...): each patient's slice predictions averaged, so a patient
    with many slices weighs as much as one with a single slice."""
    if classes is not None:
        return classification_metrics(pred, true, len(classes))
    out = regression_metrics(pred, true)
    if patients is not None:
        per = per_patient(pred, patients, true=true)
        scores = regression_metrics(per["prediction"], per["label"])
        out |= {f"patient_{k}": v for k, v in scores.items()}
    return out


MEAN_PREDICTOR = "predict the mean"
TRAIN_MEAN_PREDICTOR = "predict the training mean"
MAJORITY_PREDICTOR = "predict the majority class"


def constant_predictor_metrics(
    true: np.ndarray,
    classes: tuple[str, ...] | None,
    patients: np.ndarray | None = None,
    value: float | None = None,
) -> dict[str, float]:
    """The scores of predicting one constant for every test image: the test labels' mean
    (so the MSE is their variance and R² is 0) or, for classes, their most frequent class.
    The floor any method has to clear to have learnt anything. `value`: another constant
    (the training labels' mean: what a model that learnt nothing predicts)."""
    true = np.asarray(true)
    if classes is not None:
        constant = np.full_like(true, np.bincount(true.astype(int)).argmax())
    else:
        constant = np.full(true.shape, float(np.mean(true) if value is None else value))
    return prediction_metrics(constant, true, classes, patients)
