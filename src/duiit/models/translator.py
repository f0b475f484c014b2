"""The translators' networks: CycleGAN's ResNet generator, the 70x70 PatchGAN
discriminator, CUT's patch-feature head, and each translator's set of them per source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

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


# How conv and linear weights start (biases at 0), with gain 0.02, as each translator's
# reference code: CycleGAN's N(0, 0.02) (`init_type='normal'`) and CUT's xavier_normal
# (`init_type='xavier'`: N(0, 0.02 * sqrt(2 / (fan_in + fan_out))), far smaller weights).
Init = Literal["normal", "xavier"]


def init_weights(module: nn.Module, kind: Init = "normal", gain: float = 0.02) -> None:
    """Initialise every conv and linear layer of `module` as `kind` says (see `Init`)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain)
            else:
                nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


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

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        ngf: int = 64,
        n_blocks: int = 6,
        init: Init = "normal",
    ) -> None:
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
        init_weights(self, init)
        # CUT's PatchNCE layers (its 0,4,8,12,16 of an anti-aliased ResNet generator; 0,4,7,
        # 10,14 of one without anti-aliasing, as this one): the padded input, the two
        # downsampling convolutions, the first residual block and the fifth (the last one
        # when there are fewer). Indices into `net`, with their output channels.
        res = [i for i, m in enumerate(layers) if isinstance(m, _ResidualBlock)]
        down = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
        self.nce_layers = tuple(sorted({0, *down, *res[:1], *(res[4:5] or res[-1:])}))
        self.nce_channels = tuple(self._channels_after(i, in_ch) for i in self.nce_layers)

    def _channels_after(self, index: int, in_ch: int) -> int:
        convs = [
            m
            for m in self.net[: index + 1].modules()
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
        ]
        return convs[-1].out_channels if convs else in_ch

    def forward(
        self, x: torch.Tensor, layers: Sequence[int] = (), stop: int | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The translation; given `layers` (indices into `net`), CUT's walk instead: the
        output of layer `stop` (the last if None) and those of `layers` on the way. One entry
        point for both, since a compiled module compiles what its call runs: CUT's passes
        through `forward_features` and `encode` go through it too."""
        if not layers:
            return self.net(x)
        stop = len(self.net) - 1 if stop is None else stop
        feats = []
        for i, layer in enumerate(self.net):
            if i > stop:
                break
            x = layer(x)
            if i in layers:
                feats.append(x)
        return x, feats

    def forward_features(
        self, x: torch.Tensor, layers: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The translation and the outputs of `layers` (indices into `net`) on the way: CUT
        reads its keys off the pass that translates, instead of encoding the input again."""
        return self(x, layers)

    def encode(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of `layers`, running the network only as far as the last of them."""
        return self(x, layers, max(layers))[1]


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (C64-C128-C256-C512, instance norm, LeakyReLU 0.2): one realness score
    per overlapping 70x70 patch. MONAI's implementation, returning only the final map, with
    its instance norms computed by `instance_norm`."""

    def __init__(self, in_ch: int = 1, ndf: int = 64, init: Init = "normal") -> None:
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
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


class PatchHead(nn.Module):
    """CUT's patch-feature head (its `PatchSampleF` with an MLP): per generator layer, a
    2-layer MLP (256 units) on the features at the given locations, L2-normalised.

    Built from the generator's known channel counts, not lazily at the first batch as CUT's
    code does, so it is initialised from the run's seed with the other networks, and its
    weights and Adam state are in the first checkpoint like theirs.
    """

    def __init__(self, channels: Sequence[int], units: int = 256, init: Init = "normal") -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, units), nn.ReLU(), nn.Linear(units, units)) for c in channels
        )
        init_weights(self, init)

    def forward(self, feats: list[torch.Tensor], ids: list[torch.Tensor]) -> list[torch.Tensor]:
        """(B, C, H, W) features and flat locations (P,) per layer -> (B, P, units) float
        vectors of unit length (CUT's x / (|x| + 1e-7))."""
        out = []
        for mlp, f, i in zip(self.mlps, feats, ids, strict=True):
            z = mlp(f.flatten(2)[:, :, i].transpose(1, 2)).float()
            out.append(z / (z.norm(dim=-1, keepdim=True) + 1e-7))
        return out


class TranslatorNetworks(nn.Module):
    """What every translator has: per source modality m a generator G[m] (source m ->
    target), and D_t, the target's discriminator, shared by the sources. Subclasses add what
    their losses need and say which networks train with the generators, and every network
    starts as the translator's reference code initialises it (`init`)."""

    init: ClassVar[Init] = "normal"

    def __init__(self, sources: list[str], ngf: int, ndf: int, n_blocks: int) -> None:
        super().__init__()
        self.G = nn.ModuleDict(
            {m: ResnetGenerator(ngf=ngf, n_blocks=n_blocks, init=self.init) for m in sources}
        )
        self.D_t = PatchDiscriminator(ndf=ndf, init=self.init)

    def with_generators(self) -> list[nn.Module]:
        """The networks the generators' optimiser trains."""
        return [*self.G.values()]

    def discriminators(self) -> list[nn.Module]:
        return [self.D_t]

    def generator_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.with_generators() for p in m.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [p for d in self.discriminators() for p in d.parameters()]

    def networks(self) -> list[nn.Module]:
        """Every network the training step calls directly."""
        return [*self.with_generators(), *self.discriminators()]


class CycleGanNetworks(TranslatorNetworks):
    """One CycleGAN pair per source modality, sharing the target discriminator.

    G[m]: source m -> target, F[m]: target -> source m, D_s[m] judges source m, D_t the target.
    """

    def __init__(self, sources: list[str], ngf: int, ndf: int, n_blocks: int) -> None:
        super().__init__(sources, ngf, ndf, n_blocks)
        self.F = nn.ModuleDict(
            {m: ResnetGenerator(ngf=ngf, n_blocks=n_blocks, init=self.init) for m in sources}
        )
        self.D_s = nn.ModuleDict({m: PatchDiscriminator(ndf=ndf, init=self.init) for m in sources})

    def with_generators(self) -> list[nn.Module]:
        return [*self.G.values(), *self.F.values()]

    def discriminators(self) -> list[nn.Module]:
        return [*self.D_s.values(), self.D_t]


class CutNetworks(TranslatorNetworks):
    """CUT per source modality: the generator G[m] and its PatchNCE head H[m]; no way back,
    no source discriminator. Initialised as CUT's code (xavier_normal, gain 0.02)."""

    init = "xavier"

    def __init__(self, sources: list[str], ngf: int, ndf: int, n_blocks: int) -> None:
        super().__init__(sources, ngf, ndf, n_blocks)
        self.H = nn.ModuleDict(
            {m: PatchHead(self.G[m].nce_channels, init=self.init) for m in sources}
        )

    def with_generators(self) -> list[nn.Module]:
        return [*self.G.values(), *self.H.values()]
