"""Translate first, then train: CycleGAN (the translator alone: no task signal at all; with
`model.translator=cut` or `fastcut` the CUT baseline) and
`cycada`, CyCADA-style semantic consistency (the translator steered by a target-task network
pre-trained on the real target and then frozen; CyCADA's feature-level alignment is not
part of it). Both then train a fresh predictor on real target images plus the translated
sources."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods.base import FittedModel, LabelCodec, Method, register, translate
from duiit.methods.duiit import TranslationTask, train_translation
from duiit.methods.predictor_task import modality_groups
from duiit.methods.target_only import fit_predictor


def predictor_on_translations(
    method: Method,
    task: TranslationTask,
    target_train: Cohort,
    target_val: Cohort,
    sources: list[Cohort],
    run_dir: Path,
) -> FittedModel:
    """The second stage: a predictor on the real target plus every translated source, at
    the sources' share of each batch (`predictor.source_share`), over `predictor.epochs`
    passes of the real target."""
    rt = method.rt
    translated = [
        replace(c, images=translate(task.translator.nets.G[c.modality], c.images, rt))
        for c in sources
    ]
    groups = modality_groups(target_train, translated, task.codec, method.cfg, rt)
    fitted = fit_predictor(
        method, groups, target_val, task.codec, run_dir, "predictor", len(target_train)
    )
    return task.fitted(fitted.predictor)


@register
class CycleGan(Method):
    name = "cyclegan"
    uses_sources = True
    translates = True
    description = (
        "translation without labels (model.translator: CycleGAN, or CUT/FastCUT), then "
        "predictor on real + translated"
    )

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        task = train_translation(self, target_train, target_val, sources, run_dir, "none")
        return predictor_on_translations(self, task, target_train, target_val, sources, run_dir)


@register
class Cycada(Method):
    name = "cycada"
    uses_sources = True
    translates = True
    description = (
        "CycleGAN + CyCADA-style semantic consistency: a frozen target-task network "
        "pre-trained on the real target scores G(y) against the source labels "
        "(train.lambda_sem; no feature-level alignment), then predictor on real + translated"
    )

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        frozen = fit_predictor(
            self,
            modality_groups(target_train, [], codec, self.cfg, self.rt),
            target_val,
            codec,
            run_dir,
            "pretrain",
            len(target_train),
        ).predictor
        task = train_translation(
            self, target_train, target_val, sources, run_dir, "frozen", frozen=frozen
        )
        return predictor_on_translations(self, task, target_train, target_val, sources, run_dir)
