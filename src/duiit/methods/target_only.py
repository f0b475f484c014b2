"""PURE: the predictor on real target images only — the floor every method must beat."""

from __future__ import annotations

from pathlib import Path

from duiit.data.cohort import Cohort
from duiit.methods import recipe
from duiit.methods.base import (
    Batches,
    FittedModel,
    LabelCodec,
    Method,
    loop_settings,
    register,
)
from duiit.methods.predictor_task import Group, PredictorTask, modality_groups
from duiit.training.loop import run_loop


def fit_predictor(
    method: Method,
    groups: list[Group],
    target_val: Cohort,
    codec: LabelCodec,
    run_dir: Path,
    stage: str,
    n_images: int,
    **task_kw,
) -> FittedModel:
    """Train a predictor on `groups` with the shared loop and the predictor recipe:
    `predictor.epochs` passes over `n_images` (the real target training set, or the largest
    source where there is no target, as in TL's pre-training), validated once a pass
    (or every train.eval_every steps if that is sooner). The common last stage of baselines."""
    cfg = method.cfg
    steps = recipe.predictor_steps(cfg.predictor, n_images)
    epoch = min(cfg.train.eval_every, recipe.steps_per_epoch(cfg.predictor, n_images))
    task = PredictorTask(
        groups,
        Batches(target_val, codec, method.rt),
        cfg,
        method.rt,
        codec,
        total_steps=steps,
        **task_kw,
    )
    settings = loop_settings(cfg, stage, steps, method.quiet, eval_every=epoch)
    run_loop(task, run_dir, settings, method.rt)
    return FittedModel(task.predictor, codec)


def fit_all_modalities(
    method: Method,
    target_train: Cohort,
    target_val: Cohort,
    sources: list[Cohort],
    run_dir: Path,
    per_head: bool = False,
    per_domain: bool = False,
) -> FittedModel:
    """One predictor on the target and every source cohort at once, each modality its own
    head (MTL) and/or its own domain label for a domain classifier (DANN); the sources come
    at their share of each batch, over `predictor.epochs` passes of the real target."""
    codec = LabelCodec.fit(target_train)
    groups = modality_groups(
        target_train, sources, codec, method.cfg, method.rt, per_head, per_domain
    )
    return fit_predictor(
        method,
        groups,
        target_val,
        codec,
        run_dir,
        "predictor",
        len(target_train),
        heads=len(groups) if per_head else 1,
        domains=len(groups) if per_domain else 0,
    )


@register
class TargetOnly(Method):
    name = "target_only"
    uses_sources = False
    description = "predictor on real target images only (PURE)"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        groups = modality_groups(target_train, [], codec, self.cfg, self.rt)
        return fit_predictor(
            self, groups, target_val, codec, run_dir, "predictor", len(target_train)
        )
