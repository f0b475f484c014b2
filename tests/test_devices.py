"""Device and layout mistakes, caught on a CPU-only machine.

Steps run on a second device type (`fake_device`: checked as CUDA checks devices, with real
values), collectives go through a stand-in that, like NCCL, reduces only tensors on the
process's device, and channels-last weights go through the flat all-reduce on the CPU.
tests/test_cuda.py runs the same paths on a real GPU.
"""

from __future__ import annotations

import pytest
import torch
from fake_device import on_fake_device


def test_fake_device_refuses_what_cuda_refuses() -> None:
    """The checker the tests below rely on: mixing fails, moves and CPU scalars do not."""
    with on_fake_device() as dev:
        x = torch.ones(3, device=dev)
        with pytest.raises(RuntimeError, match="mixes devices"):
            x + torch.ones(3)
        assert (x + torch.tensor(2.0)).device == dev  # a 0-dim CPU tensor, as on CUDA
        assert torch.equal((x * 2).cpu(), torch.full((3,), 2.0))
        assert (torch.ones(3).to(dev) + x).sum().item() == 6.0
