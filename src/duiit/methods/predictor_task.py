"""The predictor-training step every baseline composes.

Each step draws `predictor.batch_size` real target images and, beside them, the sources'
share of the batch (`predictor.source_share`, split among the translated or raw sources),
runs the shared backbone once over all of them, scores each group with its head (a
weighted mean: a source image weighs `predictor.source_weight`), and optionally adds a
domain-adversarial loss on the features (DANN). How the predictor learns is the recipe's
(methods/recipe.py: network, optimiser, schedule, loss, augmentation of every group,
mixup); a method's own augmentation (the augmentation baselines), when given, is applied to
its group before the recipe's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from duiit.config import Config, PredictorConfig
from duiit.data.cohort import Cohort
from duiit.methods import recipe
from duiit.methods.base import (
    Batches,
    LabelCodec,
    predictor_selection,
    source_batches,
    source_counts,
    weighted_loss,
)
from duiit.models import Predictor
from duiit.training.runtime import Runtime


@dataclass
class Group:
    """A source of training batches: which head scores it, which domain it is, and whether
    it is a source (its share of the batch and its loss weight are `predictor.source_share`
    and `predictor.source_weight`) or the real target."""

    batches: Batches
    head: int = 0
    domain: int = 0
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    source: bool = False


def modality_groups(
    target: Cohort | None,
    sources: list[Cohort],
    codec: LabelCodec,
    cfg: Config,
    rt: Runtime,
    per_head: bool = False,
    per_domain: bool = False,
    label_reference: Cohort | None = None,
) -> list[Group]:
    """One group per cohort, the target (if any) first; optionally each with its own head
    (MTL) or domain label (DANN). Sources match `label_reference`'s labels (the target
    training set) when `predictor.match_labels` says so."""
    reference = label_reference if label_reference is not None else target
    groups = [] if target is None else [Group(Batches(target, codec, rt))]
    for c in sources:
        batches = (
            source_batches(c, reference, codec, cfg, rt)
            if reference is not None
            else Batches(c, codec, rt)
        )
        groups.append(Group(batches, source=True))
    for k, g in enumerate(groups):
        g.head, g.domain = (k if per_head else 0), (k if per_domain else 0)
    return groups


def batch_plan(groups: list[Group], p: PredictorConfig) -> list[tuple[int, float]]:
    """Each group's images per step and loss weight: beside a real target group of
    `batch_size` (weight 1), the sources share `source_counts` (weight `source_weight`);
    a stage without target images (TL's pre-training) gives every group a full batch."""
    if all(g.source for g in groups):
        return [(p.batch_size, 1.0)] * len(groups)
    counts = iter(source_counts(p, sum(g.source for g in groups) or 1))
    return [(next(counts), p.source_weight) if g.source else (p.batch_size, 1.0) for g in groups]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times a constant backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward (to the last bit, in bf16 too); the gradient flowing back is
    multiplied by `factor`: with a negative factor, DANN's gradient reversal (Ganin &
    Lempitsky)."""
    return _ScaleGrad.apply(x, factor)


class PredictorTask:
    """Trains a predictor (optionally with a domain classifier) on groups of batches."""

    def __init__(
        self,
        groups: list[Group],
        val: Batches,
        cfg: Config,
        rt: Runtime,
        codec: LabelCodec,
        predictor: Predictor | None = None,
        heads: int = 1,
        domains: int = 0,
        total_steps: int = 1,
    ) -> None:
        self.val, self.cfg, self.rt, self.codec = val, cfg, rt, codec
        # Groups that take no images a step (source_share 0) are left out.
        plan = batch_plan(groups, cfg.predictor)
        self.groups = [g for g, (n, _) in zip(groups, plan, strict=True) if n > 0]
        self.plan = [(n, w) for n, w in plan if n > 0]
        self.predictor = predictor or recipe.build_predictor(cfg, codec.out_dim, heads=heads)
        rt.prepare(self.predictor, [self.predictor.backbone])  # features() bypasses forward
        params = list(self.predictor.parameters())
        self.domain_head: nn.Module | None = None
        if domains > 1:
            d = self.predictor.feature_dim
            self.domain_head = nn.Sequential(
                nn.Linear(d, d // 2), nn.ReLU(True), nn.Linear(d // 2, domains)
            ).to(rt.device)
            params += list(self.domain_head.parameters())
        self.opt = {"P": recipe.optimizer(cfg.predictor, params, rt)}
        self.augment = recipe.augmentation(cfg.predictor)
        self.gen = rt.generator(cfg.train.seed)
        self.total_steps = max(1, total_steps)

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"predictor": self.predictor}
        if self.domain_head is not None:
            mods["domain_head"] = self.domain_head
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opt

    def lr_factors(self, steps: int) -> dict[str, recipe.LrFactor]:
        return {"P": recipe.lr_factor(self.cfg.predictor, steps)}

    def batch(self, g: Group, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One group's training batch of n: drawn, augmented (the method's, then the
        recipe's), mixed up when the recipe says so (regression only)."""
        p = self.cfg.predictor
        x, y = g.batches.sample(self.gen, n)
        if g.augment is not None:
            x = self.rt.augment(g.augment, x)
        if self.augment is not None:
            x = self.rt.augment(self.augment, x).to(x.dtype)
        if p.mixup > 0 and self.codec.classes is None:
            x, y = recipe.mixup(x, y, p.mixup, self.gen)
        return x, y

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        xs, ys = zip(
            *(self.batch(g, n) for g, (n, _) in zip(self.groups, self.plan, strict=True)),
            strict=True,
        )
        with self.rt.autocast():
            feats = self.predictor.features(torch.cat(xs))
            parts = feats.split([x.shape[0] for x in xs])
            pred = weighted_loss(
                self.codec,
                self.cfg.predictor.loss,
                [
                    (self.predictor.from_features(f, g.head), y, w)
                    for g, f, y, (_, w) in zip(self.groups, parts, ys, self.plan, strict=True)
                ],
            )
            losses = {"pred": pred}
            total = pred
            if self.domain_head is not None:
                # DANN's schedule: the reversal weight grows from 0 to domain_weight.
                p = step / self.total_steps
                ramp = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
                weight = self.cfg.predictor.domain_weight * ramp
                logits = self.domain_head(scale_grad(feats, -weight))
                domains = torch.cat(
                    [
                        torch.full((x.shape[0],), g.domain, device=feats.device)
                        for g, x in zip(self.groups, xs, strict=True)
                    ]
                )
                losses["domain"] = F.cross_entropy(logits.float(), domains)
                total = total + losses["domain"]
        self.opt["P"].zero_grad(set_to_none=True)
        total.backward()
        self.rt.step(self.opt["P"])
        return {k: v.detach() for k, v in losses.items()}

    def validate(self) -> dict[str, float]:
        return predictor_selection(self.predictor, self.val, self.codec, self.rt)

    def selected(self) -> set[str]:
        return set(self.modules())  # the predictor and its domain head, selected together

    def samples(self) -> list[torch.Tensor]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
