"""The translator plug-ins: CUT's PatchNCE against hand computations, its head and layers,
each translator's weighting of its terms, and the one discriminator call."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TINY
from test_duiit import batch, make_task
from torch import nn
from torch._dynamo.testing import CompileCounter

from duiit.config import load_config
from duiit.methods.base import LabelCodec, translate
from duiit.methods.duiit import TranslationTask, histogram_distance
from duiit.methods.translators import discriminator_loss, lsgan, patch_nce
from duiit.models import CutNetworks, CycleGanNetworks, PatchDiscriminator, ResnetGenerator
from duiit.training.runtime import Runtime

T = 0.07


@pytest.mark.parametrize("t", [T, 1.0])
def test_patch_nce_is_the_cross_entropy_computed_by_hand(t: float) -> None:
    """Two patches of one image: each query's logits are its own key (the positive), the
    other key, and its own key again masked to -10 (CUT's convention), over the temperature
    (CUT's 0.07; at 1 the masked term weighs enough to be checked too)."""
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    k = torch.tensor([[[0.6, 0.8], [0.8, -0.6]]])
    # similarities q_i . k_j: [[0.6, 0.8], [0.8, -0.6]]
    first = -0.6 / t + math.log(math.exp(0.6 / t) + math.exp(-10 / t) + math.exp(0.8 / t))
    second = 0.6 / t + math.log(math.exp(-0.6 / t) + math.exp(0.8 / t) + math.exp(-10 / t))
    got = patch_nce(q, k, t)
    assert got.shape == (1,)
    assert got.item() == pytest.approx((first + second) / 2, rel=1e-5)


def test_patch_nce_is_lowest_for_identical_features_and_per_image() -> None:
    """Orthonormal patches matched to themselves give the floor log(1 + (P-1) e^(-1/t) +
    e^(-11/t)) (t = 1 here, where float32 resolves it); shuffled keys cost more; an image's
    loss ignores the other images' keys (negatives come from the same image), and keys get
    no gradient."""
    p, t = 8, 1.0
    q = torch.eye(p).expand(2, p, p).clone().requires_grad_(True)
    k = q.detach().clone().requires_grad_(True)
    loss = patch_nce(q, k, t)
    floor = math.log(1 + (p - 1) * math.exp(-1 / t) + math.exp(-11 / t))
    assert loss.tolist() == pytest.approx([floor, floor], rel=1e-6)
    shuffled = patch_nce(q, k[:, torch.roll(torch.arange(p), 1)], t)
    assert shuffled.tolist() == pytest.approx([math.log(p - 1 + math.e + math.exp(-10))] * 2)
    other = k.detach().clone()
    other[1] = torch.randn(p, p)
    assert patch_nce(q, other, t)[0].item() == pytest.approx(floor, rel=1e-6)
    loss.sum().backward()
    assert k.grad is None and q.grad is not None


def test_cut_layers_and_head_are_known_before_any_batch() -> None:
    """The PatchNCE layers of the generator: padded input, both downsampling convolutions,
    residual blocks 1 and 5 (the last with fewer); the head is built from their channels,
    so two networks of one seed are equal before any image went through them."""
    g = ResnetGenerator(ngf=8, n_blocks=6)
    assert g.nce_layers == (0, 4, 7, 10, 14)
    assert g.nce_channels == (1, 16, 32, 32, 32)
    feats = g.encode(torch.zeros(1, 1, 32, 32), g.nce_layers)
    assert [f.shape[1] for f in feats] == list(g.nce_channels)
    assert [f.shape[-1] for f in feats] == [38, 16, 8, 8, 8]
    assert ResnetGenerator(ngf=8, n_blocks=2).nce_layers == (0, 4, 7, 10, 11)
    torch.manual_seed(0)
    a = CutNetworks(["MRI"], 8, 8, 2).state_dict()
    torch.manual_seed(0)
    b = CutNetworks(["MRI"], 8, 8, 2).state_dict()
    head = {k: v for k, v in a.items() if k.startswith("H.MRI.")}
    assert len(head) == 5 * 4  # five layers: two linear layers, weight and bias each
    assert a["H.MRI.mlps.1.0.weight"].shape == (256, 16)
    assert all(torch.equal(v, b[k]) for k, v in a.items())


@pytest.mark.parametrize("networks", [CycleGanNetworks, CutNetworks])
def test_each_translator_initialises_as_its_reference_code(networks: type) -> None:
    """Every conv and linear weight (biases 0): CycleGAN's code draws N(0, 0.02), CUT's
    (`init_type='xavier'`, `init_gain=0.02`) xavier_normal, whose sd 0.02 * sqrt(2 / (fan_in
    + fan_out)) is 11 to 40 times smaller here; for the generators, the discriminator and
    CUT's head alike."""
    torch.manual_seed(0)
    layers = [
        (name, m)
        for name, m in networks(["MRI"], 16, 16, 2).named_modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    assert {name.split(".")[0] for name, _ in layers} >= {"G", "D_t"}
    for name, m in layers:
        w = m.weight.detach()
        fans = (w.shape[0] + w.shape[1]) * w[0, 0].numel()
        sd = 0.02 * (math.sqrt(2 / fans) if networks is CutNetworks else 1.0)
        assert float(w.std()) == pytest.approx(sd, rel=0.15), name
        assert m.bias is None or not m.bias.any(), name


@pytest.mark.parametrize(
    ("translator", "terms", "expected"),
    [
        ("cyclegan", {"adv_G": 1, "adv_F": 2, "cyc": 3, "idt": 4}, 1 + 2 + 10 * (3 + 0.5 * 4)),
        ("cut", {"adv_G": 1, "nce": 2, "nce_idt": 4}, 1 + 1.0 * 0.5 * (2 + 4)),
        ("fastcut", {"adv_G": 1, "nce": 2}, 1 + 10.0 * 2),
    ],
)
def test_each_translator_weighs_its_terms_as_its_authors(
    cohorts, translator: str, terms: dict[str, float], expected: float
) -> None:
    """CycleGAN: lambda_cyc 10, identity 0.5 of it. CUT: lambda_NCE 1 on the mean of NCE
    and identity NCE. FastCUT: lambda_NCE 10, no identity NCE."""
    task = make_task(cohorts, f"model.translator={translator}", coupling="none")
    losses = {k: torch.tensor(float(v)) for k, v in terms.items()}
    assert task.translator.objective(losses).item() == pytest.approx(expected)
    got, _ = task.generator_losses(*batch(task))
    assert set(got) == set(terms)


@pytest.mark.parametrize("translator", ["cut", "fastcut"])
def test_patch_nce_queries_come_from_the_translation(cohorts, translator: str) -> None:
    """PatchNCE's queries are G's encoder features of its own output, so each NCE term's
    gradient reaches the whole generator, down to its output convolution (features of the
    input alone would stop at the encoder)."""
    task = make_task(
        cohorts, f"model.translator={translator}", "train.precision=fp32", coupling="none"
    )
    losses, _ = task.generator_losses(*batch(task))
    output_conv = task.translator.nets.G["MRI"].net[-2].weight
    for term in ("nce", "nce_idt") if translator == "cut" else ("nce",):
        (grad,) = torch.autograd.grad(losses[term], output_conv, retain_graph=True)
        assert grad.abs().sum() > 0, term


def test_cut_trains_through_the_compiled_generator(
    cohorts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With compilation on (the GPU path), `Runtime.prepare` compiles every network the step
    calls (`Module.compile`, which compiles what a call of the module runs); a CUT step must
    run its generator through that call, not around it. Here each network's compiler counts
    what it captured (dynamo with an eager backend, as inductor takes minutes on this CPU)."""
    module_compile = nn.Module.compile

    def counted(self: nn.Module) -> None:
        self.captured = CompileCounter()
        module_compile(self, backend=self.captured)

    monkeypatch.setattr(nn.Module, "compile", counted)
    target, sources = cohorts
    cfg = load_config(overrides=[*TINY, "model.translator=cut", "train.batch_size=2"])
    rt = Runtime(torch.device("cpu"), bf16=False, compile=True)
    task = TranslationTask(target, target, sources, cfg, rt, LabelCodec.fit(target), "none")
    task.train_step(0)
    for name, net in task.translator.nets.named_children():
        for part in net.values() if isinstance(net, nn.ModuleDict) else [net]:
            assert part.captured.frame_count > 0, f"{name}: not called through its compiled self"


def test_one_discriminator_call_equals_two() -> None:
    """Real and pooled fake images through the discriminator in one call give the loss and
    gradients of two calls (instance norm is per image), in fp32."""
    torch.manual_seed(0)
    d = PatchDiscriminator(ndf=8)
    real, fake = torch.randn(4, 1, 32, 32), torch.randn(6, 1, 32, 32)
    one = discriminator_loss(d, real, fake)
    one_grads = torch.autograd.grad(one, list(d.parameters()))
    two = 0.5 * (lsgan(d(real), True) + lsgan(d(fake), False))
    two_grads = torch.autograd.grad(two, list(d.parameters()))
    assert one.item() == pytest.approx(two.item(), rel=1e-5)
    for a, b in zip(one_grads, two_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.usefixtures("one_thread")
def test_cut_translates_mri_towards_ct(cohorts) -> None:
    """CUT alone (no task signal) on the phantom: from the untrained generator's grey
    output to translations closer to real CT in intensity distribution than the MRI itself
    (measured, seed 0, one thread, fp32: 3.63 -> 0.41 times the raw MRI's distance in 200
    steps at lr 2e-3, every 50 steps 2.65 / 1.22 / 0.95 / 0.41, then 0.36-0.42 to step 400;
    at lr 1e-3 it took 400 steps to reach 0.55; bf16, which `auto` takes on CPUs with bf16
    units, learns otherwise). CUT's own initialisation (xavier, far smaller weights than
    CycleGAN's) starts slowly: at the default lr 2e-4 it takes about 750 steps to get there
    (0.60; with N(0, 0.02), 0.95 at 300 steps), hence the larger lr, for a test of a minute."""
    task = make_task(
        cohorts,
        "model.translator=cut",
        "train.lr_translator=2e-3",
        "train.precision=fp32",
        coupling="none",
    )
    mri, real_ct = cohorts[1][0].images[:32], task.real_target

    def distance() -> float:
        return histogram_distance(translate(task.translator.nets.G["MRI"], mri, task.rt), real_ct)

    raw, untrained = histogram_distance(mri, real_ct), distance()
    for step in range(200):
        task.train_step(step)
    moved = distance()
    assert moved < 0.8 * raw and moved < 0.5 * untrained, (raw, untrained, moved)
