"""The predictor recipe: how every method's predictor is built and trained (`predictor`
section of the configuration). A method decides what images and labels the predictor sees;
this module alone decides the network, its starting weights, the optimiser and schedule, the
loss, the batch and the training-time augmentation. That is what makes methods comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from duiit.config import Config, PredictorConfig
from duiit.models import Predictor
from duiit.models.weights import load_predictor_weights
from duiit.training.runtime import Runtime

LrFactor = Callable[[int], float]


def build_predictor(
    cfg: Config, out_dim: int, heads: int = 1, quiet: bool = False, weights: bool = True
) -> Predictor:
    """The recipe's network, started from `predictor.weights` when a file is given (and
    `weights`: a fine-tuning stage starts from its own pre-training instead)."""
    p = cfg.predictor
    net = Predictor(p.network, out_dim, heads=heads, width=p.width, norm=p.norm, dropout=p.dropout)
    if weights and p.weights:
        load_predictor_weights(net, Path(p.weights), quiet=quiet)
    return net


def optimizer(p: PredictorConfig, params: Iterable[nn.Parameter], rt: Runtime):
    """AdamW (decoupled weight decay) or Adam (weight decay as an L2 penalty)."""
    cls = torch.optim.AdamW if p.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=p.lr, weight_decay=p.weight_decay, fused=True if rt.fused else None)


def lr_factor(p: PredictorConfig, steps: int) -> LrFactor:
    """The multiplier of `predictor.lr` at each step. onecycle: from lr/25 up to lr over the
    warm-up (cosine), then cosine down to lr/1e4, as torch's OneCycleLR; cosine: linear
    warm-up from 0, then cosine to 0; constant: 1."""
    warm = max(1, int(steps * p.warmup))

    def cos(a: float, b: float, t: float) -> float:
        return b + (a - b) * (1 + math.cos(math.pi * min(1.0, t))) / 2

    def factor(step: int) -> float:
        if p.schedule == "constant":
            return 1.0
        if p.schedule == "cosine":
            if step < warm:
                return (step + 1) / warm
            return cos(1.0, 0.0, (step - warm) / max(1, steps - warm))
        if step < warm:  # onecycle
            return cos(1 / 25, 1.0, step / warm)
        return cos(1.0, 1 / 25e4, (step - warm) / max(1, steps - warm))

    return factor


def augmentation(p: PredictorConfig) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The training-time augmentation of the recipe (kornia, on the device, differentiable so
    that DUIIT's task gradient still reaches G through it); None when `predictor.augment` is
    empty. Images are [-1, 1] with background at -1, which is what affine moves fill in."""
    parts: list[nn.Module] = []
    if "flip" in p.augment:
        parts.append(K.RandomHorizontalFlip())
    if "affine" in p.augment:
        parts.append(K.RandomAffine(degrees=10.0, translate=(0.06, 0.06), scale=(0.9, 1.1)))
    elif "shift" in p.augment:  # no scaling: where a head's size in pixels carries the label
        parts.append(K.RandomAffine(degrees=10.0, translate=(0.06, 0.06)))
    if "intensity" in p.augment:
        parts.append(K.ColorJiggle(brightness=0.1, contrast=0.15, p=0.8))
    if not parts:
        return None
    pipeline = K.AugmentationSequential(*parts)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return pipeline((x.float() + 1) / 2).clamp(0, 1) * 2 - 1

    return apply


def regression_loss(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The recipe's loss on standardised labels."""
    out = out.float()
    if kind == "l1":
        return F.l1_loss(out, target)
    if kind == "huber":
        return F.huber_loss(out, target)
    return F.mse_loss(out, target)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) for regression: each image blended with another of the batch
    by a Beta(alpha, alpha) weight, and its label by the same weight."""
    n = x.shape[0]
    lam = torch.distributions.Beta(alpha, alpha).sample((n,)).to(x.device)
    perm = torch.randperm(n, generator=gen).to(x.device)
    lx = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return x * lx + x[perm] * (1 - lx), y * lam + y[perm] * (1 - lam)


def predictor_steps(p: PredictorConfig, n_images: int) -> int:
    """`predictor.steps`, or `predictor.epochs` passes over `n_images` at
    `predictor.batch_size`."""
    return p.steps or p.epochs * steps_per_epoch(p, n_images)


def steps_per_epoch(p: PredictorConfig, n_images: int) -> int:
    return max(1, math.ceil(n_images / p.batch_size))
