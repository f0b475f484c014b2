"""Seeded train/val/test splits that never put one patient on two sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from duiit.data.cohort import Cohort
from duiit.errors import DuiitError


@dataclass(frozen=True)
class Split:
    """Image indices of each part of a cohort."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_cohort(
    cohort: Cohort,
    fractions: tuple[float, float, float] = (0.77, 0.11, 0.12),
    seed: int = 0,
    by: str = "patient",
) -> Split:
    """Split by patient (default) so slices of one patient never leak into the test set.

    Patients are shuffled with `seed`, then taken into test, then val, until each holds its
    fraction of the images; the rest is train. `by="image"` splits slices independently, which
    leaks and is only for comparison with work that did so.
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise DuiitError(
            f"data.split={list(fractions)} must be three non-negative train/val/test "
            "fractions, not all zero (e.g. [0.77, 0.11, 0.12])"
        )
    frac = np.asarray(fractions, dtype=float) / sum(fractions)
    rng = np.random.default_rng(seed)
    groups = np.arange(len(cohort)) if by == "image" else cohort.patient_ids
    units, inverse = np.unique(groups, return_inverse=True)
    if len(units) < 3:
        raise DuiitError(
            f"the {cohort.modality} cohort has {len(units)} "
            f"{'images' if by == 'image' else 'patients'}; a train/val/test split "
            "needs at least 3"
        )
    counts = np.bincount(inverse)
    order = rng.permutation(len(units))
    n = len(cohort)
    part = np.zeros(len(units), dtype=np.int64)  # 0 train, 1 val, 2 test
    taken = 0
    pos = 0
    for code, share in ((2, frac[2]), (1, frac[1])):
        goal = taken + share * n
        first = True
        # Every part gets at least one unit while enough remain for train.
        while pos < len(order) - 1 and (taken < goal or (first and share > 0)):
            part[order[pos]] = code
            taken += counts[order[pos]]
            pos += 1
            first = False
    img_part = part[inverse]
    return Split(*(np.flatnonzero(img_part == code) for code in (0, 1, 2)))
