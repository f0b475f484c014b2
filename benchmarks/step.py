"""Throughput of one joint DUIIT training step: contenders side by side in one process,
alternating in rounds (every other one in reverse order; the median round counts), so a
busy machine slows all of them alike.

    .venv/bin/python benchmarks/step.py                          # 64/128/256 px, CPU sizes
    .venv/bin/python benchmarks/step.py --sizes 128 --contenders plain fast fast+compile \
        fast+channels_last --profile fast                        # what else could be faster
    .venv/bin/python benchmarks/step.py --contenders fast cut fastcut  # the translators
    .venv/bin/python benchmarks/step.py --sizes 128 --contenders fast fast+two_d_calls
                                                                 # one discriminator call
    .venv/bin/python benchmarks/step.py --sizes 64 --contenders fast fast+share25 fast+share0 \
        --run model.ngf=16 model.ndf=16 predictor.network=cnn predictor.width=0.25
                                                                 # P's share of translations
    .venv/bin/python benchmarks/step.py --sizes 32 --batches 8 --preset cpu-demo --run
                                                                 # the demo's own sizes
    .venv/bin/python benchmarks/step.py --sizes 128 256 --steps 10 --warmup 3 --contenders \
        plain fast-compile fast+channels_last-compile fast fast+channels_last   # GPU

Contenders (each a fresh task on the same data, seeded alike): a base, `plain` (eager fp32,
non-fused Adam: train.fast=false), `fast` (the defaults: train.precision=auto, i.e. bf16
autocast on CUDA and on CPUs with AMX-BF16 or AVX512-BF16; fused Adam; on CUDA
torch.compile), `cut` or `fastcut` (fast with model.translator=cut / fastcut instead of
CycleGAN), followed by any of `+compile` / `-compile` (train.compile=on / off),
`+channels_last` (train.channels_last=true), `+two_d_calls` (each discriminator scores
real and fake images in two calls, as before issue 19; now one call on both) and
`+share0` / `+share25` (predictor.source_share 0 / 0.25 instead of 0.5: what P's share of
translations costs, the part beyond the translator's batch translated without gradient),
e.g. `fast+channels_last-compile`.
One row per contender: images/s counts target images per second (each step also translates
as many source images); "x <first>" is the first contender's step time divided by this
one's, in the same rounds (above 1: faster); the "D" columns say the same of the
discriminators' update alone. FLOPs per step come from torch's FlopCounterMode. "step mem"
(CUDA) is a step's working memory above the resident weights and optimiser state. `--csv`
also writes the rows to a file, each as soon as it is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from duiit.config import load_config
from duiit.data.cohort import Cohort
from duiit.methods import translators
from duiit.methods.base import LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.training.runtime import Runtime, cpu_bf16_units, seed_everything

# Dense bf16 tensor-core peaks (FLOP/s) of GPUs we may be lent; used for "% of peak".
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
BASES = {
    "plain": ["train.fast=false", "train.compile=off", "train.precision=fp32"],
    "fast": [],
    "cut": ["model.translator=cut"],
    "fastcut": ["model.translator=fastcut"],
}
MODIFIERS: dict[str, str | None] = {  # None: no setting, a change of the library's code
    "+compile": "train.compile=on",
    "-compile": "train.compile=off",
    "+channels_last": "train.channels_last=true",
    "+two_d_calls": None,  # see as_contender
    "+share0": "predictor.source_share=0",  # P's batch without translations
    "+share25": "predictor.source_share=0.25",  # (the default 0.5: as many as real ones)
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
    return [*BASES[base], *(s for m in mods if (s := MODIFIERS[m]) is not None)]


def two_discriminator_calls(
    d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """The discriminator loss before issue 19: real and fake images in two calls."""
    lsgan = translators.lsgan
    return 0.5 * (lsgan(d(real), True) + lsgan(d(fake), False))


@contextlib.contextmanager
def as_contender(name: str) -> Iterator[None]:
    """What a contender changes in the library's code while its steps run."""
    if "+two_d_calls" in re.split(r"(?=[+-])", name):
        with mock.patch.object(translators, "discriminator_loss", two_discriminator_calls):
            yield
    else:
        yield


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


def measure(name: str, task: TranslationTask, steps: int, first: int) -> tuple[float, float]:
    """Seconds per step over `steps` steps, numbered from `first`, and of them the seconds
    of the discriminators' update (the part issue 19's single call changes)."""
    update, spent = task.update_discriminators, [0.0]

    def timed(*args: Any) -> dict[str, torch.Tensor]:
        sync(task.rt.device)
        start = time.perf_counter()
        out = update(*args)
        sync(task.rt.device)
        spent[0] += time.perf_counter() - start
        return out

    sync(task.rt.device)
    start = time.perf_counter()
    with as_contender(name), mock.patch.object(task, "update_discriminators", timed):
        for i in range(steps):
            task.train_step(first + i)
    sync(task.rt.device)
    return (time.perf_counter() - start) / steps, spent[0] / steps


