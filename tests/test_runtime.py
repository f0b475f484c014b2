"""Precision choice: bf16 autocast where the hardware has native bf16, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from duiit.training import runtime
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
