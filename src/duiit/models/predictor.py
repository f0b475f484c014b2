"""The downstream predictor: a 2-D ResNet on single-channel scans plus a task head."""

from __future__ import annotations

import torch
from monai.networks.nets import resnet10, resnet18, resnet34, resnet50
from torch import nn

BACKBONES = {"resnet10": resnet10, "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


class Predictor(nn.Module):
    """ResNet backbone (MONAI, no torchvision) -> features -> one linear head per output.

    `width` scales the backbone's channels (small predictors for CPU runs).

    `out_dim` is 1 for regression (standardised labels) or the number of classes. Extra
    heads (multi-task learning keeps one per modality) share the backbone.
    """

    def __init__(
        self, backbone: str = "resnet50", out_dim: int = 1, heads: int = 1, width: float = 1.0
    ) -> None:
        super().__init__()
        self.backbone = BACKBONES[backbone](
            spatial_dims=2,
            n_input_channels=1,
            conv1_t_stride=2,
            feed_forward=False,
            widen_factor=width,
        )
        with torch.no_grad():
            self.feature_dim = int(self.backbone.eval()(torch.zeros(1, 1, 32, 32)).shape[-1])
        self.backbone.train()
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, out_dim) for _ in range(heads))
        self.out_dim = out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (pooled) features: what task FID and domain adaptation look at."""
        return self.backbone(x)

    def from_features(self, features: torch.Tensor, head: int = 0) -> torch.Tensor:
        out = self.heads[head](features)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def forward(self, x: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.from_features(self.features(x), head)
