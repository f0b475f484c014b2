"""When has a training curve stopped moving? The evidence behind a run's `train.steps`."""

from __future__ import annotations

import numpy as np
import pandas as pd


def flat_from(steps: np.ndarray, values: np.ndarray, tolerance: float) -> int:
    """First step after which the curve, smoothed over 3 points, stays within `tolerance`
    of its final value relative to its whole fall (or rise)."""
    smooth = pd.Series(values).rolling(3, min_periods=1, center=True).mean().to_numpy()
    span = max(abs(smooth[0] - smooth[-1]), 1e-12)
    inside = np.abs(smooth - smooth[-1]) <= tolerance * span
    outside = np.flatnonzero(~inside)
    return int(steps[outside[-1] + 1]) if len(outside) else int(steps[0])
