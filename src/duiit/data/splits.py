"""Seeded train/val/test splits that never put one patient on two sides."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from duiit.data.cohort import Cohort
from duiit.errors import DuiitError, DuiitWarning


@dataclass(frozen=True)
class Split:
    """Image indices of each part of a cohort."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def are_counts(sizes: Sequence[float]) -> bool:
    """Whether `data.split` gives image counts: three whole numbers summing to more than 1
    (e.g. [1887, 271, 280]). Anything else is fractions, scaled to sum to 1 ([0.77, 0.11,
    0.12]; [1, 0, 0] is all train)."""
    return all(float(s).is_integer() for s in sizes) and sum(sizes) > 1


def image_goals(sizes: Sequence[float], n_images: int, modality: str) -> np.ndarray:
    """How many images (train, val, test) `data.split` asks for in a cohort of `n_images`:
    counts as given, fractions times `n_images`. Refuses sizes no cohort can meet."""
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) <= 0:
        raise DuiitError(
            f"data.split={list(sizes)} must be three non-negative train/val/test "
            "fractions, not all zero (e.g. [0.77, 0.11, 0.12]), or image counts"
        )
    if not are_counts(sizes):
        if max(sizes) > 1:
            raise DuiitError(
                f"data.split={list(sizes)} mixes fractions and counts: give fractions (each "
                "at most 1, e.g. [0.77, 0.11, 0.12]) or whole image counts (e.g. [1887, 271, 280])"
            )
        return np.asarray(sizes, dtype=float) / sum(sizes) * n_images
    counts = [int(s) for s in sizes]
    if counts[0] == 0:
        raise DuiitError(f"data.split={counts} leaves no image to train on; give a train count")
    if sum(counts) > n_images:
        raise DuiitError(
            f"data.split={counts} asks for {sum(counts)} images but the {modality} cohort has "
            f"{n_images}; give counts summing to at most {n_images}, or fractions such as "
            "[0.77, 0.11, 0.12]"
        )
    return np.asarray(counts, dtype=float)


def split_cohort(
    cohort: Cohort,
    sizes: Sequence[float] = (0.77, 0.11, 0.12),
    seed: int = 0,
    by: str = "patient",
) -> Split:
    """Split by patient (default) so slices of one patient never leak into the test set.

    `sizes` (data.split) are train/val/test fractions of the images, or image counts (see
    `are_counts`). Patients are shuffled with `seed`, then taken whole into test, then val,
    each until it holds at least its share of the images (every part with a share gets at
    least one patient while one is left for train); with fractions the rest is train. With
    counts train is filled the same way and the patients left over are in no part (a
    warning says how many images that leaves out): whole patients make each part a little
    larger than its count, and train smaller when test and val left too few. `by="image"`
    splits slices independently, which leaks and is only for comparison with work that did
    so; there counts are met exactly.
    """
    goals = image_goals(sizes, len(cohort), cohort.modality)
    counts = are_counts(sizes)
    rng = np.random.default_rng(seed)
    groups = np.arange(len(cohort)) if by == "image" else cohort.patient_ids
    units, inverse = np.unique(groups, return_inverse=True)
    if len(units) < 3:
        raise DuiitError(
            f"the {cohort.modality} cohort has {len(units)} "
            f"{'images' if by == 'image' else 'patients'}; a train/val/test split "
            "needs at least 3"
        )
    if counts and goals.sum() < len(cohort):
        warnings.warn(
            f"data.split={[int(g) for g in goals]} asks for {int(goals.sum())} of the "
            f"{cohort.modality} cohort's {len(cohort)} images; the other images are in no "
            "part (fractions summing to 1, e.g. [0.77, 0.11, 0.12], use them all)",
            DuiitWarning,
            stacklevel=2,
        )
    sizes_per_unit = np.bincount(inverse)
    order = rng.permutation(len(units))
    part = np.full(len(units), -1 if counts else 0)  # 0 train, 1 val, 2 test, -1 none
    taken = 0
    pos = 0
    for code in (2, 1, 0) if counts else (2, 1):
        goal = taken + goals[code]
        first = True
        last = len(order) - (code != 0)  # test and val leave one unit for train
        # Every part gets at least one unit while enough remain for train.
        while pos < last and (taken < goal or (first and goals[code] > 0)):
            part[order[pos]] = code
            taken += sizes_per_unit[order[pos]]
            pos += 1
            first = False
    img_part = part[inverse]
    return Split(*(np.flatnonzero(img_part == code) for code in (0, 1, 2)))


# What can be wrong with a split's parts: the first refuses it, the others make its numbers
# mean less (phrases completed with the split(s) they happen in).
NO_TEST = "leaves the test part empty in"
NO_VAL = "leaves the validation part empty in"
ONE_TEST_PATIENT = "puts 1 patient in the test part of"
_CONSEQUENCE = {
    NO_VAL: "the predictor is not chosen by validation loss (its last step is kept)",
    ONE_TEST_PATIENT: "too few for patient-level scores and R² (2 or more)",
}


def part_problems(split: Split, cohort: Cohort) -> list[str]:
    """Which of NO_TEST, NO_VAL, ONE_TEST_PATIENT a split has."""
    found = []
    if not len(split.test):
        found.append(NO_TEST)
    elif len(set(cohort.patient_ids[split.test])) == 1:
        found.append(ONE_TEST_PATIENT)
    if not len(split.val):
        found.append(NO_VAL)
    return found


def check_parts(
    problems: dict[str, list[int]], sizes: Sequence[float], cohort: Cohort, warn: bool = True
) -> None:
    """Refuse splits with no test image; warn (once, naming the splits) of the others.
    `problems` maps each problem of `part_problems` to the splits (seeds) that have it."""

    def where(seeds: list[int]) -> str:
        return f"split{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"

    if NO_TEST in problems:
        raise DuiitError(
            f"data.split={list(sizes)} {NO_TEST} {where(problems[NO_TEST])} of the "
            f"{cohort.modality} cohort ({cohort.n_patients} patients); give the test part a "
            "share, e.g. [0.77, 0.11, 0.12], or use more patients"
        )
    for problem, seeds in problems.items() if warn else ():
        warnings.warn(
            f"data.split={list(sizes)} {problem} {where(seeds)} ({cohort.modality}, "
            f"{cohort.n_patients} patients): {_CONSEQUENCE[problem]}",
            DuiitWarning,
            stacklevel=2,
        )
