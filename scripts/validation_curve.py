"""Does a predictor learn, and when does it stop? Validation curves of one method over the
splits of one or more experiment folders (e.g. the same target-only experiment at 64 and
128 px): validation MAE in label units (years) per step, mean ± sd over splits, the step
where the mean validation loss is lowest, and the step from which it is flat.

    .venv/bin/python scripts/validation_curve.py runs/ct-ich-learning-64 \
        runs/ct-ich-learning-128 --out docs/figures/real-ct-ich-learning.png

"Flat from" is the first evaluated step after which the mean validation loss, smoothed over
3 points, stays within `--tolerance` of its final value relative to its whole fall
(`duiit.evaluation.curves.flat_from`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from duiit.evaluation.curves import flat_from  # noqa: E402
from duiit.methods.base import method_folder  # noqa: E402


def curves(experiment: Path, method: str) -> pd.DataFrame:
    """Validation loss and MAE per (split, step) of `method`'s last training stage; `method`
    as the experiment file writes it (`target_only[predictor.lr=0.001]`)."""
    frames = []
    for path in sorted(experiment.glob(f"runs/*/{method_folder(method)}/split-*/metrics.csv")):
        m = pd.read_csv(path)
        m = m[m["stage"] == m["stage"].iloc[-1]]
        wide = m[m["name"].isin(["val_selection", "val_mae"])].pivot(
            index="step", columns="name", values="value"
        )
        wide = wide.reset_index()
        frames.append(wide.assign(split=path.parent.name, evaluation=range(len(wide))))
    if not frames:
        sys.exit(f"{experiment} holds no {method} run with metrics.csv")
    return pd.concat(frames, ignore_index=True)


def summarise(experiment: Path, method: str, tolerance: float) -> tuple[pd.DataFrame, dict]:
    """Mean and sd over splits of each evaluation (the k-th of every split), at its mean
    step: a predictor evaluated once a pass reaches step k*pass at a pass length of its
    split's own, so grouping by step would average different splits at nearby steps."""
    c = curves(experiment, method)
    g = c.groupby("evaluation")
    cols = ["val_selection", "val_mae"]
    mean = g[cols].mean().set_index(g["step"].mean().round().astype(int).rename("step"))
    sd = g[cols].std().set_index(mean.index)
    best = int(mean["val_selection"].idxmin())
    facts = {
        "experiment": experiment.name,
        "splits": c["split"].nunique(),
        "steps": int(mean.index.max()),
        "best step (mean val loss)": best,
        "val MAE at best": round(float(mean.loc[best, "val_mae"]), 2),
        "val MAE at end": round(float(mean["val_mae"].iloc[-1]), 2),
        "val MAE at first eval": round(float(mean["val_mae"].iloc[0]), 2),
        "flat from": flat_from(mean.index.to_numpy(), mean["val_selection"].to_numpy(), tolerance),
    }
    return mean.join(sd.add_suffix("_sd")), facts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("experiments", type=Path, nargs="+")
    p.add_argument("--method", default="target_only")
    p.add_argument("--out", type=Path, required=True, help="figure (PNG)")
    p.add_argument("--tolerance", type=float, default=0.1)
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    rows = []
    for exp in args.experiments:
        curve, facts = summarise(exp, args.method, args.tolerance)
        rows.append(facts)
        ax.plot(curve.index, curve["val_mae"], marker=".", label=exp.name)
        ax.fill_between(
            curve.index,
            curve["val_mae"] - curve["val_mae_sd"],
            curve["val_mae"] + curve["val_mae_sd"],
            alpha=0.15,
        )
        ax.axvline(facts["best step (mean val loss)"], ls=":", lw=1, color=ax.lines[-1].get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("validation MAE (label units), mean ± sd over splits")
    ax.set_title(f"{args.method}: validation over training (dotted: lowest mean loss)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print("command: " + shlex.join(["python", *sys.argv]))
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"figure -> {args.out}")


if __name__ == "__main__":
    main()
