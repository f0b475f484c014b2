"""Multi-task learning (MTL): one shared backbone, one head per modality; the target head is
the one kept for prediction."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import FittedModel, LabelCodec, Method, register
from duiit.methods.predictor_task import modality_groups
from duiit.methods.target_only import fit_predictor


@register
class MultiTask(Method):
    name = "multitask"
    uses_sources = True
    description = "shared backbone, one head per modality (MTL)"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        cohorts = [target_train, *sources]
        groups = modality_groups(cohorts, codec, self.rt, per_head=True)
        return fit_predictor(
            self,
            groups,
            target_val,
            codec,
            run_dir,
            "predictor",
            max(map(len, cohorts)),
            heads=len(groups),
        )
