"""CycleGAN, then train: the translator alone (DUIIT with lambda = 0 and no predictor), then
the predictor on real target images plus the translated sources."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import (
    Batches,
    FittedModel,
    Method,
    register,
    translate,
)
from duiit.methods.duiit import train_translation
from duiit.methods.predictor_task import Group
from duiit.methods.target_only import fit_predictor


@register
class CycleGan(Method):
    name = "cyclegan"
    uses_sources = True
    translates = True
    description = "CycleGAN translation without labels, then predictor on real + translated"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        task = train_translation(self, target_train, target_val, sources, run_dir, joint=False)
        codec = task.codec
        groups = [Group(Batches(target_train, codec, self.rt))]
        for c in sources:
            fake = translate(task.bank.G[c.modality], c.images, self.rt)
            groups.append(Group(Batches(c, codec, self.rt, images=fake)))
        largest = max(len(c) for c in [target_train, *sources])
        fitted = fit_predictor(self, groups, target_val, codec, run_dir, "predictor", largest)
        return task.fitted(fitted.predictor)
