"""The downstream predictor: a 2-D backbone on single-channel scans plus a task head."""

from __future__ import annotations

import math

import torch
from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets import resnet10, resnet18, resnet34, resnet50
from torch import nn

BACKBONES = {"resnet10": resnet10, "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
NETWORKS = (*BACKBONES, "cnn")


def _groups(channels: list[int]) -> int:
    """Groups of GroupNorm that divide every layer's channels (8 where they allow)."""
    return math.gcd(8, *channels)


def norm_layer(norm: str, channels: list[int]) -> tuple[str, dict]:
    """MONAI's (name, args) of a normalisation that suits every layer width given."""
    if norm == "group":
        return ("group", {"num_groups": _groups(channels)})
    if norm == "instance":
        return ("instance", {"affine": True})
    return ("batch", {})


def plain_cnn(width: float, norm: str) -> nn.Sequential:
    """Four blocks of two 3x3 convolutions (+ norm + ReLU) and a 2x2 max-pool, 64-512
    channels at width 1, then global average pooling: the small plain network of the
    learning study, far cheaper than a ResNet at the same width."""
    chans = [max(4, int(c * width)) for c in (64, 128, 256, 512)]
    kind = norm_layer(norm, chans)
    layers: list[nn.Module] = []
    cin = 1
    for c in chans:
        for i in range(2):
            layers += [
                nn.Conv2d(cin if i == 0 else c, c, 3, padding=1, bias=False),
                get_norm_layer(kind, spatial_dims=2, channels=c),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.MaxPool2d(2))
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def resnet(network: str, width: float, norm: str) -> nn.Module:
    """A MONAI 2-D ResNet without its classifier (its output: pooled features), its
    BatchNorm layers swapped for `norm`: MONAI 1.6's ResNet passes its `norm` argument to
    the stem alone, not to the residual blocks and shortcuts."""
    net = BACKBONES[network](
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_stride=2,
        feed_forward=False,
        widen_factor=width,
    )
    if norm != "batch":
        chans = [m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        kind = norm_layer(norm, chans)
        _swap_batch_norm(net, kind)
    return net


def _swap_batch_norm(module: nn.Module, kind: tuple[str, dict]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            new = get_norm_layer(kind, spatial_dims=2, channels=child.num_features)
            setattr(module, name, new)
        else:
            _swap_batch_norm(child, kind)


class Predictor(nn.Module):
    """Backbone -> features -> (dropout) -> one linear head per output.

    `width` scales the backbone's channels (small predictors for CPU runs); `norm` picks the
    normalisation (group by default: a predictor trained on 4 images a step or on several
    processes behaves as one trained on 32). `out_dim` is 1 for regression (standardised
    labels) or the number of classes. Extra heads (multi-task learning keeps one per
    modality) share the backbone.
    """

    def __init__(
        self,
        network: str = "resnet50",
        out_dim: int = 1,
        heads: int = 1,
        width: float = 1.0,
        norm: str = "group",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.arch = {"network": network, "width": width, "norm": norm, "dropout": dropout}
        self.backbone = plain_cnn(width, norm) if network == "cnn" else resnet(network, width, norm)
        with torch.no_grad():
            self.feature_dim = int(self.backbone.eval()(torch.zeros(1, 1, 32, 32)).shape[-1])
        self.backbone.train()
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, out_dim) for _ in range(heads))
        self.out_dim = out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (pooled) features: what task FID and domain adaptation look at."""
        return self.backbone(x)

    def from_features(self, features: torch.Tensor, head: int = 0) -> torch.Tensor:
        out = self.heads[head](self.dropout(features))
        return out.squeeze(-1) if self.out_dim == 1 else out

    def forward(self, x: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.from_features(self.features(x), head)
