"""What a user checks before training: counts, patients, labels, sizes, and a look."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from duiit.data.cohort import Cohort  # noqa: E402
from duiit.files import atomic_path  # noqa: E402


def summarise(cohorts: list[Cohort]) -> pd.DataFrame:
    """One row per modality: images, patients, label statistics, raw image sizes, and how
    many images were read as which units (with the display window, if any)."""
    rows = []
    for c in cohorts:
        row: dict[str, object] = {
            "modality": c.modality,
            "images": len(c),
            "patients": c.n_patients,
        }
        if c.is_classification:
            counts = np.bincount(c.labels.numpy(), minlength=len(c.classes or ()))
            row["labels"] = ", ".join(
                f"{n}:{k}" for n, k in zip(c.classes or (), counts, strict=False)
            )
        else:
            lab = c.labels.numpy()
            row["labels"] = (
                f"mean {lab.mean():.2f} ± {lab.std():.2f} [{lab.min():.2f}, {lab.max():.2f}]"
            )
        shapes = sorted(
            {f"{h}x{w}" for h, w in zip(c.meta["raw_h"], c.meta["raw_w"], strict=False)}
        )
        row["raw sizes"] = ", ".join(shapes[:4]) + (" ..." if len(shapes) > 4 else "")
        row["image size"] = f"{c.image_size}x{c.image_size}"
        read_as = (reading(c)).value_counts()
        row["units"] = ", ".join(f"{name}: {n}" for name, n in read_as.sort_index().items())
        rows.append(row)
    return pd.DataFrame(rows)


def reading(cohort: Cohort) -> pd.Series:
    """How each image was read: its units, with the display window if any ("display 40/120")."""
    return cohort.meta["units"] + cohort.meta["window"].map(lambda w: f" {w}" if w else "")


def sheet_rows(
    cohorts: list[Cohort], per_row: int = 8, seed: int = 0
) -> list[tuple[Cohort, str, np.ndarray]]:
    """The contact sheet's rows: (cohort, row label, random image indices), one row per
    modality and, within a modality, per way of reading (e.g. CT DICOMs in HU beside CT
    JPGs in display units), so a user sees whether files stored differently come out alike."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in cohorts:
        how = reading(c).to_numpy()
        kinds = list(dict.fromkeys(how))
        for kind in kinds:
            members = np.flatnonzero(how == kind)
            label = c.modality if len(kinds) == 1 else f"{c.modality} ({kind})"
            rows.append((c, label, rng.choice(members, min(per_row, len(members)), replace=False)))
    return rows


def contact_sheet(cohorts: list[Cohort], path: Path, per_row: int = 8, seed: int = 0) -> Path:
    """A PNG grid of `sheet_rows`, each image titled with its label."""
    rows = sheet_rows(cohorts, per_row, seed)
    fig, axes = plt.subplots(
        len(rows), per_row, figsize=(1.6 * per_row, 1.8 * len(rows)), squeeze=False
    )
    for r, (c, label, pick) in enumerate(rows):
        for k, ax in enumerate(axes[r]):
            ax.axis("off")
            if k >= len(pick):
                continue
            i = int(pick[k])
            ax.imshow(c.images[i, 0].float().numpy(), cmap="gray", vmin=-1, vmax=1)
            lab = c.labels[i].item()
            text = c.classes[int(lab)] if c.classes else f"{lab:.1f}"
            ax.set_title(f"{label} {text}", fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
