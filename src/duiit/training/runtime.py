"""Where and how tensors compute: device, precision, seeding. Chosen once per run."""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from duiit.errors import DuiitError

M = TypeVar("M", bound=torch.nn.Module)


def cpu_bf16_units() -> str | None:
    """The CPU's native bf16 instructions ("AMX-BF16", "AVX512-BF16"), or None.

    Asked of torch (what its kernels will use), not read off the CPU's model name. Without
    them oneDNN emulates bf16 in fp32 registers and autocast only adds casts.
    """
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX-BF16"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


def choose_precision(precision: str, fast: bool, device: torch.device) -> tuple[bool, str]:
    """(bf16 autocast?, why): `train.precision=auto` takes bf16 where it is fast (CUDA, or a
    CPU with native bf16 units) and fp32 elsewhere; fp32 and bf16 are taken as asked."""
    if precision != "auto":
        return precision == "bf16", f"{precision} (train.precision={precision})"
    if not fast:
        return False, "fp32 (train.fast=false)"
    if device.type == "cuda":
        return True, "bf16 autocast (CUDA fast path)"
    units = cpu_bf16_units()
    if units is not None:
        return True, (
            f"bf16 autocast (this CPU has {units}; train.precision=fp32 for bit-exact fp32 work)"
        )
    return False, "fp32 (this CPU has no native bf16 units: no AMX-BF16 or AVX512-BF16)"


@dataclass
class Runtime:
    """Where and how a run computes. The fast path (on by default, `train.fast`) uses bf16
    autocast where the hardware has native bf16 (CUDA; CPUs with AMX or AVX512-BF16) and
    fused Adam, plus on CUDA channels_last and `torch.compile` of every network where
    supported (`train.compile`; on CPU they were measured slower or no faster, see
    benchmarks/README.md). `precision_note` says what was chosen and why."""

    device: torch.device
    bf16: bool
    channels_last: bool = False
    fused: bool = False
    compile: bool = False
    rank: int = 0
    world: int = 1
    precision_note: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def create(
        cls, device: str = "auto", precision: str = "auto", fast: bool = True, compile: str = "auto"
    ) -> Runtime:
        rank, world = init_distributed()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if world > 1 and device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"  # one GPU per process
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
        cuda = dev.type == "cuda"
        bf16, note = choose_precision(precision, fast, dev)
        use_compile = compile == "on" or (compile == "auto" and fast and cuda)
        if use_compile and not compile_supported():
            warnings.warn("torch.compile is not supported here; running eager", stacklevel=2)
            use_compile = False
        return cls(
            dev,
            bf16,
            channels_last=fast and cuda,
            fused=fast,
            compile=use_compile,
            rank=rank,
            world=world,
            precision_note=note,
        )

    @classmethod
    def from_config(cls, train: Any) -> Runtime:
        """The runtime a run's `train` section asks for."""
        return cls.create(train.device, train.precision, train.fast, train.compile)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare(self, module: M, parts: Iterable[torch.nn.Module] | None = None) -> M:
        """Move a network to the device in the run's memory format; compile it (or the given
        `parts`, the networks actually called) if asked. `nn.Module.compile` compiles in
        place, so state_dict keys, and so checkpoints, are the same either way."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.compile:
            for part in parts if parts is not None else [module]:
                part.compile()
        return module

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """Device images as the networks want them (float32, memory format)."""
        x = images.float()
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def adam(
        self, params: Iterable[torch.nn.Parameter], lr: float, beta1: float = 0.9
    ) -> torch.optim.Adam:
        """Adam; on the fast path the fused kernel (one pass over all parameters: on CUDA one
        launch, on CPU about 3x faster than foreach for these networks), else foreach."""
        return torch.optim.Adam(
            params, lr=lr, betas=(beta1, 0.999), fused=True if self.fused else None
        )

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients over processes (one all-reduce of the flattened gradients, what
        DDP does in buckets), then step. Per process it is just `optimizer.step()`. The
        averages are copied back into each gradient, so a gradient keeps its parameter's
        memory format: fused Adam refuses (CUDA) or silently misreads (CPU) a contiguous
        gradient of a channels-last weight."""
        if self.world > 1:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world
            means = flat.split([g.numel() for g in grads])
            for p, g, mean in zip(params, grads, means, strict=True):
                p.grad = g.copy_(mean.view_as(g))
        optimizer.step()

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """Loss values averaged over processes, so every rank logs and checks the same. The
        tensor lies on the run's device: NCCL reduces GPU tensors only."""
        if self.world == 1 or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64).to(self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist(), strict=True))

    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator for sampling decisions: its state is saved with checkpoints."""
        return torch.Generator().manual_seed(seed)


def init_distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun (WORLD_SIZE > 1) joins the process group once:
    NCCL when GPUs are visible, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        # torch._dynamo, which the first optimiser imports, keeps a process group that exists
        # when it is imported alive past destroy_process_group; its gloo threads then run into
        # interpreter shutdown and can abort the process there. Imported first, it keeps none.
        import torch._dynamo  # noqa: F401

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@contextlib.contextmanager
def distributed_job() -> Iterator[tuple[int, int]]:
    """Join the process group (under torchrun) for one job and leave it at the end, on error
    too. A gloo or NCCL group still alive when the interpreter exits can abort the process
    ("terminate called without an active exception"). On success every rank first waits for
    the others, so none tears its connections down while another still uses them."""
    owned = not dist.is_initialized()
    rank, world = init_distributed()
    try:
        yield rank, world
        if owned:
            barrier()
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Rank 0, or not distributed: the one process that writes files."""
    return init_distributed()[0] == 0


def barrier() -> None:
    """Wait for every process (under torchrun); nothing otherwise."""
    if dist.is_initialized():
        dist.barrier()


def compile_supported() -> bool:
    """Whether torch.compile can run here (it needs a working dynamo and a C++ compiler)."""
    try:
        import torch._dynamo

        return bool(torch._dynamo.is_dynamo_supported())
    except Exception:
        return False


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
