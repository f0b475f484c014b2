"""Domain-adversarial training (DA/DANN): the predictor learns from target and source labels
while a gradient-reversal layer makes its features indistinguishable across modalities."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import FittedModel, LabelCodec, Method, register
from duiit.methods.predictor_task import modality_groups
from duiit.methods.target_only import fit_predictor


@register
class Dann(Method):
    name = "dann"
    uses_sources = True
    description = "domain-adversarial features via gradient reversal (DA)"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        cohorts = [target_train, *sources]
        groups = modality_groups(cohorts, codec, self.rt, per_domain=True)
        return fit_predictor(
            self,
            groups,
            target_val,
            codec,
            run_dir,
            "predictor",
            max(map(len, cohorts)),
            domains=len(groups),
        )
