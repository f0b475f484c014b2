"""The in-memory form of one modality's images, labels and patients, and the one rule for
keeping a few evenly spaced slices of a stack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import torch

T = TypeVar("T")


def evenly_spaced(items: Sequence[T], n: int) -> list[T]:
    """`n` of `items` that cut them into n + 1 equal runs, ends excluded: item k·len // (n + 1)
    for k = 1..n (27 slices, n = 5: 4, 9, 13, 18, 22; n = 1: the middle one). Ends are
    excluded because the first and last slices of a head stack (skull base, vertex) show the
    least anatomy. All of them when n is 0 or at least len(items). The one rule behind both
    `data.slices_per_patient` and `duiit data import --slices`."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[k * len(items) // (n + 1)] for k in range(1, n + 1)]


@dataclass
class Cohort:
    """One modality: images (N, 1, H, W) float16 in [-1, 1], labels (N,), patient ids (N,).

    Labels are float32 values for regression or int64 class indices into `classes`.
    `meta` keeps, per image, where it came from (file, slice, CSV line) for traceability.
    """

    modality: str
    images: torch.Tensor
    labels: torch.Tensor
    patient_ids: np.ndarray
    meta: pd.DataFrame
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if not (self.labels.shape[0] == len(self.patient_ids) == len(self.meta) == n):
            raise ValueError("cohort fields disagree on the number of images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index: np.ndarray | list[int]) -> Cohort:
        """The images at `index`, all fields kept in step."""
        idx = np.asarray(index, dtype=np.int64)
        t = torch.from_numpy(idx)
        return Cohort(
            self.modality,
            self.images[t],
            self.labels[t],
            self.patient_ids[idx],
            self.meta.iloc[idx].reset_index(drop=True),
            self.classes,
        )

    def central_slices(self, n: int) -> Cohort:
        """At most `n` images per patient, `evenly_spaced` through that patient's images in
        manifest order. n=0 keeps everything."""
        if n <= 0:
            return self
        keep: list[int] = []
        for pid in dict.fromkeys(self.patient_ids):  # patients in order of appearance
            keep.extend(evenly_spaced(np.flatnonzero(self.patient_ids == pid).tolist(), n))
        return self.subset(sorted(keep))

    def foreground(self) -> np.ndarray:
        """Each image's share of pixels above the background (-1 after normalisation, with a
        margin of 2.5 % of the range): how much head a slice holds."""
        return (self.images.float() > -0.95).flatten(1).float().mean(1).numpy()

    def with_foreground(self, least: float) -> Cohort:
        """The images whose foreground share is at least `least` (0 keeps everything)."""
        return self if least <= 0 else self.subset(np.flatnonzero(self.foreground() >= least))

    def files(self) -> list[Path]:
        """Each image's file, resolved (a manifest's paths are relative to its folder)."""
        return [
            (Path(m).parent / p).resolve()
            for m, p in zip(self.meta["manifest"], self.meta["path"], strict=True)
        ]

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patient_ids))
