"""The runtime: precision (bf16 autocast where the hardware has native bf16, fp32
elsewhere), the GPU set-up a CUDA machine gets (asked of a stand-in for torch.cuda here;
tests/test_cuda.py runs it on a GPU), the compile fallback, and the RNG states saved."""

from __future__ import annotations

import pytest
import torch

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
