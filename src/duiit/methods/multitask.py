"""Multi-task learning (MTL): one shared backbone, one head per modality; the target head is
the one kept for prediction."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import Batches, FittedModel, LabelCodec, Method, register
from duiit.methods.predictor_task import Group
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
        groups = [Group(Batches(target_train, codec, self.rt), head=0)]
        groups += [Group(Batches(c, codec, self.rt), head=k + 1) for k, c in enumerate(sources)]
        return fit_predictor(
            self,
            groups,
            target_val,
            codec,
            run_dir,
            "predictor",
            max(len(c) for c in [target_train, *sources]),
            heads=len(groups),
        )
