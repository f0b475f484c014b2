"""CycleGAN, then train: the translator alone (DUIIT with lambda = 0 and no predictor), then
the predictor on real target images plus the translated sources."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import (
    Batches,
    FittedModel,
    LabelCodec,
    Method,
    loop_settings,
    n_blocks,
    register,
    resolve_steps,
    translate,
)
from duiit.methods.duiit import TranslationTask
from duiit.methods.predictor_task import Group
from duiit.methods.target_only import fit_predictor
from duiit.training.loop import run_loop


@register
class CycleGan(Method):
    name = "cyclegan"
    uses_sources = True
    translates = True
    description = "CycleGAN translation without labels, then predictor on real + translated"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        task = TranslationTask(
            target_train, target_val, sources, self.cfg, self.rt, codec, joint=False
        )
        largest = max(len(c) for c in [target_train, *sources])
        run_loop(
            task,
            run_dir,
            loop_settings(self.cfg, "translator", resolve_steps(self.cfg, largest), self.quiet),
            self.rt,
        )
        groups = [Group(Batches(target_train, codec, self.rt))]
        for c in sources:
            fake = translate(task.bank.G[c.modality], c.images, self.rt)
            groups.append(Group(Batches(c, codec, self.rt, images=fake)))
        fitted = fit_predictor(self, groups, target_val, codec, run_dir, "predictor", largest)
        fitted.translators = dict(task.bank.G.items())
        fitted.translator_arch = {"ngf": self.cfg.model.ngf, "n_blocks": n_blocks(self.cfg)}
        return fitted
