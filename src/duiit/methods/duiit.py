"""DUIIT: the translator and the predictor trained jointly.

L = L_trans + lambda * L_pred,
where L_trans is the translator's own objective (`model.translator`, methods/translators.py:
CycleGAN per source, the paper's, L_adv(D_t, G) + L_adv(D_s, F) + lambda_cyc * (L_cyc +
lambda_identity * L_idt); or CUT/FastCUT, L_adv(D_t, G) + lambda_NCE * L_PatchNCE) and
L_pred is the predictor's MSE on translated source images G(y) against the source labels,
in label units as the paper puts it (years² for ages), one mean per source, summed. G
receives lambda times its gradient, which is what steers the translation towards what
matters for the task. The predictor itself learns as every method's does (the predictor
recipe: its loss, batch, augmentation and schedule) from its own batch of real target
images and from the translations, which reach it detached (its loss never moves G).

The same step, with another coupling between translator and task, gives the variants that
isolate that claim: `detached` (the predictor co-trains on G(y) but no gradient reaches G,
as the authors' released code does), `frozen` (a target-task network pre-trained on the
real target and frozen scores G(y) against the source labels, and that loss reaches G:
CyCADA's semantic consistency, without its feature-level alignment) and `none` (the
translator alone, as the `cyclegan` baseline trains it). Every coupling works with every
translator: `duiit[translator=cut]`, `cyclegan[translator=cut]` (CUT without task signal).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import nn
from torch.func import functional_call

from duiit.config import Config
from duiit.data.cohort import Cohort
from duiit.errors import DuiitWarning
from duiit.methods import recipe
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
    source_batches,
    source_counts,
    translate,
    weighted_loss,
)
from duiit.methods.translators import Translation, make_translator
from duiit.models import Predictor
from duiit.training.loop import run_loop
from duiit.training.runtime import Runtime, eval_mode


def histogram_distance(a: torch.Tensor, b: torch.Tensor, n: int = 20_000, seed: int = 0) -> float:
    """1-D Wasserstein distance between the pixel intensities of two image sets: how far a
    translated set is from the real target modality in appearance."""
    rng = np.random.default_rng(seed)
    fa, fb = a.float().flatten().numpy(), b.float().flatten().numpy()
    return float(
        wasserstein_distance(rng.choice(fa, min(n, fa.size)), rng.choice(fb, min(n, fb.size)))
    )


Coupling = Literal["joint", "detached", "frozen", "none"]


def warn_unmixed(cfg: Config, what: str) -> None:
    """Mixup is a predictor stage's (it blends the images and labels of one group's batch);
    the joint loop has none, so `what` trains without it: said, not silently compared."""
    if cfg.predictor.mixup > 0:
        warnings.warn(
            f"predictor.mixup={cfg.predictor.mixup:g} is applied by predictor stages only: "
            f"{what} trains without it, so it differs from them by that too; set "
            "predictor.mixup=0 to compare like with like",
            DuiitWarning,
            stacklevel=3,
        )


class TranslationTask:
    """The translator step, coupled to the task as `coupling` says (see the module doc):
    `joint` is DUIIT, `none` plain unpaired translation (no predictor at all). `frozen` needs
    the pre-trained predictor `frozen`, which is put in eval mode and never updated. The
    translator is `model.translator` (methods/translators.py); the coupling is composed
    here, the same for every translator."""

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
        self.translator = make_translator(self.names, cfg, rt)
        nets = self.translator.nets
        self.opt = {
            "G": rt.adam(nets.generator_parameters(), t.lr_translator, t.beta1),
            "D": rt.adam(nets.discriminator_parameters(), t.lr_translator, t.beta1),
        }
        self.predictor: Predictor | None = None
        if coupling in ("joint", "detached"):
            warn_unmixed(cfg, "the predictor co-trained with the translator")
            self.predictor = rt.prepare(recipe.build_predictor(cfg, codec.out_dim))
            self.opt["P"] = recipe.optimizer(cfg.predictor, self.predictor.parameters(), rt)
        self.augment = recipe.augmentation(cfg.predictor)
        self.frozen: Predictor | None = None
        if coupling == "frozen":
            if frozen is None:
                raise ValueError("coupling='frozen' needs the pre-trained predictor")
            self.frozen = rt.prepare(frozen).eval().requires_grad_(False)
        self.gen = rt.generator(t.seed)
        self.target = Batches(target_train, codec, rt)
        self.val = Batches(target_val, codec, rt)
        self.sources = {
            c.modality: source_batches(c, target_train, codec, cfg, rt) for c in sources
        }
        # Translated images of each source in P's batch, beside its real batch.
        self.shares = dict(zip(self.names, source_counts(cfg.predictor, len(sources)), strict=True))
        # Fixed images to watch: the sample grid and the appearance distance to the target.
        self.watch = {c.modality: c.images[:: max(1, len(c) // 32)][:32] for c in sources}
        self.real_target = target_val.images[:256]

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"bank": self.translator.nets}
        if self.predictor is not None:
            mods["predictor"] = self.predictor
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opt

    def lr_factors(self, steps: int) -> dict[str, recipe.LrFactor]:
        """The co-trained predictor follows the recipe's schedule; G and D decay linearly."""
        return {"P": recipe.lr_factor(self.cfg.predictor, steps)} if "P" in self.opt else {}

    def generator_losses(
        self,
        x: torch.Tensor,
        rx: torch.Tensor,
        ys: dict[str, tuple[torch.Tensor, torch.Tensor]],
        real: tuple[torch.Tensor, torch.Tensor] | None = None,
        more: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[dict[str, torch.Tensor], Translation]:
        """The translator's and the coupling's losses of one batch, and the translation.
        The predictor scores `real` (its own batch of real target images and labels; the
        translator's `x`, `rx` when not given) and translations of `ys` and of `more`."""
        out = self.translator.translation_losses(x, {m: y for m, (y, _) in ys.items()})
        px, prx = real if real is not None else (x, rx)
        return {**out.losses, **self.coupling_losses(px, prx, out.fakes, ys, more)}, out

    def coupling_losses(
        self,
        x: torch.Tensor,
        rx: torch.Tensor,
        fakes: dict[str, torch.Tensor],
        ys: dict[str, tuple[torch.Tensor, torch.Tensor]],
        more: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The co-trained predictor's loss `pred` (joint, detached), G's task loss `task`
        (joint) or L_sem of the frozen predictor (frozen).

        `pred` is what P learns from, by the recipe's loss, on its real batch and its share
        of translations (`predictor.source_share`: the first of the translator's, then
        translations of `more`, made without gradient), each weighing
        `predictor.source_weight`; the translations enter it detached, so it never moves G,
        as translate-then-train's predictor sees them. `task` is
        the paper's L_pred as G sees it: the sum over sources of each source's mean MSE of
        P(G_s(y)) against y (standardised; the objective turns it into label units), through
        a view of P whose weights it does not move. So P follows its recipe, and each G_s
        gets exactly lambda * d E[(P(G_s(y)) - y)^2 in years^2] / dG_s, whatever the number
        of sources or real images (the paper sums an expectation per domain).
        """
        losses: dict[str, torch.Tensor] = {}
        source_labels = [r for _, r in ys.values()]
        if self.predictor is not None:
            seen = self.predictor_translations(fakes, ys, more or {})
            sizes = [len(x), *(len(f) for f, _ in seen)]
            images = torch.cat([x, *(f for f, _ in seen)])
            outs = self.predictor(self.augmented(images, sizes)).split(sizes)
            weight = self.cfg.predictor.source_weight
            losses["pred"] = weighted_loss(
                self.codec,
                self.cfg.predictor.loss,
                [
                    (outs[0], rx, 1.0),
                    *((o, r, weight) for o, (_, r) in zip(outs[1:], seen, strict=True)),
                ],
            )
            if self.coupling == "joint" and self.cfg.train.lambda_pred > 0:
                held = self.held_predictor()
                losses["task"] = sum(
                    self.codec.loss(held(self.augmented(f)), r)
                    for f, r in zip(fakes.values(), source_labels, strict=True)
                )
        if self.frozen is not None:
            losses["sem"] = self.codec.loss(
                self.frozen(torch.cat(list(fakes.values()))), torch.cat(source_labels)
            )
        return losses

    def predictor_translations(
        self,
        fakes: dict[str, torch.Tensor],
        ys: dict[str, tuple[torch.Tensor, torch.Tensor]],
        more: dict[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each source's translated images (detached) and labels for P's batch: its share
        `self.shares`, the translator's own fakes first, the rest translated from `more`."""
        seen = []
        for m, fake in fakes.items():
            k = self.shares[m]
            images, labels = fake.detach()[:k], ys[m][1][:k]
            if m in more:
                with torch.no_grad():
                    extra = self.translator.nets.G[m](more[m][0])
                images = torch.cat([images, extra.to(images.dtype)])
                labels = torch.cat([labels, more[m][1]])
            seen.append((images, labels))
        return seen

    def held_predictor(self):
        """P as a function whose weights take no gradient and whose buffers are copies: G's
        task term goes through it without moving P's weights or (with BatchNorm) its running
        statistics, which only P's own pass updates."""
        assert self.predictor is not None
        state = {n: p.detach() for n, p in self.predictor.named_parameters()}
        state |= {n: b.clone() for n, b in self.predictor.named_buffers()}
        return lambda images: functional_call(self.predictor, state, (images,))

    def augmented(self, images: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
        """The recipe's training augmentation (differentiable: G's gradient passes), of a
        batch made of parts of `sizes` (`Runtime.augment`)."""
        if self.augment is None:
            return images
        return self.rt.augment(self.augment, images, sizes).to(images.dtype)

    def objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the generators and P minimise, summed in one place: the translator's
        weighted terms (adversarial + cycle or NCE + identity), P's own loss (which reaches P
        alone), lambda * L_pred in label units (which reaches G alone; years² for ages) and
        lambda_sem * L_sem."""
        t = self.cfg.train
        task = t.lambda_pred * self.codec.label_units * losses.get("task", 0.0)
        sem = t.lambda_sem * losses.get("sem", 0.0)
        return self.translator.objective(losses) + losses.get("pred", 0.0) + task + sem

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        n = self.cfg.train.batch_size
        x, rx = self.target.sample(self.gen, n)
        ys = {m: s.sample(self.gen, n) for m, s in self.sources.items()}
        # The predictor's real images: a batch of its own (predictor.batch_size, the
        # recipe's), beside the translator's n translated images of each source.
        real, more = None, {}
        if self.predictor is not None:
            real = self.target.sample(self.gen, self.cfg.predictor.batch_size)
            more = {
                m: s.sample(self.gen, self.shares[m] - n)
                for m, s in self.sources.items()
                if self.shares[m] > n
            }
        losses, judged = self.update_generators(x, rx, ys, real, more)
        return {**losses, **self.update_discriminators(x, ys, judged)}

    def update_generators(
        self,
        x: torch.Tensor,
        rx: torch.Tensor,
        ys: dict[str, tuple[torch.Tensor, torch.Tensor]],
        real: tuple[torch.Tensor, torch.Tensor] | None = None,
        more: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One Adam step of the generators (and P) on the joint objective, discriminators
        frozen; `real` is the predictor's batch of real target images and labels, `more`
        source images translated for P's share beyond the translator's batch. Returns
        the losses and the (detached) fakes the discriminators judge next."""
        discriminators = self.translator.nets.discriminators()
        for d in discriminators:
            d.requires_grad_(False)
        with self.rt.autocast():
            losses, out = self.generator_losses(x, rx, ys, real, more)
        total = self.objective(losses)
        stepped = [self.opt[k] for k in ("G", "P") if k in self.opt]
        for opt in stepped:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in stepped:
            self.rt.step(opt)
        for d in discriminators:
            d.requires_grad_(True)
        return {k: v.detach() for k, v in losses.items()}, out.detached_judged()

    def update_discriminators(
        self,
        x: torch.Tensor,
        ys: dict[str, tuple[torch.Tensor, Any]],
        judged: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """One Adam step of every discriminator on real images and (pooled) fakes."""
        with self.rt.autocast():
            d_losses = self.translator.discriminator_losses(
                x, {m: y for m, (y, _) in ys.items()}, judged
            )
        self.opt["D"].zero_grad(set_to_none=True)
        sum(d_losses.values()).backward()
        self.rt.step(self.opt["D"])
        return {k: v.detach() for k, v in d_losses.items()}

    def validate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.predictor is not None:
            metrics.update(predictor_selection(self.predictor, self.val, self.codec, self.rt))
        for m, imgs in self.watch.items():
            metrics[f"hist_dist_{m}"] = histogram_distance(
                translate(self.translator.nets.G[m], imgs, self.rt), self.real_target
            )
        return metrics

    def selected(self) -> set[str]:
        """Validation selects the predictor; the translators keep their last weights, the
        one rule for every translating method (so their translations compare alike)."""
        return {"predictor"} if self.predictor is not None else set()

    def samples(self) -> list[torch.Tensor]:
        rows = []
        with eval_mode(self.translator.nets):
            for m, imgs in self.watch.items():
                rows += self.translator.sample_rows(m, self.rt.batch(imgs[:6]))
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), **self.translator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.translator.load_state_dict(state)

    def fitted(self, predictor: Predictor | None = None) -> FittedModel:
        """The translators with this task's predictor (DUIIT) or one trained after it."""
        predictor = predictor or self.predictor
        assert predictor is not None
        return FittedModel(
            predictor,
            self.codec,
            dict(self.translator.nets.G.items()),
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
    predictor_training = "joint"

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
