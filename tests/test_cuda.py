"""The GPU suite: the paths tests/test_devices.py checks on a fake device, on a real GPU.

The rest of the suite hides GPUs (tests/conftest.py), so these run only with
`DUIIT_TEST_GPU=1 .venv/bin/python -m pytest tests/test_cuda.py` on a CUDA machine, which
benchmarks/gpu-check.sh does. Elsewhere they are skipped, with the reason; the one test
here that needs no GPU checks that gpu-check.sh refuses a machine without one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import TINY, cli, identical_ranks, kill_at_first_checkpoint, noise_cohort, torchrun

from duiit.config import load_config
from duiit.methods.base import LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.training.loop import load_checkpoint
from duiit.training.runtime import Runtime

ROOT = Path(__file__).parents[1]
needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU visible; on a GPU machine: DUIIT_TEST_GPU=1 pytest tests/test_cuda.py "
    "(benchmarks/gpu-check.sh runs it)",
)
needs_two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="a 2-rank torchrun run needs 2 CUDA GPUs"
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_refuses_a_machine_without_cuda() -> None:
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu-check.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )
    assert res.returncode != 0 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "gpu-check: no CUDA GPU visible" in lines[0], res.stderr


def run_args(phantom_dir: Path, out: Path) -> list[str]:
    return [
        "--target",
        str(phantom_dir / "ct.csv"),
        "--source",
        str(phantom_dir / "mri.csv"),
        "--out",
        str(out),
    ]


@needs_gpu
def test_short_duiit_run_on_the_gpu(phantom_dir: Path, tmp_path: Path) -> None:
    """`duiit train` as a user runs it on a GPU: the fast path (bf16, fused Adam, compile)."""
    steps = ["train.steps=20", "train.eval_every=10", "train.ckpt_every=10"]
    res = cli("train", "-q", *run_args(phantom_dir, tmp_path / "run"), *TINY, *steps)
    assert res.code == 0, res.err
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["device"].startswith("cuda:0 (")
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert all(math.isfinite(v) for v in result["metrics"].values())


def train_process(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "duiit", "train", "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def weights(run: Path) -> dict[str, torch.Tensor]:
    model = load_checkpoint(run / "model.pt")
    return {
        **{f"P.{k}": v for k, v in model["predictor"].items()},
        **{f"G.{k}": v for k, v in model["translators"]["MRI"].items()},
    }


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((v.double() - b[k].double()).abs().max()) for k, v in a.items())


@needs_gpu
def test_resume_after_the_pool_is_full_gives_the_uninterrupted_weights(
    phantom_dir: Path, tmp_path: Path
) -> None:
    """Killed after its first checkpoint (the pool of 8 is full after 2 steps), resumed:
    the run ends where an uninterrupted one does, as closely as two uninterrupted runs
    agree with each other (cuDNN's autotuned kernels need not be deterministic)."""
    settings = [
        *TINY,
        "train.device=cuda",
        "train.precision=fp32",
        "train.compile=off",
        "train.batch_size=4",
        "train.pool_size=8",
        "train.steps=40",
        "train.ckpt_every=10",
        "train.eval_every=20",
    ]
    for name in ("whole", "again"):
        proc = train_process([*run_args(phantom_dir, tmp_path / name), *settings])
        assert proc.wait(timeout=600) == 0, proc.communicate()[1]

    killed = train_process([*run_args(phantom_dir, tmp_path / "killed"), *settings])
    last = kill_at_first_checkpoint(killed, tmp_path / "killed")
    assert 0 < load_checkpoint(last)["step"] < 40
    resumed = train_process(["--resume", str(tmp_path / "killed")])
    assert resumed.wait(timeout=600) == 0, resumed.communicate()[1]

    whole = weights(tmp_path / "whole")
    noise = max_difference(weights(tmp_path / "again"), whole)
    assert max_difference(weights(tmp_path / "killed"), whole) <= max(10 * noise, 1e-6)


@needs_gpu
def test_experiment_with_quality_scoring_on_the_gpu(phantom_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "e.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "target": str(phantom_dir / "ct.csv"),
                "sources": [str(phantom_dir / "mri.csv")],
                "methods": ["duiit", "target_only"],
                "splits": 1,
                "run": {"data": {"image_size": 32}, "train": {"steps": 4, "eval_every": 2}},
                "quality": {"max_images": 16},
            }
        )
    )
    model = [f"run.{o}" for o in TINY if o.startswith("model.")]
    out = tmp_path / "exp"
    res = cli("experiment", spec, "--out", out, "-q", *model, "run.train.compile=off")
    assert res.code == 0, res.err
    quality = json.loads((out / "runs/MIX-CT-MRI/duiit/split-00/quality.json").read_text())
    for key in ("task_fid_MRI", "task_fid_raw_MRI", "consistency_MRI"):
        assert math.isfinite(quality[key]), key


