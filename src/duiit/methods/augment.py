"""Classic augmentation of the target images, on the device with kornia.

AutoAugment's ImageNet policy needs 3 channels: the scan is repeated to 3 channels and the
result averaged back to 1. Images are [-1, 1] here and [0, 1] inside kornia.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import AutoAugment

from duiit.data.cohort import Cohort
from duiit.methods.base import Batches, FittedModel, LabelCodec, Method, register
from duiit.methods.predictor_task import Group
from duiit.methods.target_only import fit_predictor


def simple_pipeline(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Crop, flip, translation, rotation and intensity jitter."""
    return K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=(0.8, 1.0), ratio=(0.9, 1.1)),
        K.RandomHorizontalFlip(),
        K.RandomAffine(degrees=10.0, translate=(0.08, 0.08)),
        K.ColorJiggle(brightness=0.1, contrast=0.15, p=0.8),
    )


def autoaugment_pipeline(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    policy = AutoAugment(policy="imagenet")

    def apply(x: torch.Tensor) -> torch.Tensor:
        return policy(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)

    return apply


def erasing_pipeline(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return K.RandomErasing(p=0.5, scale=(0.02, 0.25), value=0.0)


def in_unit_range(
    fn: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(x: torch.Tensor) -> torch.Tensor:
        return (fn((x + 1) / 2).clamp(0, 1) * 2 - 1).detach()

    return apply


class _Augmented(Method):
    uses_sources = False
    pipeline: Callable[[int], Callable[[torch.Tensor], torch.Tensor]]

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        aug = in_unit_range(type(self).pipeline(target_train.image_size))
        groups = [Group(Batches(target_train, codec, self.rt), augment=aug)]
        return fit_predictor(
            self, groups, target_val, codec, run_dir, "predictor", len(target_train)
        )


@register
class SimpleAugment(_Augmented):
    name = "simple_augment"
    description = "target only + crop/flip/shift/rotate/intensity jitter"
    pipeline = staticmethod(simple_pipeline)


@register
class AutoAugmentMethod(_Augmented):
    name = "autoaugment"
    description = "target only + AutoAugment (ImageNet policy)"
    pipeline = staticmethod(autoaugment_pipeline)


@register
class RandomErasing(_Augmented):
    name = "random_erasing"
    description = "target only + random erasing"
    pipeline = staticmethod(erasing_pipeline)
