"""DUIIT: the translator (CycleGAN per source) and the predictor trained jointly.

L = L_adv(D_t, G) + L_adv(D_s, F) + lambda_cyc * (L_cyc + lambda_identity * L_idt)
    + lambda * L_pred,
where L_pred is the predictor's loss on real target images and on translated source images
G(y) with the source labels, in label units as the paper puts it (years² for ages). The
predictor minimises L_pred itself (on standardised labels, where its learning rate is
tuned); G receives lambda times the gradient of L_pred in label units, which is what steers
the translation towards what matters for the task.

The same step, with another coupling between translator and task, gives the variants that
isolate that claim: `detached` (the predictor co-trains on G(y) but no gradient reaches G,
as the authors' released code does), `frozen` (a target-task network pre-trained on the
real target and frozen scores G(y) against the source labels, and that loss reaches G:
CyCADA's semantic consistency, without its feature-level alignment) and `none` (plain
CycleGAN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance
from torch import nn

from duiit.config import Config
from duiit.data.cohort import Cohort
from duiit.methods.base import (
    Batches,
    FittedModel,
    LabelCodec,
    Method,
    loop_settings,
    n_blocks,
    predictor_selection,
    register,
    resolve_steps,
    translate,
)
from duiit.models import ImagePool, Predictor, TranslatorBank
from duiit.training.loop import run_loop
from duiit.training.runtime import Runtime, eval_mode


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by `factor`.

    This lets one backward pass give the predictor the full gradient of L_pred while the
    generator receives lambda * dL_pred (and exactly zero when lambda = 0).
    """
    return x * factor + x.detach() * (1.0 - factor)


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss against the all-ones (real) or all-zeros (fake) target."""
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), 1.0 if real else 0.0))


def histogram_distance(a: torch.Tensor, b: torch.Tensor, n: int = 20_000, seed: int = 0) -> float:
    """1-D Wasserstein distance between the pixel intensities of two image sets: how far a
    translated set is from the real target modality in appearance."""
    rng = np.random.default_rng(seed)
    fa, fb = a.float().flatten().numpy(), b.float().flatten().numpy()
    return float(
        wasserstein_distance(rng.choice(fa, min(n, fa.size)), rng.choice(fb, min(n, fb.size)))
    )


Coupling = Literal["joint", "detached", "frozen", "none"]


class TranslationTask:
    """The translator step, coupled to the task as `coupling` says (see the module doc):
    `joint` is DUIIT, `none` plain CycleGAN (no predictor at all). `frozen` needs the
    pre-trained predictor `frozen`, which is put in eval mode and never updated."""

    def __init__(
        self,
        target_train: Cohort,
        target_val: Cohort,
        sources: list[Cohort],
        cfg: Config,
        rt: Runtime,
        codec: LabelCodec,
        coupling: Coupling,
        frozen: Predictor | None = None,
    ) -> None:
        t = cfg.train
        self.cfg, self.rt, self.codec, self.coupling = cfg, rt, codec, coupling
        self.names = [c.modality for c in sources]
        self.bank = TranslatorBank(self.names, cfg.model.ngf, cfg.model.ndf, n_blocks(cfg))
        rt.prepare(self.bank, self.bank.networks())
        self.opt = {
            "G": rt.adam(self.bank.generator_parameters(), t.lr_translator, t.beta1),
            "D": rt.adam(self.bank.discriminator_parameters(), t.lr_translator, t.beta1),
        }
        self.predictor: Predictor | None = None
        if coupling in ("joint", "detached"):
            self.predictor = rt.prepare(
                Predictor(cfg.model.predictor, codec.out_dim, width=cfg.model.width)
            )
            self.opt["P"] = rt.adam(self.predictor.parameters(), t.lr_predictor)
        self.frozen: Predictor | None = None
        if coupling == "frozen":
            if frozen is None:
                raise ValueError("coupling='frozen' needs the pre-trained predictor")
            self.frozen = rt.prepare(frozen).eval().requires_grad_(False)
        self.pool_t = ImagePool(t.pool_size, seed=t.seed + 1 + 1000 * rt.rank)  # one per rank
        self.pool_s = {
            m: ImagePool(t.pool_size, seed=t.seed + 2 + i + 1000 * rt.rank)
            for i, m in enumerate(self.names)
        }
        self.gen = rt.generator(t.seed)
        self.target = Batches(target_train, codec, rt)
        self.val = Batches(target_val, codec, rt)
        self.sources = {c.modality: Batches(c, codec, rt) for c in sources}
        # Fixed images to watch: the sample grid and the appearance distance to the target.
        self.watch = {c.modality: c.images[:: max(1, len(c) // 32)][:32] for c in sources}
        self.real_target = target_val.images[:256]

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"bank": self.bank}
        if self.predictor is not None:
            mods["predictor"] = self.predictor
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opt

    def generator_losses(
        self, x: torch.Tensor, rx: torch.Tensor, ys: dict[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """G/F/P losses of one batch, plus the fakes the discriminators will judge."""
        b, t = self.bank, self.cfg.train
        adv_g = adv_f = cyc = idt = x.new_zeros(())
        fakes_t, fakes_s = {}, {}
        for m, (y, _) in ys.items():
            fake_t = b.G[m](y)
            fake_s = b.F[m](x)
            adv_g = adv_g + lsgan(b.D_t(fake_t), True)
            adv_f = adv_f + lsgan(b.D_s[m](fake_s), True)
            cyc = cyc + F.l1_loss(b.F[m](fake_t), y) + F.l1_loss(b.G[m](fake_s), x)
            if t.lambda_identity > 0:  # a target image through G (a source one through F)
                idt = idt + F.l1_loss(b.G[m](x), x) + F.l1_loss(b.F[m](y), y)
            fakes_t[m], fakes_s[m] = fake_t, fake_s
        losses = {"adv_G": adv_g, "adv_F": adv_f, "cyc": cyc}
        if t.lambda_identity > 0:
            losses["idt"] = idt
        source_labels = [r for _, r in ys.values()]
        if self.predictor is not None:
            # G's share of L_pred in label units: lambda * std² * dL(standardised)/dG.
            lam = t.lambda_pred * self.codec.label_units
            coupled = [
                scale_grad(f, lam) if self.coupling == "joint" else f.detach()
                for f in fakes_t.values()
            ]
            images = torch.cat([x, *coupled])
            losses["pred"] = self.codec.loss(
                self.predictor(images), torch.cat([rx, *source_labels])
            )
        if self.frozen is not None:
            losses["sem"] = self.codec.loss(
                self.frozen(torch.cat(list(fakes_t.values()))), torch.cat(source_labels)
            )
        return losses, fakes_t, fakes_s

    def objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """What G, F (and P) minimise together. lambda_pred is not here: it is applied inside
        `generator_losses` to the gradient G receives, so that P still gets all of L_pred."""
        t = self.cfg.train
        cycle = losses["cyc"] + t.lambda_identity * losses.get("idt", 0.0)
        return (
            losses["adv_G"]
            + losses["adv_F"]
            + t.lambda_cyc * cycle
            + losses.get("pred", 0.0)
            + t.lambda_sem * losses.get("sem", 0.0)
        )

    def discriminator_losses(
        self,
        x: torch.Tensor,
        ys: dict[str, tuple[torch.Tensor, Any]],
        fakes_t: dict[str, torch.Tensor],
        fakes_s: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        b = self.bank
        fake_t = self.pool_t.query(torch.cat(list(fakes_t.values())))
        d_t = 0.5 * (lsgan(b.D_t(x), True) + lsgan(b.D_t(fake_t), False))
        d_s = x.new_zeros(())
        for m, (y, _) in ys.items():
            fake_s = self.pool_s[m].query(fakes_s[m])
            d_s = d_s + 0.5 * (lsgan(b.D_s[m](y), True) + lsgan(b.D_s[m](fake_s), False))
        return {"D_t": d_t, "D_s": d_s}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        n = self.cfg.train.batch_size
        x, rx = self.target.sample(self.gen, n)
        ys = {m: s.sample(self.gen, n) for m, s in self.sources.items()}
        losses, fakes_t, fakes_s = self.update_generators(x, rx, ys)
        return {**losses, **self.update_discriminators(x, ys, fakes_t, fakes_s)}

    def update_generators(
        self, x: torch.Tensor, rx: torch.Tensor, ys: dict[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One Adam step of G, F (and P) on the joint objective, discriminators frozen."""
        discriminators = self.bank.discriminators()
        for d in discriminators:
            d.requires_grad_(False)
        with self.rt.autocast():
            losses, fakes_t, fakes_s = self.generator_losses(x, rx, ys)
        total = self.objective(losses)
        stepped = [self.opt[k] for k in ("G", "P") if k in self.opt]
        for opt in stepped:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in stepped:
            self.rt.step(opt)
        for d in discriminators:
            d.requires_grad_(True)
        detach = lambda fakes: {m: f.detach() for m, f in fakes.items()}  # noqa: E731
        return {k: v.detach() for k, v in losses.items()}, detach(fakes_t), detach(fakes_s)

    def update_discriminators(
        self,
        x: torch.Tensor,
        ys: dict[str, tuple[torch.Tensor, Any]],
        fakes_t: dict[str, torch.Tensor],
        fakes_s: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """One Adam step of every discriminator on real images and (pooled) fakes."""
        with self.rt.autocast():
            d_losses = self.discriminator_losses(x, ys, fakes_t, fakes_s)
        self.opt["D"].zero_grad(set_to_none=True)
        (d_losses["D_t"] + d_losses["D_s"]).backward()
        self.rt.step(self.opt["D"])
        return {k: v.detach() for k, v in d_losses.items()}

    def validate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.predictor is not None:
            metrics.update(predictor_selection(self.predictor, self.val, self.codec, self.rt))
        for m, imgs in self.watch.items():
            metrics[f"hist_dist_{m}"] = histogram_distance(
                translate(self.bank.G[m], imgs, self.rt), self.real_target
            )
        return metrics

    def selected(self) -> set[str]:
        """Validation selects the predictor; the translators keep their last weights, the
        one rule for every translating method (so their translations compare alike)."""
        return {"predictor"} if self.predictor is not None else set()

    def samples(self) -> list[torch.Tensor]:
        rows = []
        with eval_mode(self.bank):
            for m, imgs in self.watch.items():
                y = self.rt.batch(imgs[:6])
                fake = self.bank.G[m](y)
                rows += [y, fake, self.bank.F[m](fake)]
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "pool_t": self.pool_t.state_dict(),
            "pool_s": {m: p.state_dict() for m, p in self.pool_s.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.pool_t.load_state_dict(state["pool_t"])
        for m, p in self.pool_s.items():
            p.load_state_dict(state["pool_s"][m])

    def fitted(self, predictor: Predictor | None = None) -> FittedModel:
        """The translators with this task's predictor (DUIIT) or one trained after it."""
        predictor = predictor or self.predictor
        assert predictor is not None
        return FittedModel(
            predictor,
            self.codec,
            self.cfg.model.predictor,
            self.cfg.model.width,
            dict(self.bank.G.items()),
            {"ngf": self.cfg.model.ngf, "n_blocks": n_blocks(self.cfg)},
        )


def train_translation(
    method: Method,
    target_train: Cohort,
    target_val: Cohort,
    sources: list[Cohort],
    run_dir: Path,
    coupling: Coupling,
    frozen: Predictor | None = None,
) -> TranslationTask:
    """Train the translators through the loop core: with a co-trained predictor (DUIIT and
    its detached variant, stage `duiit`) or without one (CycleGAN's and CyCADA's first
    stage, `translator`)."""
    cfg = method.cfg
    codec = LabelCodec.fit(target_train)
    task = TranslationTask(
        target_train, target_val, sources, cfg, method.rt, codec, coupling, frozen
    )
    steps = resolve_steps(cfg, max(len(c) for c in [target_train, *sources]))
    stage = "duiit" if task.predictor is not None else "translator"
    run_loop(task, run_dir, loop_settings(cfg, stage, steps, method.quiet), method.rt)
    return task


@register
class Duiit(Method):
    name = "duiit"
    uses_sources = True
    translates = True
    description = "translator + predictor trained jointly, lambda * dL_pred reaches G (ours)"
    coupling: ClassVar[Coupling] = "joint"

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        task = train_translation(
            self, target_train, target_val, sources, run_dir, type(self).coupling
        )
        return task.fitted()


@register
class DuiitDetached(Duiit):
    name = "duiit_detached"
    description = "predictor co-trained on translations, no gradient into G (released code)"
    coupling = "detached"
