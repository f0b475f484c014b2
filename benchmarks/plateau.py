"""How many steps does translation need? One long translating run of an experiment's first
split, its validation histogram distance to the real target over the steps, and the step
where that curve flattens: the evidence behind an experiment's `train.steps`.

    .venv/bin/python benchmarks/plateau.py configs/phantom-claims.yaml --out /tmp/plateau \
        --methods cyclegan duiit --sources MRI --steps 2000
    .venv/bin/python benchmarks/plateau.py configs/phantom-cut.yaml --out /tmp/plateau-cut \
        --methods duiit "duiit[translator=cut]" "duiit[translator=fastcut]" \
        --sources MRI --steps 1000 --every 50               # one curve per translator

The distance is the 1-D Wasserstein distance between the pixel intensities of translated
validation-watch images and real target validation images (`val_hist_dist_<source>` in
metrics.csv), logged every `--every` steps. "Flat from" is the first logged step after which
the curve, smoothed over 3 points, stays within `--tolerance` of its final value relative to
its first. The figure goes to OUT/plateau.png.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from duiit.config import with_overrides  # noqa: E402
from duiit.data import load_cohorts  # noqa: E402
from duiit.evaluation.curves import flat_from  # noqa: E402
from duiit.evaluation.runner import load_experiment  # noqa: E402
from duiit.methods.base import method_folder  # noqa: E402
from duiit.runs import execute  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("experiment", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=["cyclegan", "duiit"])
    p.add_argument("--sources", nargs="+", help="source modalities to use (default: all)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=100, help="validation interval (steps)")
    p.add_argument("--tolerance", type=float, default=0.1)
    args = p.parse_args()
    exp, cfg = load_experiment(args.experiment)
    cfg = with_overrides(
        cfg,
        [f"train.steps={args.steps}", f"train.eval_every={args.every}"],
        "plateau settings",
    )
    target, sources = load_cohorts(exp.target, exp.sources, cfg.data, quiet=True)
    sources = [c for c in sources if args.sources is None or c.modality in args.sources]
    print("command: " + shlex.join(["python", *sys.argv]))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method in args.methods:
        run_dir = args.out / method_folder(method)
        start = time.perf_counter()
        result = execute(run_dir, method, cfg, target, sources, split_seed=0, quiet=True)
        minutes = (time.perf_counter() - start) / 60
        m = pd.read_csv(run_dir / "metrics.csv")
        for name in sorted(n for n in m["name"].unique() if n.startswith("val_hist_dist_")):
            part = m[m["name"] == name].sort_values("step")
            steps, values = part["step"].to_numpy(), part["value"].to_numpy()
            flat = flat_from(steps, values, args.tolerance)
            source = name.removeprefix("val_hist_dist_")
            print(
                f"{method:28s} {source}: distance {values[0]:.3f} -> {values[-1]:.3f}, flat "
                f"(within {args.tolerance:.0%}) from step {flat}; test mse "
                f"{result['metrics'].get('mse', float('nan')):.4g}; {minutes:.1f} min"
            )
            ax.plot(steps, values, marker=".", label=f"{method} {source}")
            ax.axvline(flat, ls=":", lw=1, color=ax.lines[-1].get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("histogram distance to real target")
    ax.set_title(f"{args.experiment.name}: translation over training (split 0)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "plateau.png", dpi=110)
    print(f"figure -> {args.out / 'plateau.png'}")


if __name__ == "__main__":
    main()
