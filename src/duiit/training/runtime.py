"""Where and how tensors compute: device, precision, seeding. Chosen once per run."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from duiit.errors import DuiitError


@dataclass
class Runtime:
    """Device and precision of a run. bf16 autocast is used on CUDA only: CPUs gain little
    and lose reproducibility against the fp32 reference."""

    device: torch.device
    bf16: bool

    @classmethod
    def create(cls, device: str = "auto", precision: str = "auto") -> Runtime:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise DuiitError(
                f"train.device={device!r} is not a device; use auto, cpu, cuda or cuda:N"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DuiitError(
                "train.device asks for CUDA but no GPU is visible; use train.device=cpu or auto"
            )
        bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
        return cls(dev, bf16)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator for sampling decisions: its state is saved with checkpoints."""
        return torch.Generator().manual_seed(seed)


def seed_everything(seed: int) -> None:
    """Seed every global RNG a run touches, so one seed gives one set of numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Evaluate without gradients, restoring each module's train/eval mode afterwards."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, w in zip(modules, was, strict=True):
            m.train(w)
