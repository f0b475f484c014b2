"""Device and layout mistakes, caught on a CPU-only machine.

Steps run on a second device type (`fake_device`: checked as CUDA checks devices, with real
values), collectives go through a stand-in that, like NCCL, reduces only tensors on the
process's device, and channels-last weights go through the flat all-reduce on the CPU.
tests/test_cuda.py runs the same paths on a real GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fake_device import on_fake_device
from helpers import TINY, identical_ranks, noise_cohort
from torch import nn

from duiit.config import load_config
from duiit.evaluation.experiment import QualityConfig
from duiit.evaluation.quality import PredictorFeatures, fid, score_run
from duiit.files import write_json
from duiit.methods import REGISTRY, get_method
from duiit.methods.base import FittedModel, LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.models import ImagePool, Predictor, ResnetGenerator
from duiit.runs import execute
from duiit.training.loop import LoopSettings, run_loop
from duiit.training.runtime import Runtime


def test_fake_device_refuses_what_cuda_refuses() -> None:
    """The checker the tests below rely on: mixing fails, moves and CPU scalars do not."""
    with on_fake_device() as dev:
        x = torch.ones(3, device=dev)
        with pytest.raises(RuntimeError, match="mixes devices"):
            x + torch.ones(3)
        assert (x + torch.tensor(2.0)).device == dev  # a 0-dim CPU tensor, as on CUDA
        assert torch.equal((x * 2).cpu(), torch.full((3,), 2.0))
        assert (torch.ones(3).to(dev) + x).sum().item() == 6.0


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_trains_and_scores_on_a_second_device(method: str, tmp_path: Path) -> None:
    """Fit, checkpoints, validation, sample grids, test predictions and model.pt, with
    `train.device` a device other than the CPU that the cohorts live on."""
    target = noise_cohort("CT", 1, n=24)
    target.patient_ids[:] = [f"p{i // 2}" for i in range(24)]  # 12 patients to split
    target.labels[1::2] = target.labels[::2]  # one age a patient (stack_ridge needs it)
    sources = [noise_cohort("MRI", 2)] if get_method(method).uses_sources else []
    steps = [f"train.{k}=2" for k in ("steps", "batch_size", "eval_every", "ckpt_every")]
    cfg = load_config(overrides=[*TINY, *steps, "train.device=fakegpu:0", "train.precision=fp32"])
    with on_fake_device():
        result = execute(tmp_path / "run", method, cfg, target, sources, 0, quiet=True)
    assert (tmp_path / "run" / "model.pt").exists() and result["metrics"]["mse"] > 0


def tiny_translation(rt: Runtime) -> TranslationTask:
    """DUIIT on noise at 32 px, batch 2, a pool of 2 (full after the first step)."""
    cfg = load_config(
        overrides=[*TINY, "train.batch_size=2", "train.pool_size=2", "train.precision=fp32"]
    )
    torch.manual_seed(0)
    target, source = noise_cohort("CT", 1), noise_cohort("MRI", 2)
    return TranslationTask(target, target, [source], cfg, rt, LabelCodec.fit(target), "joint")


class Interrupted(Exception):
    """Stands for a kill: the run stops between two steps."""


def test_duiit_resumes_on_the_device_after_the_pool_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """Train, checkpoint (pool full), stop, resume: every restored piece (weights, Adam
    state, pool, RNG) reaches the device, and the resumed run ends where an uninterrupted
    one does."""
    s = LoopSettings("duiit", steps=8, log_every=2, eval_every=4, ckpt_every=4, quiet=True)
    with on_fake_device() as dev:
        rt = Runtime.create(str(dev), "fp32")  # fused Adam, as on a GPU
        whole = tiny_translation(rt)
        run_loop(whole, tmp_path / "whole", s, rt)

        killed = tiny_translation(rt)
        step = killed.train_step

        def stop_at_6(n: int) -> dict[str, torch.Tensor]:
            if n == 6:
                raise Interrupted
            return step(n)

        monkeypatch.setattr(killed, "train_step", stop_at_6)
        with pytest.raises(Interrupted):
            run_loop(killed, tmp_path / "killed", s, rt)
        resumed = tiny_translation(rt)
        assert run_loop(resumed, tmp_path / "killed", s, rt).trained_steps == 4
        assert (
            resumed.translator.pool_t.images is not None
            and resumed.translator.pool_t.images.device == dev
        )
        for name, module in whole.modules().items():
            other = resumed.modules()[name].state_dict()
            for k, v in module.state_dict().items():
                assert torch.equal(v, other[k]), (name, k)


def test_restored_pool_moves_to_the_device_it_is_queried_with() -> None:
    pool = ImagePool(size=2, seed=0)
    pool.query(torch.randn(2, 1, 4, 4))  # full
    state = pool.state_dict()  # what a checkpoint gives back: CPU tensors
    with on_fake_device() as dev:
        restored = ImagePool(size=2, seed=0)
        restored.load_state_dict(state)
        out = restored.query(torch.randn(4, 1, 4, 4).to(dev))
        assert out.device == dev and restored.images is not None
        assert restored.images.device == dev
        assert not torch.equal(restored.images.cpu(), state["images"])  # it swapped images


def test_losses_are_averaged_over_processes_on_the_run_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with on_fake_device() as dev:
        rt = Runtime(dev, bf16=False, world=2)
        identical_ranks(monkeypatch, dev, 2)
        assert rt.mean_over_ranks({"cyc": 1.5, "pred": -2.0}) == {"cyc": 1.5, "pred": -2.0}


def conv_step(rt: Runtime, before: Callable[[nn.Module], None] = lambda m: None) -> nn.Module:
    """One fused-Adam step of a channels-last convolution through `rt.step`."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    opt = rt.adam(conv.parameters(), lr=0.1)
    conv(torch.randn(2, 3, 8, 8)).square().mean().backward()
    rt.step(opt)
    before(conv)
    return conv


