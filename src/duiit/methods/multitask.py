"""Multi-task learning (MTL): one shared backbone, one head per modality; the target head is
the one kept for prediction."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import FittedModel, Method, register
from duiit.methods.target_only import fit_all_modalities


@register
class MultiTask(Method):
    name = "multitask"
    uses_sources = True
    description = "shared backbone, one head per modality (MTL)"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        return fit_all_modalities(self, target_train, target_val, sources, run_dir, per_head=True)
