"""The runtime: precision (bf16 autocast where the hardware has native bf16, fp32
elsewhere), the GPU set-up a CUDA machine gets (asked of a stand-in for torch.cuda here;
tests/test_cuda.py runs it on a GPU), the compile fallback, and the RNG states saved."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.distributed as dist

from duiit.errors import DuiitError
from duiit.training import runtime
from duiit.training.loop import _rng_state, _set_rng_state
from duiit.training.runtime import Runtime, choose_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("units", "expected"), [("AMX-BF16", True), ("AVX512-BF16", True), (None, False)]
)
def test_auto_takes_bf16_only_on_cpus_with_native_bf16(
    monkeypatch: pytest.MonkeyPatch, units: str | None, expected: bool
) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_units", lambda: units)
    bf16, why = choose_precision("auto", True, CPU)
    assert bf16 is expected
    assert (units or "no native bf16") in why


@pytest.mark.parametrize(
    ("units", "train", "gpus", "settled"),
    [
        (None, [], 0, "fp32"),
        ("AVX512-BF16", [], 0, "bf16"),
        (None, ["train.precision=bf16"], 0, "bf16"),
        ("AVX512-BF16", ["train.fast=false"], 0, "fp32"),
        (None, [], 1, "bf16"),  # Ray runs given GPUs: CUDA's, whatever the head's CPU
        (None, ["train.device=cpu"], 1, "fp32"),
    ],
)
def test_a_grid_settles_auto_precision_once(
    monkeypatch: pytest.MonkeyPatch, units: str | None, train: list[str], gpus: int, settled: str
) -> None:
    """An experiment replaces train.precision=auto by what it means where the grid starts,
    so that every run computes alike (evaluation.runner.settle_precision)."""
    from duiit.config import load_config
    from duiit.evaluation.ray_backend import RayOptions
    from duiit.evaluation.runner import settle_precision

    monkeypatch.setattr(runtime, "cpu_bf16_units", lambda: units)
    ray = RayOptions(gpus_per_run=gpus) if gpus else None
    cfg, note = settle_precision(load_config(overrides=train), 1, ray)
    assert cfg.train.precision == settled and note


def test_explicit_precision_and_slow_path_win_over_hardware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_units", lambda: "AMX-BF16")
    assert choose_precision("fp32", True, CPU)[0] is False
    assert choose_precision("auto", False, CPU) == (False, "fp32 (train.fast=false)")
    assert choose_precision("bf16", False, CPU)[0] is True
    assert choose_precision("auto", True, CUDA)[0] is True


def test_runtime_autocasts_convolutions_when_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_units", lambda: "AVX512-BF16")
    rt = Runtime.create("cpu", "auto")
    conv = torch.nn.Conv2d(1, 2, 3)
    with rt.autocast():
        assert conv(torch.zeros(1, 1, 8, 8)).dtype == torch.bfloat16
    assert "AVX512-BF16" in rt.precision_note
    with Runtime.create("cpu", "fp32").autocast():
        assert conv(torch.zeros(1, 1, 8, 8)).dtype == torch.float32


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object, object]]:
    """A machine with two GPUs, as far as duiit's set-up asks torch about them: the calls
    that set the current device and join a process group, in order."""
    calls: list[tuple[str, object, object]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d), None))
    )
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    return calls


def test_cuda_runs_tune_cudnn_and_leave_channels_last_to_the_user(
    two_gpus: list[tuple[str, object, object]],
) -> None:
    rt = Runtime.create("cuda", "fp32", fast=False)
    assert torch.backends.cudnn.benchmark  # on the plain path too: fixed image sizes
    rt = Runtime.create("cuda", compile="off")
    assert rt.device == torch.device("cuda", 0) and two_gpus[-1] == ("set_device", rt.device, None)
    assert torch.backends.cudnn.benchmark and rt.bf16 and rt.fused
    assert not rt.channels_last  # measured slower on CPU, unmeasured on GPU: opt-in
    assert Runtime.create("cuda:1", compile="off", channels_last=True).channels_last
    with pytest.raises(DuiitError, match=r"train.device=cuda:2, but 2 GPU\(s\) are visible"):
        Runtime.create("cuda:2")


def test_torchrun_process_takes_its_local_gpu_before_joining(
    monkeypatch: pytest.MonkeyPatch, two_gpus: list[tuple[str, object, object]]
) -> None:
    """Rank 1 of 2: its GPU is cuda:1, made current before the process group binds to it,
    and a train.device naming another GPU is refused rather than shared."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: any(c[0] == "join" for c in two_gpus))
    monkeypatch.setattr(
        dist,
        "init_process_group",
        lambda backend, device_id=None: two_gpus.append(("join", backend, device_id)),
    )
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    rt = Runtime.create("auto", compile="off")
    gpu = torch.device("cuda", 1)
    assert (rt.device, rt.rank, rt.world) == (gpu, 1, 2)
    assert two_gpus[:2] == [("set_device", gpu, None), ("join", "cpu:gloo,cuda:nccl", gpu)]
    with pytest.raises(DuiitError, match=r"LOCAL_RANK \(this one 1\); use train.device=cuda"):
        Runtime.create("cuda:0")


def test_torchrun_with_more_processes_than_gpus_is_one_error(
    monkeypatch: pytest.MonkeyPatch, two_gpus: list[tuple[str, object, object]]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    with pytest.raises(DuiitError, match=r"torchrun process 2 of this machine, but 2 GPU\(s\)"):
        Runtime.create("auto")
    assert two_gpus == []  # it neither took a GPU nor joined


def test_a_network_that_fails_to_compile_runs_eager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Compiling happens at the first call, long after `Runtime.create` checked that
    dynamo works; a compiler that fails there (here inductor) must not end the run."""
    import torch._inductor.compile_fx as inductor
    from torch._dynamo import config as dynamo_config

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no working C++ compiler")

    monkeypatch.setattr(inductor, "compile_fx", no_compiler)
    # Runtime.create sets dynamo's global suppress_errors; torch's own patch puts it back
    # (monkeypatch's undo deletes a config entry, which hides it from every later compile).
    with dynamo_config.patch(suppress_errors=dynamo_config.suppress_errors):
        _compile_and_call_eagerly_on_failure(caplog)


def _compile_and_call_eagerly_on_failure(caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime.create("cpu", "fp32", compile="on")

    class Net(torch.nn.Module):  # dynamo leaves torch's own containers alone
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x)) + 1

    net = rt.prepare(Net())
    x = torch.randn(2, 1, 8, 8)
    try:
        with caplog.at_level(logging.WARNING):
            y = net(x)
        torch.testing.assert_close(y, net.forward(x))
        assert "no working C++ compiler" in caplog.text  # dynamo's warning names the cause
    finally:
        torch._dynamo.reset()


def test_checkpoints_keep_the_rng_of_the_run_gpu_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """One GPU's state is saved (not every visible GPU's) and restored onto the GPU the
    resumed run uses, whichever index that is."""
    gpus = {0: torch.tensor([0], dtype=torch.uint8), 1: torch.tensor([1], dtype=torch.uint8)}
    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d: gpus[torch.device(d).index])
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda s, d: restored.update({torch.device(d).index: s})
    )
    state = _rng_state(torch.device("cuda", 1))
    assert state.keys() == {"torch", "gpu"} and torch.equal(state["gpu"], gpus[1])
    _set_rng_state(state, torch.device("cuda", 0))
    assert restored.keys() == {0} and torch.equal(restored[0], gpus[1])
    assert _rng_state(torch.device("cpu")).keys() == {"torch"}
