"""Translators as plug-ins of the translation step (`duiit.TranslationTask`): each owns its
networks, its loss terms, its weighting of them, its discriminators' losses and its pools
of past fakes; the task composes one with a coupling to the predictor. `model.translator`
picks one:

- `cyclegan` (Zhu et al. 2017; the paper's): G: source -> target and F back, cycle and
  identity L1 losses, a discriminator per domain, a history of 50 fakes.
- `cut` (Park et al., ECCV 2020): one generator and one discriminator; instead of a cycle,
  PatchNCE: a patch of the translation must be recognisable as the patch of the input at
  the same place among 255 other patches of that input, in the features of G's own encoder
  (5 layers) through a small MLP head. Identity NCE on target images, lambda_NCE 1, no
  history pool (the authors' settings).
- `fastcut`: CUT with lambda_NCE 10 and no identity NCE (the authors' FastCUT). Their
  flip-equivariance augmentation is left out: it hands G (and so the co-trained predictor)
  mirrored source images that the other translators do not, which would confound the
  comparison of translators under a task coupling.

Both use LSGAN losses, the same ResNet generator and PatchGAN discriminator, and the same
update order (generators, then discriminators on the fakes of that batch), so a comparison
varies the translator's losses only. What is left of CUT's defaults: its anti-aliased
down/upsampling (duiit's generator has none, like CycleGAN's) and its separate Adam for the
head (here the generators' Adam, with the same settings, so the same updates).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from duiit.config import Config
from duiit.methods.base import n_blocks
from duiit.models import CutNetworks, CycleGanNetworks, ImagePool, TranslatorNetworks
from duiit.training.runtime import Runtime


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss against the all-ones (real) or all-zeros (fake) target."""
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), 1.0 if real else 0.0))


def discriminator_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """A discriminator's LSGAN loss on real images and (pooled) fakes, halved as CycleGAN's.
    One call on both together: its instance norms are per image, so the scores are those of
    two calls, for one call's overhead."""
    pred = d(torch.cat([real, fake]))
    return 0.5 * (lsgan(pred[: len(real)], True) + lsgan(pred[len(real) :], False))


