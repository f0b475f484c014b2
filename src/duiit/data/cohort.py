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

    def central_slices(self, n: int) -> Cohort:
        """At most `n` images per patient, evenly spaced through that patient's images in
        manifest order, ends excluded (for 27 slices and n=5: slices 4, 9, 13, 18, 22), as
        the LGG release took 5 slices at 30-70 % of each stack. n=0 keeps everything."""
        if n <= 0:
            return self
        keep: list[int] = []
        for pid in dict.fromkeys(self.patient_ids):  # patients in order of appearance
            idx = np.flatnonzero(self.patient_ids == pid)
            if len(idx) > n:
                idx = idx[(np.arange(1, n + 1) * len(idx)) // (n + 1)]
            keep.extend(idx.tolist())
        return self.subset(sorted(keep))

    @property
    def n_patients(self) -> int:
        return len(np.unique(self.patient_ids))
