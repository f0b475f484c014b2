"""What the predictor recipe costs: training time per run and peak memory at the sizes users
run, on ResNet-10 at half width and on the CT-ICH study's plain CNN, beside the setting
before the recipe (BatchNorm, batch 4, Adam, MSE, no augmentation, 3000 steps), measured
side by side.

Each contender trains `target_only` for `--steps` steps on a cohort shaped like CT-ICH's
training part (1930 images, 64 px; the content does not change the cost) in a fresh process
(so its peak resident memory is its own); contenders alternate over `--rounds` rounds and
the medians are reported. The time of a whole run is the measured time per step times the
run's steps (the recipe: 12 passes over 1930 images at batch 32 = 732 steps), plus the
validation passes, measured too.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/predictor.py --rounds 3
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import shlex
import statistics
import sys
import time

import numpy as np
import pandas as pd
import torch

from duiit.config import load_config
from duiit.data.cohort import Cohort
from duiit.methods.base import Batches, LabelCodec
from duiit.methods.predictor_task import Group, PredictorTask
from duiit.methods.recipe import predictor_steps
from duiit.training.runtime import Runtime

CONTENDERS = {
    "recipe": [],
    # the CT-ICH study's network (configs/real-ct-ich-learning.yaml)
    "cnn": ["predictor.network=cnn", "predictor.width=0.25", "predictor.augment=[flip, shift]"],
    "before": [
        "predictor.norm=batch",
        "predictor.batch_size=4",
        "predictor.optimizer=adam",
        "predictor.lr=0.001",
        "predictor.weight_decay=0",
        "predictor.schedule=constant",
        "predictor.loss=mse",
        "predictor.augment=[]",
        "predictor.steps=3000",
    ],
}
BASE = ["predictor.network=resnet10", "predictor.width=0.5", "train.device=cpu"]


def cohort(n: int, size: int, seed: int = 0) -> Cohort:
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, size, size, generator=g) * 2 - 1).to(torch.float16)
    ids = np.array([f"p{i // 30}" for i in range(n)], dtype=object)
    meta = pd.DataFrame({"manifest": ["x"] * n, "path": ["x"] * n, "slice": [0] * n})
    return Cohort("CT", images, torch.rand(n, generator=g) * 70, ids, meta)


def measure(name: str, size: int, n_train: int, n_val: int, steps: int, out: mp.Queue) -> None:
    """One contender in this (fresh) process: seconds per step, one validation pass, and
    the process's peak resident memory."""
    cfg = load_config(overrides=[*BASE, f"data.image_size={size}", *CONTENDERS[name]])
    rt = Runtime.from_config(cfg.train)
    train, val = cohort(n_train, size), cohort(n_val, size, seed=1)
    codec = LabelCodec.fit(train)
    task = PredictorTask(
        [Group(Batches(train, codec, rt))], Batches(val, codec, rt), cfg, rt, codec
    )
    task.train_step(0)  # warm-up: allocator and kernel caches
    start = time.perf_counter()
    for step in range(1, steps + 1):
        task.train_step(step)
    per_step = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    task.validate()
    val_s = time.perf_counter() - start
    run_steps = predictor_steps(cfg.predictor, n_train)
    evals = cfg.predictor.epochs if cfg.predictor.steps == 0 else run_steps // cfg.train.eval_every
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    out.put((name, per_step, val_s, run_steps, evals, peak))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-images", type=int, default=1930)
    p.add_argument("--val-images", type=int, default=275)
    p.add_argument("--steps", type=int, default=40, help="timed steps per contender and round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"torch threads: {torch.get_num_threads()}; {args.size} px")
    ctx = mp.get_context("spawn")
    rows: dict[str, list[tuple]] = {name: [] for name in CONTENDERS}
    for r in range(args.rounds):
        names = list(CONTENDERS) if r % 2 == 0 else list(reversed(CONTENDERS))
        for name in names:
            q: mp.Queue = ctx.Queue()
            proc = ctx.Process(
                target=measure,
                args=(name, args.size, args.train_images, args.val_images, args.steps, q),
            )
            proc.start()
            rows[name].append(q.get()[1:])
            proc.join()
    print(
        f"{'contender':<10} {'s/step':>8} {'steps':>6} {'val s':>7} {'run min':>8} {'peak MiB':>9}"
    )
    runs = {}
    for name, got in rows.items():
        per_step = statistics.median(g[0] for g in got)
        val_s = statistics.median(g[1] for g in got)
        steps, evals = got[0][2], got[0][3]
        peak = max(g[4] for g in got)
        runs[name] = (per_step * steps + val_s * evals) / 60
        print(f"{name:<10} {per_step:8.3f} {steps:6d} {val_s:7.2f} {runs[name]:8.1f} {peak:9.0f}")
    print(f"recipe / before, time per run: {runs['recipe'] / runs['before']:.2f}")
    print(f"cnn / recipe, time per run: {runs['cnn'] / runs['recipe']:.2f}")
    if not math.isfinite(runs["recipe"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