def side_by_side(
    tasks: dict[str, TranslationTask], steps: int, warmup: int, rounds: int
) -> tuple[list[float], list[float], list[float | None]]:
    """Median seconds per step of each task over `rounds` rounds (ABC, CBA, ...), the median
    seconds of its discriminators' update, and on CUDA each task's working memory: the
    peak allocated during its steps above what was allocated before them (not the weights
    and optimiser state every task keeps)."""
    for name, task in tasks.items():
        if warmup:
            measure(name, task, warmup, 0)  # compile, allocator and kernel caches happen here
    cuda = next(iter(tasks.values())).rt.device.type == "cuda"
    times: list[list[tuple[float, float]]] = [[] for _ in tasks]
    peaks: list[float | None] = [0.0 if cuda else None for _ in tasks]
    order = list(enumerate(tasks.items()))
    for r in range(rounds):  # every other round in reverse, so no one always goes first
        for k, (name, task) in order if r % 2 == 0 else order[::-1]:
            if cuda:
                torch.cuda.reset_peak_memory_stats(task.rt.device)
                before = torch.cuda.memory_allocated(task.rt.device)
            times[k].append(measure(name, task, steps, warmup + r * steps))
            if cuda:
                extra = (torch.cuda.max_memory_allocated(task.rt.device) - before) / 2**30
                peaks[k] = max(peaks[k] or 0.0, extra)
    steps_s = [float(np.median([t for t, _ in ts])) for ts in times]
    d_s = [float(np.median([d for _, d in ts])) for ts in times]
    return steps_s, d_s, peaks


def flops_per_step(name: str, task: TranslationTask) -> float:
    with FlopCounterMode(display=False) as counter, as_contender(name):
        task.train_step(10_000)
    return float(counter.get_total_flops())


def print_profile(name: str, task: TranslationTask, rows: int = 12) -> None:
    """Where one step's time goes, by operator: what to optimise next."""
    with as_contender(name):
        task.train_step(20_000)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            task.train_step(20_001)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"  profile of one {name} step ({task.rt.precision_note}), self time by operator:")
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
        default=["model.ngf=64", "predictor.network=resnet18"],
        help="run overrides (default: model.ngf=64 predictor.network=resnet18)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument(
        "--contenders",
        nargs="+",
        type=contender,
        default=["plain", "fast"],
        help="plain, fast, cut or fastcut, then any of +compile -compile +channels_last "
        "+two_d_calls; the first is the reference of the x columns",
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
    base = load_config(overrides=args.run, preset=args.preset)
    print(
        f"device: {name}; torch {torch.__version__}; ngf {base.model.ngf}; "
        f"predictor {base.predictor.network} x{base.predictor.width}"
    )
    print(f"fast path precision: {fast_note}")
    print("command: " + shlex.join(["python", *sys.argv]))
    ratio = f"x {args.contenders[0]}"
    width, rw = max(len(c) for c in args.contenders), len(ratio) + 2
    print(
        f"{'px':>4} {'batch':>5}  {'contender':<{width}} {'img/s':>9} {'s/step':>8} "
        f"{ratio:>{rw}} {'D s/step':>8} {'D ' + ratio:>{rw + 2}} {'GFLOP/step':>11} "
        f"{'TFLOP/s':>8} {'% bf16 peak':>11} {'step mem GiB':>12}"
    )
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            tasks = {c: make_task(size, batch, c, args) for c in args.contenders}
            flops = [flops_per_step(c, t) for c, t in tasks.items()]
            secs, d_secs, mems = side_by_side(tasks, args.steps, args.warmup, args.rounds)
            for c, f, sec, d, mem in zip(tasks, flops, secs, d_secs, mems, strict=True):
                row = {
                    "px": size,
                    "batch": batch,
                    "contender": c,
                    "img_s": batch / sec,
                    "s_step": sec,
                    "x_first": secs[0] / sec,
                    "d_s_step": d,
                    "d_x_first": d_secs[0] / d,
                    "gflop_step": f / 1e9,
                    "tflop_s": f / sec / 1e12,
                    "pct_bf16_peak": 100 * f / sec / peak if peak else None,
                    "step_mem_gib": mem,
                }
                rows.append(row)
                pct = f"{row['pct_bf16_peak']:.1f}" if peak else "n/a"
                memory = f"{mem:.2f}" if mem is not None else "n/a"
                print(
                    f"{size:>4} {batch:>5}  {c:<{width}} {row['img_s']:>9.2f} {sec:>8.3f} "
                    f"{row['x_first']:>{rw}.2f} {d:>8.3f} {row['d_x_first']:>{rw + 2}.2f} "
                    f"{row['gflop_step']:>11.1f} {row['tflop_s']:>8.3f} {pct:>11} {memory:>12}",
                    flush=True,
                )
                if args.csv:
                    pd.DataFrame(rows).to_csv(args.csv, index=False)
            if args.profile in tasks:
                print_profile(args.profile, tasks[args.profile])
            del tasks


if __name__ == "__main__":
    main()
