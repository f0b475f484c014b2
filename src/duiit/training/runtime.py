"""Where and how tensors compute: device, precision, seeding. Chosen once per run."""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    fused Adam, plus on CUDA `torch.compile` of every network (`train.compile`). On CUDA
    cuDNN times its convolution kernels once (fixed image sizes). Channels-last tensors are
    opt-in (`train.channels_last`): measured slower on CPU, not yet measured on a GPU
    (benchmarks/README.md). `precision_note` says what was chosen and why.

    Device conventions (docs/architecture.md): cohorts stay on the CPU as float16; `batch`
    moves images to the device, dtype and memory format the networks take; collectives are
    given tensors on `device`."""

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
        cls,
        device: str = "auto",
        precision: str = "auto",
        fast: bool = True,
        compile: str = "auto",
        channels_last: bool = False,
    ) -> Runtime:
        rank, world = init_distributed()
        dev = resolve_device(device, world)
        cuda = dev.type == "cuda"
        if cuda:
            torch.cuda.set_device(dev)  # what "current device" means to kernels, caches, NCCL
            torch.backends.cudnn.benchmark = True  # image sizes are fixed: time conv kernels once
        bf16, note = choose_precision(precision, fast, dev)
        use_compile = compile == "on" or (compile == "auto" and fast and cuda)
        if use_compile and not compile_supported():
            warnings.warn("torch.compile is not supported here; running eager", stacklevel=2)
            use_compile = False
        if use_compile:
            from torch._dynamo import config as dynamo_config

            # A network whose graph fails to compile (no C++ compiler, no Triton, an inductor
            # error) then runs eager, with dynamo's warning, instead of ending the run.
            dynamo_config.suppress_errors = True
        return cls(
            dev,
            bf16,
            channels_last=channels_last,
            fused=fast,
            compile=use_compile,
            rank=rank,
            world=world,
            precision_note=note,
        )

    @classmethod
    def from_config(cls, train: Any) -> Runtime:
        """The runtime a run's `train` section asks for."""
        return cls.create(
            train.device, train.precision, train.fast, train.compile, train.channels_last
        )

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
        """Images as the networks take them: on the device (moved as float16, half the
        bytes), float32, in the run's memory format."""
        x = images.to(self.device, non_blocking=True).float()
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def augment(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        sizes: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """`fn`, a random per-image augmentation drawing from the global random state (kornia),
        applied as one process with N times the batch applies it. Every process holds the
        same random state, so each drawing for its own images alone would give the N ranks
        the same flips and shifts. Instead each draws for the global batch (each of x's
        parts, `sizes`, as all ranks' slices in rank order, as one process concatenates
        them) and keeps its own images' results: `fn` runs on N times the images."""
        if self.world == 1:
            return fn(x)
        sizes = list(sizes or [x.shape[0]])
        pieces, keep, at = [], [], 0
        for n, part in zip(sizes, x.split(sizes), strict=True):
            other = torch.zeros_like(part)  # another rank's images: drawn for, not kept
            pieces += [other] * self.rank + [part] + [other] * (self.world - self.rank - 1)
            start = at + self.rank * n
            keep.append(torch.arange(start, start + n, device=x.device))
            at += self.world * n
        return fn(torch.cat(pieces))[torch.cat(keep)]

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

    def broadcast_buffers(self, modules: Iterable[torch.nn.Module]) -> None:
        """Give every process rank 0's buffers (BatchNorm's running statistics, or any other
        a module keeps), as DDP does before each forward (`broadcast_buffers`). Gradients are
        averaged, so parameters stay equal, but each process updates its running statistics
        from its own slice of the batch: without this, processes would validate different
        networks, and the one saved (rank 0's) would not be the one all validated. Rank 0's
        rather than the average: exact for any buffer, counters and constants included. One
        broadcast of the flattened buffers per dtype."""
        if self.world == 1:
            return
        buffers = [b for m in modules for b in m.buffers()]
        for dtype in dict.fromkeys(b.dtype for b in buffers):
            group = [b for b in buffers if b.dtype == dtype]
            flat = torch.cat([b.detach().reshape(-1) for b in group])
            dist.broadcast(flat, src=0)
            for b, value in zip(group, flat.split([b.numel() for b in group]), strict=True):
                b.copy_(value.view_as(b))

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj` in rank order, on rank 0 (the others get []): what rank 0
        saves of each process's own state. Tensors travel as CPU tensors, since a pickled
        GPU tensor would be restored onto its sender's GPU index."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world if self.is_main else []
        dist.gather_object(_to_cpu(obj), out if self.is_main else None, dst=0)
        return out

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


def _to_cpu(obj: Any) -> Any:
    """`obj` with every tensor in its dicts, lists and tuples moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def resolve_device(name: str, world: int = 1) -> torch.device:
    """The device `train.device` names, with its index. Under torchrun (world > 1) each
    process takes the GPU of its LOCAL_RANK; an index naming another GPU is refused, since
    it would put several processes on one GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DuiitError(
            f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise DuiitError(
            "train.device asks for CUDA but no GPU is visible; use train.device=cpu or auto"
        )
    if world > 1:
        local = local_rank()
        if dev.index not in (None, local):
            raise DuiitError(
                f"train.device={name} under torchrun: each process takes the GPU of its "
                f"LOCAL_RANK (this one {local}); use train.device=cuda or auto"
            )
        return torch.device("cuda", local)
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise DuiitError(
            f"train.device={name}, but {torch.cuda.device_count()} GPU(s) are visible "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    return torch.device("cuda", index)


def local_rank() -> int:
    """This process's index on its machine under torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun (WORLD_SIZE > 1) joins the process group once:
    with GPUs visible, NCCL for CUDA tensors and gloo for CPU ones, bound to this process's
    GPU (LOCAL_RANK), made current first so nothing lands on GPU 0 by default; gloo
    otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        # torch._dynamo, which the first optimiser imports, keeps a process group that exists
        # when it is imported alive past destroy_process_group; its gloo threads then run into
        # interpreter shutdown and can abort the process there. Imported first, it keeps none.
        import torch._dynamo  # noqa: F401

        if torch.cuda.is_available():
            gpu, n = torch.device("cuda", local_rank()), torch.cuda.device_count()
            if gpu.index >= n:
                raise DuiitError(
                    f"torchrun process {gpu.index} of this machine, but {n} GPU(s) are visible: "
                    "start at most one process per GPU (--nproc-per-node), or hide the GPUs "
                    "(CUDA_VISIBLE_DEVICES=) to train on the CPU"
                )
            torch.cuda.set_device(gpu)
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=gpu)
        else:
            dist.init_process_group("gloo")
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
