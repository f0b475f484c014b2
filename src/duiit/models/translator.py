"""CycleGAN's ResNet generator and the 70x70 PatchGAN discriminator."""

from __future__ import annotations

import torch
from monai.networks.nets import PatchDiscriminator as _MonaiPatchDiscriminator
from torch import nn


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance normalisation (per image and channel, no affine, as CycleGAN) computed as a
    GroupNorm with one channel per group: the same maths, but PyTorch's group-norm CPU
    kernels are several times faster than InstanceNorm2d's batch-norm route, in bf16 above
    all (measured in benchmarks/README.md). No parameters or buffers either way, so
    checkpoints do not change."""
    return nn.GroupNorm(channels, channels, affine=False)


def default_blocks(image_size: int) -> int:
    """CycleGAN's choice: 6 residual blocks up to 128 px, 9 above."""
    return 6 if image_size <= 128 else 9


class _ResidualBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=False),
            instance_norm(ch),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=False),
            instance_norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n x R4ngf, u2ngf, ungf, c7s1-1, tanh (Johnson et al.; CycleGAN).

    Instance norm and reflection padding as in CycleGAN; convolutions followed by the
    (non-affine) instance norm carry no bias, which the norm would cancel anyway. The output is
    in [-1, 1] like the inputs. Image sides must be multiples of 4 (two stride-2 convolutions).
    """

    def __init__(self, in_ch: int = 1, out_ch: int = 1, ngf: int = 64, n_blocks: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, bias=False),
            instance_norm(ngf),
            nn.ReLU(True),
        ]
        ch = ngf
        for _ in range(2):  # downsampling
            layers += [
                nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=False),
                instance_norm(ch * 2),
                nn.ReLU(True),
            ]
            ch *= 2
        layers += [_ResidualBlock(ch) for _ in range(n_blocks)]
        for _ in range(2):  # fractionally-strided upsampling
            layers += [
                nn.ConvTranspose2d(
                    ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=False
                ),
                instance_norm(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (C64-C128-C256-C512, instance norm, LeakyReLU 0.2): one realness score
    per overlapping 70x70 patch. MONAI's implementation, returning only the final map, with
    its instance norms computed by `instance_norm`."""

    def __init__(self, in_ch: int = 1, ndf: int = 64) -> None:
        super().__init__()
        self.net = _MonaiPatchDiscriminator(
            spatial_dims=2,
            num_layers_d=3,
            channels=ndf,
            in_channels=in_ch,
            out_channels=1,
            kernel_size=4,
            norm="INSTANCE",
            activation=("LEAKYRELU", {"negative_slope": 0.2}),
        )
        for block in self.net.modules():
            for name, child in block.named_children():
                if isinstance(child, nn.InstanceNorm2d) and not child.affine:
                    setattr(block, name, instance_norm(child.num_features))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """CycleGAN's N(0, 0.02) initialisation of conv weights."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TranslatorBank(nn.Module):
    """One CycleGAN pair per source modality, sharing the target discriminator.

    G[m]: source m -> target, F[m]: target -> source m, D_s[m] judges source m, D_t the target.
    """

    def __init__(self, sources: list[str], ngf: int, ndf: int, n_blocks: int) -> None:
        super().__init__()
        self.G = nn.ModuleDict({m: ResnetGenerator(ngf=ngf, n_blocks=n_blocks) for m in sources})
        self.F = nn.ModuleDict({m: ResnetGenerator(ngf=ngf, n_blocks=n_blocks) for m in sources})
        self.D_s = nn.ModuleDict({m: PatchDiscriminator(ndf=ndf) for m in sources})
        self.D_t = PatchDiscriminator(ndf=ndf)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.G.parameters(), *self.F.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.D_s.parameters(), *self.D_t.parameters()]

    def networks(self) -> list[nn.Module]:
        """Every network the training step calls directly."""
        return [*self.G.values(), *self.F.values(), *self.discriminators()]

    def discriminators(self) -> list[nn.Module]:
        return [*self.D_s.values(), self.D_t]
