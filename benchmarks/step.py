"""Throughput of one joint DUIIT training step: the plain path against the fast path (and
variants of it), side by side in one process.

    .venv/bin/python benchmarks/step.py                          # 64/128/256 px, CPU sizes
    .venv/bin/python benchmarks/step.py --sizes 128 --contenders plain fast fast+compile \
        fast+channels_last --profile fast                        # what else could be faster
    .venv/bin/python benchmarks/step.py --sizes 32 --batches 8 --preset cpu-demo --run
                                                                 # the demo's own sizes
    .venv/bin/python benchmarks/step.py --sizes 128 256 --steps 10 --warmup 3 --contenders \
        plain fast-compile fast+channels_last-compile fast fast+channels_last   # GPU

Contenders (each a fresh task on the same data, seeded alike): `plain` (eager fp32,
non-fused Adam: train.fast=false) or `fast` (the defaults: train.precision=auto, i.e. bf16
autocast on CUDA and on CPUs with AMX-BF16 or AVX512-BF16; fused Adam; on CUDA
torch.compile), followed by any of `+compile` / `-compile` (train.compile=on / off)
and `+channels_last` (train.channels_last=true), e.g. `fast+channels_last-compile`.
images/s counts target images per second (each step also translates as many source images
both ways). FLOPs per step come from torch's FlopCounterMode. Contenders alternate in rounds
and the median round counts, so a busy machine slows all of them alike. "step mem" (CUDA) is
a step's working memory above the resident weights and optimiser state. `--csv` also writes
the rows to a file, each as soon as it is measured.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from duiit.config import load_config
from duiit.data.cohort import Cohort
from duiit.methods.base import LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.training.runtime import Runtime, cpu_bf16_units, seed_everything

# Dense bf16 tensor-core peaks (FLOP/s) of GPUs we may be lent; used for "% of peak".
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
BASES = {"plain": ["train.fast=false", "train.compile=off", "train.precision=fp32"], "fast": []}
MODIFIERS = {
    "+compile": "train.compile=on",
    "-compile": "train.compile=off",
    "+channels_last": "train.channels_last=true",
}


def contender(name: str) -> str:
    """A contender name as argparse checks it: a base, then modifiers."""
    base, *mods = re.split(r"(?=[+-])", name)
    if base not in BASES or any(m not in MODIFIERS for m in mods):
        raise argparse.ArgumentTypeError(
            f"{name!r}: a contender is {' or '.join(BASES)} followed by any of "
            f"{', '.join(MODIFIERS)} (e.g. fast+channels_last-compile)"
        )
    return name


def overrides(name: str) -> list[str]:
    """The run settings of a contender."""
    base, *mods = re.split(r"(?=[+-])", name)
    return [*BASES[base], *(MODIFIERS[m] for m in mods)]


def cohort(name: str, n: int, size: int) -> Cohort:
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    images = (torch.rand(n, 1, size, size, generator=g) * 2 - 1).to(torch.float16)
    labels = torch.rand(n, generator=g) * 70 + 20
    return Cohort(
        name,
        images,
        labels,
        np.array([f"{name}{i}" for i in range(n)], dtype=object),
        pd.DataFrame({"path": ["synthetic"] * n}),
    )


def make_task(size: int, batch: int, name: str, args: argparse.Namespace) -> TranslationTask:
    cfg = load_config(
        overrides=[
            f"data.image_size={size}",
            f"train.batch_size={batch}",
            f"train.device={args.device}",
            *args.run,
            *overrides(name),
        ],
        preset=args.preset,
    )
    seed_everything(0)
    target, source = cohort("CT", 64, size), cohort("MRI", 64, size)
    rt = Runtime.from_config(cfg.train)
    return TranslationTask(
        target, target, [source], cfg, rt, LabelCodec.fit(target), coupling="joint"
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
    """Median seconds per step of each task over `rounds` alternating rounds, and on CUDA
    each task's working memory: the peak allocated during its steps above what was
    allocated before them (not the weights and optimiser state every task keeps)."""
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


def print_profile(task: TranslationTask, rows: int = 12) -> None:
    """Where one step's time goes, by operator: what to optimise next."""
    task.train_step(20_000)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        task.train_step(20_001)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"  profile of one step ({task.rt.precision_note}), self time by operator:")
    for e in events[:rows]:
        print(f"    {e.key:40s} {100 * e.self_cpu_time_total / total:5.1f} %  ({e.count} calls)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[4])
    p.add_argument("--steps", type=int, default=2, help="steps per contender per round")
    p.add_argument("--warmup", type=int, default=1, help="more on GPU: compile happens here")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    p.add_argument("--preset", help="start from a preset (e.g. cpu-demo) instead of defaults")
    p.add_argument(
        "--run",
        nargs="*",
        default=["model.ngf=64", "model.predictor=resnet18"],
        help="run overrides (default: model.ngf=64 model.predictor=resnet18)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument(
        "--contenders",
        nargs="+",
        type=contender,
        default=["plain", "fast"],
        help="plain or fast, then any of +compile -compile +channels_last; the first is "
        "the reference of the x column",
    )
    p.add_argument("--profile", type=contender, help="also profile this contender's step")
    p.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = Runtime.create(args.device).device
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = f"CPU x{torch.get_num_threads()} threads, native bf16: {cpu_bf16_units() or 'none'}"
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    fast_note = Runtime.create(args.device, "auto").precision_note
    base = load_config(overrides=args.run, preset=args.preset).model
    print(
        f"device: {name}; torch {torch.__version__}; ngf {base.ngf}; "
        f"predictor {base.predictor} x{base.width}"
    )
    print(f"fast path precision: {fast_note}")
    print("command: " + " ".join(["python", *sys.argv]))
    ratio = f"x {args.contenders[0]}"
    width, rw = max(len(c) for c in args.contenders), len(ratio) + 2
    print(
        f"{'px':>4} {'batch':>5}  {'contender':<{width}} {'img/s':>9} {ratio:>{rw}} "
        f"{'GFLOP/step':>11} {'TFLOP/s':>8} {'% bf16 peak':>11} {'step mem GiB':>12}"
    )
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            tasks = [make_task(size, batch, c, args) for c in args.contenders]
            flops = flops_per_step(tasks[0])
            secs, mems = side_by_side(tasks, args.steps, args.warmup, args.rounds)
            for c, sec, mem in zip(args.contenders, secs, mems, strict=True):
                row = {
                    "px": size,
                    "batch": batch,
                    "contender": c,
                    "img_s": batch / sec,
                    "x_first": secs[0] / sec,
                    "gflop_step": flops / 1e9,
                    "tflop_s": flops / sec / 1e12,
                    "pct_bf16_peak": 100 * flops / sec / peak if peak else None,
                    "step_mem_gib": mem,
                }
                rows.append(row)
                pct = f"{row['pct_bf16_peak']:.1f}" if peak else "n/a"
                memory = f"{mem:.2f}" if mem is not None else "n/a"
                print(
                    f"{size:>4} {batch:>5}  {c:<{width}} {row['img_s']:>9.2f} "
                    f"{row['x_first']:>{rw}.2f} {row['gflop_step']:>11.1f} "
                    f"{row['tflop_s']:>8.3f} {pct:>11} {memory:>12}",
                    flush=True,
                )
                if args.csv:
                    pd.DataFrame(rows).to_csv(args.csv, index=False)
            if args.profile in args.contenders:
                print_profile(tasks[args.contenders.index(args.profile)])
            del tasks


if __name__ == "__main__":
    main()
