"""The predictor-training step every baseline composes.

Each step draws one batch of `predictor.batch_size` from each group (target, a translated
source, a source...), runs the shared backbone once over all of them, scores each group
with its head, and optionally adds a domain-adversarial loss on the features (DANN). How
the predictor learns is the recipe's (methods/recipe.py: network, optimiser, schedule,
loss, augmentation of every group, mixup); a method's own augmentation (the augmentation
baselines), when given, is applied to its group before the recipe's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from duiit.config import Config
from duiit.data.cohort import Cohort
from duiit.methods import recipe
from duiit.methods.base import Batches, LabelCodec, predictor_selection
from duiit.models import Predictor
from duiit.training.runtime import Runtime


@dataclass
class Group:
    """A source of training batches: which head scores it and which domain it is."""

    batches: Batches
    head: int = 0
    domain: int = 0
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None


def modality_groups(
    cohorts: list[Cohort],
    codec: LabelCodec,
    rt: Runtime,
    per_head: bool = False,
    per_domain: bool = False,
) -> list[Group]:
    """One group per cohort; optionally each with its own head (MTL) or domain label (DANN)."""
    return [
        Group(Batches(c, codec, rt), head=k if per_head else 0, domain=k if per_domain else 0)
        for k, c in enumerate(cohorts)
    ]


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
        self.groups, self.val, self.cfg, self.rt, self.codec = groups, val, cfg, rt, codec
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

    def batch(self, g: Group) -> tuple[torch.Tensor, torch.Tensor]:
        """One group's training batch: drawn, augmented (the method's, then the recipe's),
        mixed up when the recipe says so (regression only)."""
        p = self.cfg.predictor
        x, y = g.batches.sample(self.gen, p.batch_size)
        if g.augment is not None:
            x = g.augment(x)
        if self.augment is not None:
            x = self.augment(x).to(x.dtype)
        if p.mixup > 0 and self.codec.classes is None:
            x, y = recipe.mixup(x, y, p.mixup, self.gen)
        return x, y

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        xs, ys = zip(*(self.batch(g) for g in self.groups), strict=True)
        kind = self.cfg.predictor.loss
        with self.rt.autocast():
            feats = self.predictor.features(torch.cat(xs))
            parts = feats.split([x.shape[0] for x in xs])
            pred = sum(
                self.codec.loss(self.predictor.from_features(f, g.head), y, kind)
                for g, f, y in zip(self.groups, parts, ys, strict=True)
            ) / len(self.groups)
            losses = {"pred": pred}
            total = pred
            if self.domain_head is not None:
                # DANN's schedule: the reversal weight grows from 0 to 1 over training.
                p = step / self.total_steps
                weight = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
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
