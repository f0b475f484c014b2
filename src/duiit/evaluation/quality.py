"""How good are the translations? FID/IS on a pluggable feature extractor (torchmetrics).

Two extractors: the standard FID Inception network (needs torch-fidelity + torchvision and a
local weights file: the optional `inception` extra), and, needing nothing external, the
penultimate features of a predictor trained on real target images ("task FID"). Plus task
consistency: the error of that real-target predictor on translated images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from duiit.errors import DuiitError
from duiit.models import Predictor


class PredictorFeatures(nn.Module):
    """Feature extractor for torchmetrics: [0, 1] images -> a predictor's pooled features."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor.eval()
        self.num_features = predictor.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictor.features(images.float() * 2 - 1).double()


def fid(real: torch.Tensor, fake: torch.Tensor, extractor: nn.Module, batch: int = 128) -> float:
    """Fréchet distance between the extractor's features of two image sets in [-1, 1].

    Computed on the extractor's device: the metric (whose feature sums torchmetrics keeps
    where the metric lives) and each batch of images (CPU float16) are moved there. An
    extractor without weights computes where its input lies: on the CPU."""
    device = next((t.device for t in extractor.parameters()), torch.device("cpu"))
    metric = FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=True)
    metric.to(device).eval()
    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for i in range(0, len(images), batch):
                chunk = images[i : i + batch].to(device).float()
                metric.update(((chunk + 1) / 2).clamp(0, 1), real=is_real)
        return float(metric.compute())


def inception_scores(real: torch.Tensor, fake: torch.Tensor, weights: Path) -> dict[str, float]:
    """Standard FID and Inception Score with the FID Inception network from a local file.

    Raises DuiitError with the reason where torch-fidelity/torchvision are missing (they do
    not import beside the CPU-only torch wheel) or the weights file is absent.
    """
    if not Path(weights).is_file():
        raise DuiitError(
            f"Inception weights {weights} not found; point quality.inception_weights "
            "at a local copy of pt_inception-2015-12-05 weights"
        )
    try:
        from torchmetrics.image.inception import InceptionScore
    except (ImportError, RuntimeError) as exc:
        raise DuiitError(
            f"standard FID/IS need the optional extra: pip install 'duiit[inception]' "
            f"on a CUDA-enabled torch ({exc})"
        ) from None
    to_rgb = lambda x: ((x.float() + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)  # noqa: E731
    try:
        fid_metric = FrechetInceptionDistance(
            feature=2048, feature_extractor_weights_path=str(weights)
        )
        is_metric = InceptionScore(
            feature="logits_unbiased", feature_extractor_weights_path=str(weights)
        )
    except (ImportError, ModuleNotFoundError, RuntimeError) as exc:
        raise DuiitError(
            f"standard FID/IS need the optional extra: pip install 'duiit[inception]' "
            f"on a CUDA-enabled torch ({exc})"
        ) from None
    with torch.no_grad():
        fid_metric.update(to_rgb(real), real=True)
        fid_metric.update(to_rgb(fake), real=False)
        is_metric.update(to_rgb(fake))
        is_mean, is_std = is_metric.compute()
    return {
        "fid_inception": float(fid_metric.compute()),
        "is_mean": float(is_mean),
        "is_std": float(is_std),
    }
