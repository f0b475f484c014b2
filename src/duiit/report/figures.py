"""The report's figures, drawn with matplotlib from the run folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from duiit.files import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def row_label(name: str) -> str:
    """A method's name as a row label: each of a variant's options on a line of its own, so
    that long variants (`cyclegan[translator=fastcut, source_share=0.5]`) do not overlap."""
    return name.replace("[", "\n[").replace(", ", ",\n")


def translation_grid(rows: dict[str, torch.Tensor], title: str, path: Path) -> Path:
    """Rows of images (source, CycleGAN, ours), one column per example (the paper's figs 2-4)."""
    n = min(r.shape[0] for r in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for k in range(n):
            ax = axes[r][k]
            ax.imshow(images[k, 0].float().numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(row_label(name), fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def learning_curves(curves: dict[str, pd.DataFrame], path: Path) -> Path:
    """Validation loss and translation distance over steps, one line per setting."""
    names = sorted(
        {
            n
            for df in curves.values()
            for n in df["name"].unique()
            if n == "val_selection" or n.startswith("val_hist_dist_")
        }
    )
    fig, axes = plt.subplots(
        1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3), squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=False):
        for label, df in curves.items():
            part = df[df["name"] == name]
            if not part.empty:
                ax.plot(part["step"], part["value"], marker=".", label=label)
        ax.set_title(name.replace("val_", "validation "), fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return _save(fig, path)


def error_bars(summary: pd.DataFrame, metric: str, settings: list[str], path: Path) -> Path:
    """Mean ± std of `metric`, one row per (setting, method) in the order given: rows with
    labels stay readable at 15 methods, where grouped bars ran out of colours and legend
    room; the constants ("predict the ...") are grey, so a row can be read against them."""
    rows = [
        r
        for s in settings
        for _, r in summary[summary["setting"] == s].iterrows()
        if not np.isnan(r[f"{metric}_mean"])
    ]
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.26 * len(rows)))
    for y, r in enumerate(rows):
        constant = str(r["method"]).startswith("predict the")
        ax.errorbar(
            r[f"{metric}_mean"], y, xerr=np.nan_to_num(r[f"{metric}_std"]), fmt="o", ms=4,
            capsize=2, color="grey" if constant else "C0",
        )  # fmt: skip
    ax.set_yticks(range(len(rows)), [f"{r['method']} ({r['setting']})" for r in rows], fontsize=7)
    for y in [y for y in range(1, len(rows)) if rows[y]["setting"] != rows[y - 1]["setting"]]:
        ax.axhline(y - 0.5, color="lightgrey", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(f"test {metric} (mean ± std over splits)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def predicted_vs_true(frames: dict[str, pd.DataFrame], path: Path) -> Path:
    """Predictions against labels on the test patients, one panel per method: each slice
    (faint) and each patient's mean over its slices, with their spread (± sd), which is
    what a patient-level score averages."""
    fig, axes = plt.subplots(1, len(frames), figsize=(3.4 * len(frames), 3.2), squeeze=False)
    for ax, (name, df) in zip(axes[0], frames.items(), strict=True):
        ax.scatter(df["label"], df["prediction"], s=6, alpha=0.25, label="slice")
        patients = df.groupby("patient_id").agg(
            label=("label", "first"), mean=("prediction", "mean"), sd=("prediction", "std")
        )
        ax.errorbar(
            patients["label"], patients["mean"], yerr=patients["sd"].fillna(0), fmt="s",
            ms=4, color="black", ecolor="grey", elinewidth=1, label="patient (mean ± sd)",
        )  # fmt: skip
        lo, hi = float(df["label"].min()), float(df["label"].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)
