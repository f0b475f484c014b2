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
    """Mean ± std of `metric` per method, grouped by setting (in the order given)."""
    methods = list(summary["method"].drop_duplicates())
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(settings) * 1.5), 3.5))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        part = summary[summary["method"] == m].set_index("setting")
        xs = [j + i * width for j, s in enumerate(settings) if s in part.index]
        ys = [part.loc[s, f"{metric}_mean"] for s in settings if s in part.index]
        es = [part.loc[s, f"{metric}_std"] for s in settings if s in part.index]
        ax.bar(xs, ys, width, yerr=np.nan_to_num(es), capsize=2, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))], settings, fontsize=8)
    ax.set_ylabel(f"test {metric} (mean ± std over splits)")
    ax.legend(fontsize=7, ncol=3)
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
