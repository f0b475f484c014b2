"""Domain-adversarial training (DA/DANN): the predictor learns from target and source labels
while a gradient-reversal layer makes its features indistinguishable across modalities."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import FittedModel, Method, register
from duiit.methods.target_only import fit_all_modalities


@register
class Dann(Method):
    name = "dann"
    uses_sources = True
    description = "domain-adversarial features via gradient reversal (DA)"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        return fit_all_modalities(self, target_train, target_val, sources, run_dir, per_domain=True)
