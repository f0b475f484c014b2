"""Wall time of the demo grid, and an estimate of the full paper protocol from measured runs.

    .venv/bin/python benchmarks/protocol.py --out /tmp/protocol          # CPU: ~20 min
    .venv/bin/python benchmarks/protocol.py --out /tmp/protocol --skip-demo \
        --size 128 --run train.batch_size=8 train.epochs=20             # the estimate alone

1. The demo grid: exactly what `duiit demo` runs (phantom cohort, 4 settings, 5 methods,
   3 splits, preset cpu-demo), timed end to end with `--workers` processes.
2. The full protocol: every method of `duiit methods` over every setting and `--splits`
   splits, with `--preset` at `--size` px plus `--run` overrides. Each distinct
   (setting, method) run is measured twice on this device, with every training stage cut
   to k1 and k2 steps (`--probe-steps`); the per-run time at the full length N is
   t(k1) + (N - k1) (t(k2) - t(k1)) / (k2 - k1), so set-up, compile and validation at the
   end are counted once and the per-step cost is measured, not assumed. N is the preset's
   epochs over the setting's largest cohort (source or target) at its batch size, for every
   stage: predictor-only stages on the target set take fewer steps, so the figure is an
   upper bound. Runs are summed as if one device runs them one after another.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from duiit.config import Config, load_config
from duiit.data import load_cohorts
from duiit.data.splits import image_goals
from duiit.demo import DEMO_EXPERIMENT, prepare_demo
from duiit.evaluation.experiment import ALL_METHODS, ExperimentConfig
from duiit.evaluation.grid import Cell, plan
from duiit.evaluation.runner import run_experiment as run_grid
from duiit.methods.base import resolve_steps
from duiit.runs import execute
from duiit.training.runtime import Runtime


def demo_grid(out: Path, workers: int) -> pd.DataFrame:
    """Run the demo's grid afresh in `out` and print its wall time and per-method run times."""
    start = time.perf_counter()
    config = prepare_demo(out, force=True, quiet=True)
    results = run_grid(config, out / "experiment", quiet=True, workers=workers)
    wall = time.perf_counter() - start
    steps = DEMO_EXPERIMENT["run"]["train"]["steps"]
    print(f"\n[1] demo grid: {len(results)} runs, {workers} worker(s), {steps} steps per stage")
    print(f"    wall time (synthesis + all runs + quality): {wall / 60:.1f} min")
    print(f"    sum of fit times: {results['fit_seconds'].sum() / 60:.1f} min")
    table = results.groupby("method")["fit_seconds"].agg(["count", "mean", "std"])
    print(table.round(1).to_string())
    return results


def probe_times(
    cfg: Config, grid: list[Cell], target, sources, k: int, scratch: Path
) -> dict[tuple[str, str], float]:
    """fit seconds of every distinct (setting, method) with each stage cut to k steps."""
    times = {}
    for cell in grid:
        if cell.split != 0:
            continue
        run_cfg = cfg.model_copy(deep=True)
        run_cfg.train.steps = k
        run_cfg.train.eval_every = k  # validate once, at the end, as a full run does rarely
        run_dir = scratch / f"k{k}" / cell.setting / cell.method
        result = execute(
            run_dir, cell.method, run_cfg, target, cell.pick(sources), split_seed=0, quiet=True
        )
        key = cell.setting, cell.method
        times[key] = result["fit_seconds"]
        print(f"    {cell.setting:18s} {cell.method:15s} {k:>3} steps/stage: {times[key]:7.1f}s")
    return times


def estimate(args: argparse.Namespace, cohort_dir: Path, scratch: Path) -> None:
    cfg = load_config(None, [f"data.image_size={args.size}", *args.run], args.preset)
    target, sources = load_cohorts(
        cohort_dir / "ct.csv", [cohort_dir / "mri.csv", cohort_dir / "pet.csv"], cfg.data, True
    )
    exp = ExperimentConfig(
        target=cohort_dir / "ct.csv",
        sources=[cohort_dir / "mri.csv", cohort_dir / "pet.csv"],
        methods=ALL_METHODS,
        splits=args.splits,
    )
    grid = plan(exp, target, sources)
    rt = Runtime.from_config(cfg.train)
    k1, k2 = args.probe_steps
    t = cfg.train
    print(
        f"\n[2] full protocol estimate on {rt.device}: {len(grid)} runs "
        f"({len(grid) // args.splits} per split x {args.splits} splits), preset "
        f"{args.preset}, {args.size} px, batch {t.batch_size}, "
        f"{'steps ' + str(t.steps) if t.steps else f'{t.epochs} epochs'}, "
        f"predictor {cfg.predictor.network}, ngf {cfg.model.ngf}"
    )
    first_cell = grid[0]  # warm-up: the first run in a process pays for caches
    warm = cfg.model_copy(deep=True)
    warm.train.steps = k1
    chosen = first_cell.pick(sources)
    execute(scratch / "warmup", first_cell.method, warm, target, chosen, split_seed=0, quiet=True)
    first, second = (probe_times(cfg, grid, target, sources, k, scratch) for k in (k1, k2))
    n_train = round(image_goals(cfg.data.split, len(target), target.modality)[0])
    rows = []
    for (setting, method), t1 in first.items():
        cell = next(c for c in grid if c.setting == setting and c.method == method)
        chosen = cell.pick(sources)
        n = resolve_steps(cfg, max([n_train, *(len(c) for c in chosen)]))
        per_step = max(second[setting, method] - t1, 0.0) / (k2 - k1)
        rows.append(
            {
                "setting": setting,
                "method": method,
                "steps_per_stage": n,
                "s_per_step": per_step,
                "run_s": t1 + (n - k1) * per_step,
            }
        )
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    total = table["run_s"].sum() * args.splits
    print(
        f"    estimate: {total / 3600:.2f} device-hours for the {len(grid)} runs on "
        f"{describe(rt.device)} (one device, runs in sequence)"
    )


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU with {torch.get_num_threads()} threads"


def timed(label: str, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    print(f"    ({label}: {time.perf_counter() - start:.0f}s of benchmarking)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="scratch folder (replaced)")
    p.add_argument("--workers", type=int, default=2, help="demo grid processes (as `make demo`)")
    p.add_argument("--skip-demo", action="store_true", help="only the full-protocol estimate")
    p.add_argument("--preset", default="paper")
    p.add_argument("--size", type=int, default=128, help="image size of the estimate")
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--probe-steps", type=int, nargs=2, default=[1, 3], metavar=("K1", "K2"))
    p.add_argument("--run", nargs="*", default=[], help="run overrides, e.g. train.batch_size=8")
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"torch {torch.__version__}; {describe(Runtime.create().device)}")
    if args.skip_demo:
        from duiit.data.phantom import PhantomSpec, synthesise

        synthesise(args.out / "cohort", PhantomSpec(size=32, slices=4), force=True, quiet=True)
        cohort = args.out / "cohort"
    else:
        timed("demo", lambda: demo_grid(args.out, args.workers))
        cohort = args.out / "cohort"
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        timed("estimate", lambda: estimate(args, cohort, Path(scratch)))


if __name__ == "__main__":
    main()
