"""Which source slices should translation see? The head's share of each slice (duiit's
`Cohort.foreground`: pixels above the background) for the target and a source, by the
slice's place in its stack, and how many source slices each `data.source_min_foreground`
keeps; a contact sheet of the source slices it would drop.

    .venv/bin/python scripts/source_slices.py runs/ct-ich.csv \
        ../shared/data/lgg_mri_flair128/manifest.csv --sheet docs/figures/lgg-dropped.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from duiit.config import DataConfig  # noqa: E402
from duiit.data.load import load_manifest  # noqa: E402


def place(cohort) -> np.ndarray:
    """Each slice's place in its patient's stack, 0 (first) to 1 (last), in manifest order."""
    pids = pd.Series(cohort.patient_ids)
    rank = pids.groupby(pids).cumcount().to_numpy()
    size = pids.map(pids.value_counts()).to_numpy()
    return rank / np.maximum(size - 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", type=Path)
    ap.add_argument("source", type=Path)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.15])
    ap.add_argument("--sheet", type=Path, help="contact sheet of the dropped source slices")
    args = ap.parse_args()
    ct_cfg = DataConfig(image_size=args.size, hu_window=(40, 120))
    (target,) = load_manifest(args.target, ct_cfg, quiet=True)
    (source,) = load_manifest(args.source, DataConfig(image_size=args.size), quiet=True)
    print("head share of each slice (quantiles 0, 5, 25, 50, 75 %) by place in the stack")
    for cohort in (target, source):
        fg, where = cohort.foreground(), place(cohort)
        print(f"{cohort.modality}: {len(cohort)} slices, {cohort.n_patients} patients")
        for lo, hi in ((0, 0.1), (0.1, 0.9), (0.9, 1.01)):
            part = fg[(where >= lo) & (where < hi)]
            q = " ".join(f"{v:.3f}" for v in np.quantile(part, [0, 0.05, 0.25, 0.5, 0.75]))
            print(f"  place {lo:.1f}-{min(hi, 1):.1f}: {len(part):5d} slices, {q}")
    tfg = target.foreground()
    for t in args.thresholds:
        kept = source.with_foreground(t)
        print(
            f"source_min_foreground={t}: keeps {len(kept)} of {len(source)} {source.modality} "
            f"slices ({kept.n_patients} patients); {np.mean(tfg < t):.1%} of "
            f"{target.modality} slices lie below it"
        )
    if args.sheet:
        fg = source.foreground()
        order = np.argsort(fg)[:: max(1, int(np.sum(fg < max(args.thresholds))) // 48)][:48]
        fig, axes = plt.subplots(6, 8, figsize=(12, 9.5))
        for ax, k in zip(axes.flat, order, strict=False):
            ax.imshow(source.images[k, 0].float(), cmap="gray", vmin=-1, vmax=1)
            ax.set_title(f"{fg[k]:.3f}", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.suptitle(f"{source.modality} slices by head share (lowest first)")
        fig.tight_layout()
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.sheet, dpi=80)
        print(f"contact sheet -> {args.sheet}")


if __name__ == "__main__":
    main()
