"""Prediction metrics on the real target test split."""

from __future__ import annotations

import numpy as np


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


def prediction_metrics(
    pred: np.ndarray, true: np.ndarray, classes: tuple[str, ...] | None
) -> dict[str, float]:
    if classes is None:
        return regression_metrics(pred, true)
    return classification_metrics(pred, true, len(classes))