def patch_nce(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """CUT's PatchNCE loss of each image: (B, P, C) unit query and key vectors (the same P
    locations of output and input) -> (B,) mean cross-entropy of picking each query's own
    key among the image's P keys. As CUT: keys carry no gradient, and the own key is also
    among the negatives, masked to a similarity of -10 (weight exp(-10/T), nil)."""
    sim = q @ k.detach().transpose(1, 2)  # (B, P, P) cosine similarities
    positive = sim.diagonal(dim1=1, dim2=2).unsqueeze(-1)
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    logits = torch.cat([positive, sim.masked_fill(eye, -10.0)], dim=-1) / temperature
    target = torch.zeros(logits.shape[:-1], dtype=torch.long, device=sim.device)
    return (
        F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        .view(target.shape)
        .mean(dim=1)
    )


@dataclass
class Translation:
    """One batch through a translator."""

    losses: dict[str, torch.Tensor]  # its own terms, unweighted (logged as they are)
    fakes: dict[str, torch.Tensor]  # source modality -> G(source), with its graph
    judged: dict[str, torch.Tensor]  # discriminator -> the fakes it judges next

    def detached_judged(self) -> dict[str, torch.Tensor]:
        """What the discriminators judge, cut from the generators' graph."""
        return {k: v.detach() for k, v in self.judged.items()}


class Translator(ABC):
    """Unpaired translation of every source modality into the target."""

    name: ClassVar[str]
    network_type: ClassVar[type[TranslatorNetworks]]
    default_pool: ClassVar[int]  # past fakes kept per discriminator when train.pool_size is null

    def __init__(self, sources: list[str], cfg: Config, rt: Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        m = cfg.model
        self.nets = self.network_type(sources, m.ngf, m.ndf, n_blocks(cfg))
        rt.prepare(self.nets, self.nets.networks())

    def pool(self, index: int) -> ImagePool:
        """The history of fakes of one discriminator; each rank keeps its own."""
        t = self.cfg.train
        size = self.default_pool if t.pool_size is None else t.pool_size
        return ImagePool(size, seed=t.seed + 1 + index + 1000 * self.rt.rank)

    @abstractmethod
    def translation_losses(self, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> Translation:
        """Target images x and source images per modality -> the loss terms of the
        generators' update, the translations and what the discriminators judge next."""

    @abstractmethod
    def objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """This translator's share of the generators' objective: its terms, weighted."""

    @abstractmethod
    def discriminator_losses(
        self, x: torch.Tensor, ys: dict[str, torch.Tensor], judged: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Every discriminator's loss on real images and the (pooled) fakes of `judged`."""

    @abstractmethod
    def sample_rows(self, source: str, y: torch.Tensor) -> list[torch.Tensor]:
        """Rows of the sample grid for source images y (networks in eval mode)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Pools and random generators: what exact resume needs beyond the networks."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CycleGan(Translator):
    """The paper's translator: G and F per source, cycle and identity L1, D_s and D_t."""

    name = "cyclegan"
    network_type = CycleGanNetworks
    default_pool = 50
    nets: CycleGanNetworks

    def __init__(self, sources: list[str], cfg: Config, rt: Runtime) -> None:
        super().__init__(sources, cfg, rt)
        self.pool_t = self.pool(0)
        self.pool_s = {m: self.pool(1 + i) for i, m in enumerate(sources)}

    def translation_losses(self, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> Translation:
        b, t = self.nets, self.cfg.train
        adv_g = adv_f = cyc = idt = x.new_zeros(())
        fakes, judged = {}, {}
        for m, y in ys.items():
            fake_t = b.G[m](y)
            fake_s = b.F[m](x)
            adv_g = adv_g + lsgan(b.D_t(fake_t), True)
            adv_f = adv_f + lsgan(b.D_s[m](fake_s), True)
            cyc = cyc + F.l1_loss(b.F[m](fake_t), y) + F.l1_loss(b.G[m](fake_s), x)
            if t.lambda_identity > 0:  # a target image through G (a source one through F)
                idt = idt + F.l1_loss(b.G[m](x), x) + F.l1_loss(b.F[m](y), y)
            fakes[m], judged[f"D_s.{m}"] = fake_t, fake_s
        losses = {"adv_G": adv_g, "adv_F": adv_f, "cyc": cyc}
        if t.lambda_identity > 0:
            losses["idt"] = idt
        judged["D_t"] = torch.cat(list(fakes.values()))
        return Translation(losses, fakes, judged)

    def objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.cfg.train
        cycle = losses["cyc"] + t.lambda_identity * losses.get("idt", 0.0)
        return losses["adv_G"] + losses["adv_F"] + t.lambda_cyc * cycle

    def discriminator_losses(
        self, x: torch.Tensor, ys: dict[str, torch.Tensor], judged: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        b = self.nets
        d_s = x.new_zeros(())
        for m, y in ys.items():
            d_s = d_s + discriminator_loss(b.D_s[m], y, self.pool_s[m].query(judged[f"D_s.{m}"]))
        return {"D_t": discriminator_loss(b.D_t, x, self.pool_t.query(judged["D_t"])), "D_s": d_s}

    def sample_rows(self, source: str, y: torch.Tensor) -> list[torch.Tensor]:
        fake = self.nets.G[source](y)
        return [y, fake, self.nets.F[source](fake)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "pool_t": self.pool_t.state_dict(),
            "pool_s": {m: p.state_dict() for m, p in self.pool_s.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool_t.load_state_dict(state["pool_t"])
        for m, p in self.pool_s.items():
            p.load_state_dict(state["pool_s"][m])


class Cut(Translator):
    """CUT: G per source with PatchNCE between its input and output, D_t only."""

    name = "cut"
    network_type = CutNetworks
    default_pool = 0
    nets: CutNetworks
    lambda_nce: ClassVar[float] = 1.0
    nce_idt: ClassVar[bool] = True  # NCE(G(x), x) on target images x as well
    patches: ClassVar[int] = 256  # locations sampled per layer (all, where a layer has fewer)
    temperature: ClassVar[float] = 0.07

    def __init__(self, sources: list[str], cfg: Config, rt: Runtime) -> None:
        super().__init__(sources, cfg, rt)
        self.pool_t = self.pool(0)
        # Patch locations: one draw per layer for the whole batch (as CUT), from a stream of
        # their own seeded alike on every rank, so N processes sample as one with N times
        # the batch; saved with checkpoints for exact resume.
        self.gen = torch.Generator().manual_seed(cfg.train.seed + 7919)

    def translation_losses(self, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> Translation:
        b = self.nets
        adv = nce = nce_idt = x.new_zeros(())
        fakes = {}
        for m, y in ys.items():
            g, n = b.G[m], len(y)
            out, keys = g.forward_features(torch.cat([y, x]) if self.nce_idt else y, g.nce_layers)
            per_image = self.patch_nce(m, g.encode(out, g.nce_layers), keys)
            fakes[m] = out[:n]
            adv = adv + lsgan(b.D_t(fakes[m]), True)
            nce = nce + per_image[:n].mean()
            if self.nce_idt:
                nce_idt = nce_idt + per_image[n:].mean()
        losses = {"adv_G": adv, "nce": nce}
        if self.nce_idt:
            losses["nce_idt"] = nce_idt
        return Translation(losses, fakes, {"D_t": torch.cat(list(fakes.values()))})

    def patch_nce(
        self, source: str, queries: list[torch.Tensor], keys: list[torch.Tensor]
    ) -> torch.Tensor:
        """(B,) PatchNCE of each image, averaged over the layers: the translation's features
        (queries) against the input's (keys) at the same sampled locations."""
        ids = [
            torch.randperm(k.shape[2] * k.shape[3], generator=self.gen)[: self.patches].to(k.device)
            for k in keys
        ]
        head = self.nets.H[source]
        with torch.no_grad():  # keys are constants of the loss (CUT detaches them)
            k = head(keys, ids)
        q = head(queries, ids)
        per_layer = [patch_nce(qi, ki, self.temperature) for qi, ki in zip(q, k, strict=True)]
        return torch.stack(per_layer).mean(0)

    def objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        nce = 0.5 * (losses["nce"] + losses["nce_idt"]) if self.nce_idt else losses["nce"]
        return losses["adv_G"] + self.lambda_nce * nce

    def discriminator_losses(
        self, x: torch.Tensor, ys: dict[str, torch.Tensor], judged: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"D_t": discriminator_loss(self.nets.D_t, x, self.pool_t.query(judged["D_t"]))}

    def sample_rows(self, source: str, y: torch.Tensor) -> list[torch.Tensor]:
        return [y, self.nets.G[source](y)]

    def state_dict(self) -> dict[str, Any]:
        return {"pool_t": self.pool_t.state_dict(), "patches": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool_t.load_state_dict(state["pool_t"])
        self.gen.set_state(state["patches"])


class FastCut(Cut):
    """FastCUT: CUT without the identity NCE, its NCE weighted 10."""

    name = "fastcut"
    lambda_nce = 10.0
    nce_idt = False


TRANSLATORS: dict[str, type[Translator]] = {t.name: t for t in (CycleGan, Cut, FastCut)}


def make_translator(sources: list[str], cfg: Config, rt: Runtime) -> Translator:
    """The translator `model.translator` names, on the run's device."""
    return TRANSLATORS[cfg.model.translator](sources, cfg, rt)