def layout(t: torch.Tensor) -> list[int]:
    """Strides along the dimensions of size > 1: what a memory format fixes (fused Adam
    compares these; inductor may give a size-1 dimension another stride)."""
    return [stride for n, stride in zip(t.shape, t.stride(), strict=True) if n > 1]


@needs_gpu
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("compile", ["off", "on"], ids=["eager", "compiled"])
def test_fast_path_variants_compute_the_plain_step(
    monkeypatch: pytest.MonkeyPatch, channels_last: bool, compile: str
) -> None:
    """bf16, fused Adam and the flat all-reduce of two identical ranks, with and without
    channels-last and compile: the first step's losses are the plain fp32 step's (to bf16
    precision), and every gradient kept its weight's memory format through the all-reduce
    (fused Adam on CUDA refuses one that did not)."""
    cfg = load_config(overrides=[*TINY, "train.batch_size=4", "train.pool_size=4"])
    target, source = noise_cohort("CT", 1), noise_cohort("MRI", 2)

    def task(rt: Runtime) -> TranslationTask:
        torch.manual_seed(0)
        return TranslationTask(target, target, [source], cfg, rt, LabelCodec.fit(target), "joint")

    def two_ranks(rt: Runtime) -> Runtime:
        rt.world = 2  # rank 0 of 2: the flat all-reduce path, each rank's slice of a batch
        identical_ranks(monkeypatch, rt.device, 2)
        return rt

    plain = task(two_ranks(Runtime.create("cuda", "fp32", fast=False, compile="off")))
    expected = {k: float(v) for k, v in plain.train_step(0).items()}
    fast = task(two_ranks(Runtime.create("cuda", compile=compile, channels_last=channels_last)))
    got = {k: float(v) for k, v in fast.train_step(0).items()}
    assert got == pytest.approx(expected, rel=0.05)
    for step in range(1, 4):
        assert all(math.isfinite(float(v)) for v in fast.train_step(step).values())
    for p in [*fast.translator.nets.parameters(), *fast.predictor.parameters()]:
        if p.grad is not None:
            assert layout(p.grad) == layout(p)
    conv = fast.translator.nets.G["MRI"].net[4].weight  # 3x3, ngf -> 2 ngf channels
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last


@needs_gpu
@needs_two_gpus
def test_two_ranks_under_torchrun_with_nccl(phantom_dir: Path, tmp_path: Path) -> None:
    """Each rank on its own GPU (NCCL): the averaged steps keep the ranks' weights equal, and
    `duiit train` runs end to end with rank 0 alone writing."""
    res = torchrun(str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "two.pt"), "2")
    assert res.returncode == 0, res.stderr
    rank0 = torch.load(tmp_path / "two.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "two.pt.rank1", weights_only=True)
    for k, v in rank0["bank"].items():
        torch.testing.assert_close(v, rank1["bank"][k], rtol=0, atol=1e-6)
    steps = ["train.steps=8", "train.eval_every=4", "train.log_every=4", "train.ckpt_every=4"]
    args = run_args(phantom_dir, tmp_path / "run")
    res = torchrun("-m", "duiit", "train", "-q", *args, *TINY, "train.compile=off", *steps)
    assert res.returncode == 0, res.stderr
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert not m.duplicated(["stage", "step", "name"]).any()
