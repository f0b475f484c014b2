"""The in-memory form of one modality's images, labels and patients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


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

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patient_ids))