def test_averaged_gradients_keep_each_weight_memory_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two identical processes average to the gradients of one, so the step must equal the
    single-process step. Fused Adam on the CPU takes a contiguous gradient of a channels-last
    weight without complaint and updates the wrong elements; on CUDA it refuses it."""
    cpu = torch.device("cpu")
    alone = conv_step(Runtime(cpu, bf16=False, fused=True))
    identical_ranks(monkeypatch, cpu, 2)

    def same_layout(conv: nn.Module) -> None:
        for p in conv.parameters():
            assert p.grad is not None and p.grad.stride() == p.stride()

    averaged = conv_step(Runtime(cpu, bf16=False, fused=True, world=2), same_layout)
    assert torch.equal(alone.weight, averaged.weight)
    assert torch.equal(alone.bias, averaged.bias)


def test_fid_runs_on_the_extractor_device() -> None:
    """CPU float16 images against an extractor on the device: the same distance as on the
    CPU, computed there."""
    torch.manual_seed(0)
    predictor = Predictor("resnet10", 1, width=0.25)
    real, fake = noise_cohort("CT", 1).images, noise_cohort("MRI", 2).images
    on_cpu = fid(real, fake, PredictorFeatures(predictor))
    with on_fake_device() as dev:
        on_dev = fid(real, fake, PredictorFeatures(predictor.to(dev)))
    assert on_dev == pytest.approx(on_cpu, rel=1e-4)


def test_quality_scoring_runs_on_the_run_device(tmp_path: Path) -> None:
    """An experiment's scoring of one translating run with `train.device` a second device
    gives the CPU's scores: translation, task FID and consistency all move what they use."""
    target, source = noise_cohort("CT", 1), noise_cohort("MRI", 2)
    codec = LabelCodec.fit(target)
    torch.manual_seed(0)
    model = FittedModel(
        Predictor("resnet10", codec.out_dim, width=0.25),
        codec,
        {"MRI": ResnetGenerator(ngf=8, n_blocks=2)},
        {"ngf": 8, "n_blocks": 2},
    )
    quality = QualityConfig(max_images=8)
    scores = {}
    for device in ("cpu", "fakegpu:0"):
        run_dir = tmp_path / device.replace(":", "")
        run_dir.mkdir()
        model.save(run_dir / "model.pt")
        write_json({"split_seed": 0}, run_dir / "result.json")  # the reference's, its split
        cfg = load_config(overrides=[*TINY, f"train.device={device}", "train.precision=fp32"])
        with on_fake_device():
            scores[device] = score_run(run_dir, run_dir, target, [source], quality, cfg)
    assert scores["fakegpu:0"].keys() == scores["cpu"].keys()
    for k, v in scores["cpu"].items():
        assert scores["fakegpu:0"][k] == (v if k == "notes" else pytest.approx(v, rel=1e-4)), k
