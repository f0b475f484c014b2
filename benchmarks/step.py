"""Throughput of one joint DUIIT training step: the plain path vs the fast path, side by side.

    .venv/bin/python benchmarks/step.py                      # CPU-sized defaults
    .venv/bin/python benchmarks/step.py --sizes 64 128 256 --batches 1 8 --steps 20   # GPU

plain = eager, fp32, no channels_last, non-fused Adam (train.fast=false, compile off);
fast  = the defaults (on CUDA: bf16 autocast, channels_last, fused Adam, torch.compile;
        on CPU the fast path is the plain path by design, so the ratio should be ~1).
images/s counts target images per second (each step also translates as many source images
both ways). FLOPs per step come from torch's FlopCounterMode on the plain path. Plain and
fast steps alternate in rounds; the median round counts. "step mem" (CUDA) is a step's
working memory above the resident weights and optimiser state.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from duiit.config import load_config
from duiit.data.cohort import Cohort
from duiit.methods.base import LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.training.runtime import Runtime, seed_everything

# Dense bf16 tensor-core peaks (FLOP/s) of GPUs we may be lent; used for "% of peak".
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def cohort(name: str, n: int, size: int) -> Cohort:
    g = torch.Generator().manual_seed(hash(name) % 2**31)
    images = (torch.rand(n, 1, size, size, generator=g) * 2 - 1).to(torch.float16)
    labels = torch.rand(n, generator=g) * 70 + 20
    return Cohort(
        name,
        images,
        labels,
        np.array([f"{name}{i}" for i in range(n)], dtype=object),
        pd.DataFrame({"path": ["synthetic"] * n}),
    )


def make_task(size: int, batch: int, fast: bool, args: argparse.Namespace) -> TranslationTask:
    cfg = load_config(
        overrides=[
            f"data.image_size={size}",
            f"model.ngf={args.ngf}",
            f"model.predictor={args.predictor}",
            f"train.batch_size={batch}",
            f"train.fast={str(fast).lower()}",
            f"train.compile={'auto' if fast else 'off'}",
            f"train.precision={'auto' if fast else 'fp32'}",
            f"train.device={args.device}",
        ]
    )
    seed_everything(0)
    target, source = cohort("CT", 64, size), cohort("MRI", 64, size)
    return TranslationTask(
        target,
        target,
        [source],
        cfg,
        Runtime.from_config(cfg.train),
        LabelCodec.fit(target),
        coupling="joint",
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(task: TranslationTask, steps: int, first: int) -> float:
    """Seconds per step over `steps` steps, numbered from `first`."""
    sync(task.rt.device)
    start = time.perf_counter()
    for i in range(steps):
        task.train_step(first + i)
    sync(task.rt.device)
    return (time.perf_counter() - start) / steps


def side_by_side(
    tasks: list[TranslationTask], steps: int, warmup: int, rounds: int
) -> tuple[list[float], list[float | None]]:
    """Median seconds per step of each task over `rounds` alternating rounds (so a busy
    machine slows both paths alike), and on CUDA each task's working memory: the peak
    allocated during its steps above what was allocated before them (activations,
    gradients, temporaries; not the weights and optimiser state both tasks keep resident)."""
    for task in tasks:
        measure(task, warmup, 0)  # compile, allocator and kernel caches happen here
    cuda = tasks[0].rt.device.type == "cuda"
    times: list[list[float]] = [[] for _ in tasks]
    peaks: list[float | None] = [0.0 if cuda else None for _ in tasks]
    for r in range(rounds):
        for k, task in enumerate(tasks):
            if cuda:
                torch.cuda.reset_peak_memory_stats(task.rt.device)
                before = torch.cuda.memory_allocated(task.rt.device)
            times[k].append(measure(task, steps, warmup + r * steps))
            if cuda:
                extra = (torch.cuda.max_memory_allocated(task.rt.device) - before) / 2**30
                peaks[k] = max(peaks[k] or 0.0, extra)
    return [float(np.median(t)) for t in times], peaks


def flops_per_step(task: TranslationTask) -> float:
    with FlopCounterMode(display=False) as counter:
        task.train_step(10_000)
    return float(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="more on GPU: compile happens here")
    p.add_argument("--rounds", type=int, default=3, help="alternating plain/fast rounds")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--predictor", default="resnet50")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    dev = Runtime.create(args.device).device
    name = (
        torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    )
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    print(f"device: {name}; torch {torch.__version__}; ngf {args.ngf}; predictor {args.predictor}")
    print("command: " + " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    head = (
        f"{'px':>4} {'batch':>5} {'plain img/s':>12} {'fast img/s':>11} {'ratio':>6} "
        f"{'GFLOP/step':>11} {'fast TFLOP/s':>12} {'% bf16 peak':>11} {'step mem plain':>14} "
        f"{'step mem fast':>13}"
    )
    print(head)
    for size in args.sizes:
        for batch in args.batches:
            plain_task = make_task(size, batch, False, args)
            flops = flops_per_step(plain_task)
            tasks = [plain_task, make_task(size, batch, True, args)]
            (plain, fast), (mem_plain, mem_fast) = side_by_side(
                tasks, args.steps, args.warmup, args.rounds
            )
            del tasks, plain_task
            achieved = flops / fast / 1e12
            pct = f"{100 * achieved * 1e12 / peak:.1f}" if peak else "n/a"
            mem = lambda m: f"{m:.2f}G" if m is not None else "n/a"  # noqa: E731
            print(
                f"{size:>4} {batch:>5} {batch / plain:>12.2f} {batch / fast:>11.2f} "
                f"{plain / fast:>6.2f} {flops / 1e9:>11.1f} {achieved:>12.3f} {pct:>11} "
                f"{mem(mem_plain):>14} {mem(mem_fast):>13}",
                flush=True,
            )


if __name__ == "__main__":
    main()
