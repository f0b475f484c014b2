"""The DUIIT method: the maths of the joint objective, and that it learns and translates."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY as BASE

from duiit import runs
from duiit.config import Config, load_config
from duiit.data import load_cohorts, split_cohort
from duiit.methods.base import LabelCodec, translate
from duiit.methods.duiit import TranslationTask, histogram_distance
from duiit.methods.predictor_task import scale_grad
from duiit.models import Predictor
from duiit.training.loop import load_checkpoint
from duiit.training.runtime import Runtime, cpu_bf16_units, seed_everything

# The maths tests compare gradients of repeated calls: no random augmentation in them.
TINY = [*BASE, "train.batch_size=8", "predictor.augment=[]"]


def tiny_config(*extra: str) -> Config:
    return load_config(overrides=[*TINY, *extra])


TRANSLATORS = ["cyclegan", "cut", "fastcut"]


def make_task(
    cohorts, *extra: str, coupling: str = "joint", frozen: Predictor | None = None
) -> TranslationTask:
    target, sources = cohorts
    cfg = tiny_config(*extra)
    seed_everything(0)
    split = split_cohort(target, seed=0)
    train = target.subset(split.train)
    return TranslationTask(
        train,
        target.subset(split.val),
        sources,
        cfg,
        Runtime.create("cpu", cfg.train.precision),
        LabelCodec.fit(train),
        coupling=coupling,
        frozen=frozen,
    )


def batch(task: TranslationTask):
    gen = torch.Generator().manual_seed(123)
    x, rx = task.target.sample(gen, 4)
    return x, rx, {m: s.sample(gen, 4) for m, s in task.sources.items()}


@pytest.mark.parametrize("factor", [0.0, 0.2, 1.96, 19.6, -0.7])
def test_scale_grad_is_exactly_the_identity_forward_and_scales_backward_in_bf16(
    factor: float,
) -> None:
    """G's output under bf16 autocast (bf16) goes through unchanged to the last bit, at a
    factor below 1 (lambda * std² of the ablation's lambda = 1e-3), above 1 and negative
    (DANN's reversal); the gradient is exactly the factor times the incoming one."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.tanh(conv(torch.randn(4, 1, 16, 16))).detach().requires_grad_()
        y = scale_grad(x, factor)
    assert x.dtype == y.dtype == torch.bfloat16
    assert torch.equal(y, x)
    incoming = torch.randn_like(y)
    y.backward(incoming)
    assert torch.equal(x.grad, incoming * factor)


def stepped_grads(task: TranslationTask, batch_) -> dict[str, torch.Tensor]:
    """The gradients `update_generators` hands to the generators' optimiser, keyed by
    parameter name; the step itself is skipped, so the weights stay as they were, and so
    is the translator's randomness (CUT's patch locations): calls compare alike."""
    grads: dict[str, torch.Tensor] = {}
    randomness = task.translator.state_dict()

    def record(opt: torch.optim.Optimizer) -> None:
        if opt is task.opt["G"]:
            for name, p in task.translator.nets.named_parameters():
                if p.grad is not None:
                    grads[name] = p.grad.detach().clone()

    task.rt.step = record  # type: ignore[method-assign]
    task.update_generators(*batch_)
    task.translator.load_state_dict(randomness)
    return grads


def grad_of(loss: torch.Tensor, task: TranslationTask) -> dict[str, torch.Tensor]:
    """d loss / d (generator parameters), computed on its own."""
    params = dict(task.translator.nets.named_parameters())
    got = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: g for n, g in zip(params, got, strict=True) if g is not None}


def assert_difference(a, b, expected, factor: float) -> None:
    """a - b == factor * expected over every parameter (relative error of the whole)."""
    assert set(expected) <= set(a)
    diff = torch.cat([(a[n] - b.get(n, torch.zeros_like(a[n]))).flatten() for n in a])
    want = torch.cat([(factor * expected.get(n, torch.zeros_like(a[n]))).flatten() for n in a])
    assert want.norm() > 0
    assert (diff - want).norm() <= 1e-3 * want.norm(), float((diff - want).norm() / want.norm())


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_generator_gets_lambda_times_the_gradient_of_the_mse_in_years(
    cohorts, translator: str
) -> None:
    """The paper's lambda weighs L_pred in label units (years²), though the predictor learns
    on standardised labels: G's gradient in the step actually taken is lambda * dMSE_y²/dG,
    whichever translator G belongs to."""
    lam = 1e-3
    task = make_task(
        cohorts,
        f"train.lambda_pred={lam}",
        "train.precision=fp32",
        f"model.translator={translator}",
    )
    data = batch(task)
    coupled = stepped_grads(task, data)
    task.cfg.train.lambda_pred = 0.0
    uncoupled = stepped_grads(task, data)
    _, _, ys = data
    (y, ry), codec = ys["MRI"], task.codec
    years = codec.decode(task.predictor(task.translator.nets.G["MRI"](y)))
    mse_years = F.mse_loss(years, codec.decode(ry))  # the translated images' own mean
    assert codec.std > 5  # ages: years² and standardised units differ by far more than 1e-3
    expected = grad_of(mse_years, task)
    assert expected and all(n.startswith("G.") for n in expected)  # F, H never see L_pred
    assert_difference(coupled, uncoupled, expected, lam)


def test_each_source_gets_lambda_of_its_own_mean_and_the_predictor_its_recipe_loss(
    cohorts,
) -> None:
    """With two sources, each generator's task gradient is lambda times that of its own
    translations' mean MSE (the paper sums an expectation per domain: no 1/(1+S) share),
    the predictor's gradient is its recipe loss (L1 here) on real and translated images,
    and the translations the predictor scores are exactly G's output (no rescaling trick)."""
    target, (mri,) = cohorts
    pet = mri.subset(range(len(mri)))
    pet.modality = "PET"
    pet.patient_ids = np.array([f"pet-{p}" for p in pet.patient_ids], dtype=object)
    lam = 1e-2
    task = make_task(
        (target, [mri, pet]),
        f"train.lambda_pred={lam}",
        "train.precision=fp32",
        "predictor.loss=l1",
    )
    data = batch(task)
    coupled = stepped_grads(task, data)
    task.cfg.train.lambda_pred = 0.0
    uncoupled = stepped_grads(task, data)
    x, rx, ys = data
    codec, nets = task.codec, task.translator.nets
    expected = {}
    for m, (y, ry) in ys.items():
        years = codec.decode(task.predictor(nets.G[m](y)))
        expected.update(grad_of(F.mse_loss(years, codec.decode(ry)), task))
    assert any(n.startswith("G.MRI") for n in expected) and any(
        n.startswith("G.PET") for n in expected
    )
    assert_difference(coupled, uncoupled, expected, lam)
    losses, out = task.generator_losses(*data)
    k = task.shares  # each source's share of P's batch: the first k of G's translations
    assert sum(k.values()) == task.cfg.predictor.batch_size  # source_share 0.5
    fakes = torch.cat([out.fakes[m][: k[m]] for m in ys]).detach()
    p_loss = F.l1_loss(
        task.predictor(torch.cat([x, fakes])), torch.cat([rx, *(ys[m][1][: k[m]] for m in ys)])
    )
    torch.testing.assert_close(losses["pred"], p_loss)


@pytest.mark.parametrize("weight", [0.0, 0.5, 3.0])
def test_translated_images_weigh_source_weight_in_the_predictors_loss(cohorts, weight) -> None:
    """P's loss is a weighted mean: real images weigh 1, translations `source_weight`
    (0: P learns from the real images alone, while G still gets its task gradient)."""
    task = make_task(
        cohorts, "predictor.loss=mse", f"predictor.source_weight={weight}", "train.precision=fp32"
    )
    x, rx, ys = batch(task)
    losses, out = task.generator_losses(x, rx, ys)
    fake, labels = (
        out.fakes["MRI"][: task.shares["MRI"]].detach(),
        ys["MRI"][1][: task.shares["MRI"]],
    )
    real_se = (task.predictor(x).flatten() - rx.flatten()) ** 2
    fake_se = (task.predictor(fake).flatten() - labels.flatten()) ** 2
    expected = (real_se.sum() + weight * fake_se.sum()) / (len(real_se) + weight * len(fake_se))
    torch.testing.assert_close(losses["pred"], expected)
    assert losses["task"] > 0


@pytest.mark.parametrize(("share", "translated"), [(0.5, 12), (0.25, 4), (0.0, 0)])
def test_the_joint_predictor_learns_from_its_own_batch_and_its_share_of_translations(
    cohorts, share, translated
) -> None:
    """The recipe's batch in the joint loop: P sees predictor.batch_size real target images
    (augmented) and `source_share` of its batch in translations (the translator's n, then
    more translated without gradient), while the translator keeps its own (smaller) batch
    and G's task term scores the translator's n alone."""
    task = make_task(
        cohorts,
        "predictor.batch_size=12",
        "predictor.augment=[flip]",
        f"predictor.source_share={share}",
    )
    seen: list[int] = []
    task.predictor.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    made: list[int] = []
    task.translator.nets.G["MRI"].register_forward_hook(
        lambda mod, inp, out: made.append(inp[0].shape[0])
    )
    task.train_step(0)
    n = task.cfg.train.batch_size
    assert seen[0] == 12 + translated  # real images for P, then its share of translations
    assert seen[1:] == [n]  # G's task term: the translator's translations alone
    # G maps the translator's n sources, then n images of each of its cycle and identity
    # terms, then (only when P's share exceeds n) the rest of P's share, without gradient.
    assert made == [n, n, n] + ([translated - n] if translated > n else [])


def test_gs_task_term_leaves_the_predictors_batch_statistics_to_its_own_pass(cohorts) -> None:
    """With BatchNorm, only P's own pass (real images and translations) updates its running
    statistics; G's task term, a second pass over the translations alone, must not."""
    task = make_task(cohorts, "predictor.norm=batch", "train.lambda_pred=0.01")
    start = copy.deepcopy(task.predictor.state_dict())
    x, rx, ys = batch(task)
    losses, out = task.generator_losses(x, rx, ys)
    assert "task" in losses
    after_step = copy.deepcopy(task.predictor.state_dict())
    task.predictor.load_state_dict(start)
    task.predictor(torch.cat([x, out.fakes["MRI"].detach()]))  # P's own pass, alone
    own_pass = task.predictor.state_dict()
    buffers = [n for n, _ in task.predictor.named_buffers()]
    assert any("running_mean" in n for n in buffers)
    for n in buffers:
        assert torch.equal(after_step[n], own_pass[n]), n


def test_identity_loss_weighs_lambda_cyc_times_lambda_identity(cohorts) -> None:
    task = make_task(cohorts, "train.lambda_identity=0.5", "train.precision=fp32")
    data = batch(task)
    with_idt = stepped_grads(task, data)
    task.cfg.train.lambda_identity = 0.0
    without = stepped_grads(task, data)
    losses, _ = task.generator_losses(*data)
    assert "idt" not in losses  # 0 disables it (and its cost)
    x, _, ys = data
    y = ys["MRI"][0]
    b = task.translator.nets
    idt = F.l1_loss(b.G["MRI"](x), x) + F.l1_loss(b.F["MRI"](y), y)
    assert_difference(with_idt, without, grad_of(idt, task), 10.0 * 0.5)


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_cycada_semantic_loss_weighs_lambda_sem(cohorts, translator: str) -> None:
    """In float64: CUT's step gradient (xavier-initialised, hence tiny, features through an
    L2 normalisation) is up to 1e6 times this term's, whose share fp32 would round away."""
    frozen = Predictor("resnet10", 1, width=0.5)
    task = make_task(
        cohorts,
        "train.lambda_sem=0.5",
        "train.precision=fp32",
        f"model.translator={translator}",
        coupling="frozen",
        frozen=frozen.double(),
    )
    task.translator.nets.double()
    x, rx, ys = batch(task)
    data = (x.double(), rx, {m: (y.double(), r) for m, (y, r) in ys.items()})
    with_sem = stepped_grads(task, data)
    task.cfg.train.lambda_sem = 0.0
    without = stepped_grads(task, data)
    _, _, ys = data
    y, ry = ys["MRI"]
    sem = task.codec.loss(frozen(task.translator.nets.G["MRI"](y)), ry)
    assert_difference(with_sem, without, grad_of(sem, task), 0.5)


def test_pred_loss_reaches_generator_only_when_lambda_positive(cohorts) -> None:
    task = make_task(cohorts, "train.lambda_pred=0")
    losses, _ = task.generator_losses(*batch(task))
    losses["pred"].backward()
    assert all(p.grad is None or not p.grad.any() for p in task.translator.nets.parameters())
    assert any(p.grad is not None and p.grad.any() for p in task.predictor.parameters())


def test_translators_keep_their_last_weights_while_the_predictor_is_selected(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation (scripted: best at the first of three evaluations) picks the predictor of
    step 2; model.pt, which translate, augment and the quality scores read, holds the
    translator of the last step."""
    curve = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(
        "duiit.methods.duiit.predictor_selection", lambda *a: {"selection": next(curve)}
    )
    cfg = tiny_config("train.steps=6", "train.eval_every=2", "train.ckpt_every=6")
    runs.train(phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "r", cfg, quiet=True)
    ck = tmp_path / "r" / "checkpoints"
    best, last = load_checkpoint(ck / "duiit-best.pt"), load_checkpoint(ck / "duiit-last.pt")
    model = load_checkpoint(tmp_path / "r" / "model.pt")
    assert best["step"] == 2 and set(best["weights"]) == {"predictor"}
    for k, v in model["translators"]["MRI"].items():
        assert torch.equal(v, last["weights"]["bank"][f"G.MRI.{k}"]), k
    for k, v in model["predictor"].items():
        assert torch.equal(v, best["weights"]["predictor"][k]), k
    assert any(
        not torch.equal(v, last["weights"]["predictor"][k]) for k, v in model["predictor"].items()
    )


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_detached_variant_gives_generators_no_gradient_from_pred_loss(
    cohorts, translator: str
) -> None:
    """What the authors' released code runs: the predictor co-trains on G(y), G learns
    nothing from it, even with a lambda that would dominate the joint variant."""
    task = make_task(
        cohorts, "train.lambda_pred=1.0", f"model.translator={translator}", coupling="detached"
    )
    x, rx, ys = batch(task)
    losses, _ = task.generator_losses(x, rx, ys)
    losses["pred"].backward()
    assert all(p.grad is None for p in task.translator.nets.parameters())
    before = copy.deepcopy(task.predictor.state_dict())
    task.train_step(0)
    after = task.predictor.state_dict()
    assert any(not torch.equal(before[k], v) for k, v in after.items())  # it still trains


def test_cycada_frozen_predictor_steers_generator_and_never_changes(cohorts) -> None:
    frozen = Predictor("resnet10", 1, width=0.5)
    before = copy.deepcopy(frozen.state_dict())
    task = make_task(cohorts, coupling="frozen", frozen=frozen)
    x, rx, ys = batch(task)
    losses, _ = task.generator_losses(x, rx, ys)
    assert task.predictor is None and "pred" not in losses
    losses["sem"].backward()
    assert any(p.grad is not None and p.grad.any() for p in task.translator.nets.G.parameters())
    assert all(p.grad is None for p in frozen.parameters())
    for step in range(3):
        task.train_step(step)
    after = frozen.state_dict()  # weights and batch-norm statistics alike
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("translator", "terms", "d_terms"),
    [
        ("cyclegan", ("adv_G", "adv_F", "cyc", "pred", "task"), ("D_t", "D_s")),
        ("cut", ("adv_G", "nce", "nce_idt", "pred", "task"), ("D_t",)),
    ],
)
def test_one_step_lowers_the_objective_and_moves_every_term_on_a_fixed_batch(
    cohorts, translator: str, terms: tuple[str, ...], d_terms: tuple[str, ...]
) -> None:
    """One generator step lowers the objective (every term at its weight), and every term
    is in it with a positive weight and moves with the step; one discriminator step lowers
    each discriminator's loss. A single generator term may rise where the terms pull apart:
    measured per term, CUT's identity NCE rose by 3 % on one CPU and fell on another (their
    rounding differs), so per term only the sign of its weight is asserted."""
    task = make_task(
        cohorts,
        "train.pool_size=0",
        "train.lambda_pred=0.01",
        f"model.translator={translator}",
        "predictor.lr=0.0002",  # one small step: the recipe's peak rate overshoots at once
        "predictor.loss=mse",  # what G's task term lowers too
    )
    if translator == "cut":
        # CUT's reference start (xavier, gain 0.02) gives a discriminator near 0 everywhere,
        # where adv_G sits flat at 1: a few steps first, then the one step measured.
        for step in range(5):
            task.train_step(step)
    x, rx, ys = batch(task)
    images = {m: y for m, (y, _) in ys.items()}
    state = task.translator.state_dict()  # CUT: the same patch locations in every evaluation

    def losses() -> dict[str, torch.Tensor]:
        task.translator.load_state_dict(state)
        with torch.no_grad(), task.rt.autocast():  # the precision the step itself uses
            return task.generator_losses(x, rx, ys)[0]

    before = losses()
    task.translator.load_state_dict(state)
    _, judged = task.update_generators(x, rx, ys)
    after = losses()
    with torch.no_grad(), task.rt.autocast():
        d_before = task.translator.discriminator_losses(x, images, judged)
    task.update_discriminators(x, ys, judged)
    with torch.no_grad(), task.rt.autocast():
        d_after = task.translator.discriminator_losses(x, images, judged)
    assert task.objective(after) < task.objective(before)
    for k in terms:
        raised = task.objective({**before, k: before[k] + 1})
        assert raised > task.objective(before), k  # in the objective, with a positive weight
        assert after[k] != before[k], k  # and it depends on what the step moved
    for k in d_terms:
        assert d_after[k] < d_before[k], (k, float(d_before[k]), float(d_after[k]))


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_translator_alone_steps_on_its_own_objective(cohorts, translator: str) -> None:
    """Coupling `none` (the `cyclegan` baseline's first stage, whichever translator): no
    predictor, and the generators' gradient is exactly that of the translator's weighted
    terms, nothing of the coupling added."""
    task = make_task(
        cohorts, "train.precision=fp32", f"model.translator={translator}", coupling="none"
    )
    data = batch(task)
    stepped = stepped_grads(task, data)
    x, rx, ys = data
    losses, _ = task.generator_losses(x, rx, ys)
    assert task.predictor is None and "pred" not in losses and set(task.optimizers()) == {"G", "D"}
    own = task.translator.objective(losses)
    expected = {n: g for n, g in grad_of(own, task).items() if not n.startswith("D_")}
    assert expected and set(stepped) == set(expected)
    for n, g in expected.items():
        torch.testing.assert_close(stepped[n], g, rtol=1e-4, atol=1e-7, msg=n)


# bf16 learning where the CPU runs bf16 natively (AVX512-BF16, AMX; duiit's `auto` picks it
# there): without those units torch emulates it at ~5x the fp32 time (3 of CI's 15 minutes)
# and `auto` never picks it; the bf16 step's maths stay tested there by the bf16 kill-resume
# test and the bf16 task-gradient tests.
NATIVE_BF16 = pytest.param(
    "bf16",
    marks=pytest.mark.skipif(
        cpu_bf16_units() is None, reason="bf16 is emulated on this CPU (no AVX512-BF16 or AMX)"
    ),
)


@pytest.mark.parametrize("precision", ["fp32", NATIVE_BF16])
def test_learns_age_and_translates_towards_ct(
    phantom_dir: Path, tmp_path: Path, precision: str
) -> None:
    """On the phantom, the predictor beats the training mean on held-out CT patients and
    translated MRI moves towards CT in intensity distribution, in fp32 and in bf16."""
    cfg = tiny_config(
        "train.steps=300",
        "train.eval_every=50",
        "train.log_every=25",
        f"train.precision={precision}",
    )
    result = runs.train(
        phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "run", cfg, quiet=True
    )
    preds = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    target, [mri] = load_cohorts(
        phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], cfg.data, quiet=True
    )
    split = split_cohort(target, seed=cfg.train.seed)
    train_mean = float(target.labels[split.train].mean())
    baseline = float(((preds["label"] - train_mean) ** 2).mean())
    assert result["metrics"]["mse"] < 0.8 * baseline, (result["metrics"], baseline)

    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    dist = metrics[metrics["name"] == "val_hist_dist_MRI"].sort_values("step")["value"].to_numpy()
    assert dist[-1] < 0.6 * dist[0], dist
    from duiit.methods import FittedModel

    fitted = FittedModel.load(tmp_path / "run" / "model.pt")
    rt = Runtime.create("cpu")
    real_ct = target.images[split.val]
    raw = histogram_distance(mri.images[:32], real_ct)
    moved = histogram_distance(translate(fitted.translators["MRI"], mri.images[:32], rt), real_ct)
    assert moved < 0.8 * raw, (raw, moved)  # measured: 0.20 -> 0.14 (seed 0)
    assert list((tmp_path / "run" / "samples").glob("duiit-*.png"))
    assert set(metrics["name"]) >= {"adv_G", "adv_F", "cyc", "pred", "D_t", "D_s", "lr"}


def test_two_sources_share_target_discriminator_and_predictor(phantom_dir: Path) -> None:
    cfg = tiny_config()
    target, sources = load_cohorts(
        phantom_dir / "ct.csv",
        [phantom_dir / "mri.csv", phantom_dir / "pet.csv"],
        cfg.data,
        quiet=True,
    )
    task = TranslationTask(
        target, target, sources, cfg, Runtime.create("cpu"), LabelCodec.fit(target), "joint"
    )
    b = task.translator.nets
    assert set(b.G) == set(b.F) == set(b.D_s) == {"MRI", "PET"}
    before = copy.deepcopy(b.D_t.state_dict())
    losses = task.train_step(0)
    assert all(np.isfinite(float(v)) for v in losses.values())
    assert any(not torch.equal(before[k], v) for k, v in b.D_t.state_dict().items())
