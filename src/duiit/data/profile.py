"""What a run's training images looked like, kept in its folder (`input_profile.json`, a few
numbers), so that `duiit predict` can say when an input is unlike anything the predictor
saw: noise, a colour photo, a wrongly shaped or wrongly read image still gets a confident
prediction, and only a comparison with the training images can tell.

The comparison warns and never refuses: the ranges are the training images' own, widened,
so scans like the training ones pass (tested on the phantom and on real CT).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from duiit.data.cohort import Cohort

PROFILE = "input_profile.json"

# Per-image measures and how a reason names them. Intensities are of the normalised image
# in [-1, 1]: what the predictor takes.
MEASURES = {
    "side": "size (px, longer side)",
    "aspect": "width/height",
    "mean": "mean intensity",
    "floor": "share of pixels at the intensity window's floor",
    "ceiling": "share of pixels at its ceiling",
}
HINT_WINDOW = (
    " (if it is a CT image saved for viewing, give the window it was saved with: --set "
    "data.display_window=[LEVEL,WIDTH])"
)
SIZE_FACTOR = 2.0  # a side within half to twice the training sides is a scan like them
ASPECT_FACTOR = 1.25
WIDEN = 0.25  # intensity ranges widened by this share of their span, plus MARGIN
MARGIN = 0.05


def reading(meta: pd.DataFrame) -> pd.Series:
    """What the normalised values mean: display images with a known CT window were mapped
    back to HU, so they read as `hu`."""
    return meta["units"].where((meta["units"] != "display") | (meta["window"] == ""), "hu")


def with_reading_facts(cohort: Cohort) -> pd.DataFrame:
    """The cohort's `meta` with what loading records of each file (its size before resizing,
    units, window, colour); a cohort built in code rather than loaded from files gets its
    images' own size, raw units and no colour."""
    n, (h, w) = len(cohort), cohort.images.shape[-2:]
    defaults = {"raw_h": h, "raw_w": w, "units": "raw", "window": "", "colour": False}
    meta = cohort.meta.copy()
    for column, value in defaults.items():
        if column not in meta:
            meta[column] = [value] * n
    return meta


def measures(cohort: Cohort) -> pd.DataFrame:
    """The per-image measures of `MEASURES` (plus colour and reading)."""
    images = cohort.images.float().flatten(1)
    meta = with_reading_facts(cohort)
    h, w = meta["raw_h"].to_numpy(float), meta["raw_w"].to_numpy(float)
    return pd.DataFrame(
        {
            "side": np.maximum(h, w),
            "aspect": w / h,
            "mean": images.mean(1).numpy(),
            "floor": (images <= -0.98).float().mean(1).numpy(),
            "ceiling": (images >= 0.98).float().mean(1).numpy(),
            "colour": meta["colour"].to_numpy(bool),
            "reading": reading(meta).to_numpy(),
        }
    )


def profile(cohort: Cohort) -> dict[str, Any]:
    """The training images' ranges of every measure, their readings, the CT windows their
    display images were saved with (`predict` reads display inputs with the same one when
    it is the only one) and whether any was in colour."""
    m = measures(cohort)
    return {
        "images": len(cohort),
        "readings": sorted(set(m["reading"])),
        "display_windows": sorted(set(with_reading_facts(cohort)["window"]) - {""}),
        "colour": bool(m["colour"].any()),
        "ranges": {k: [float(m[k].min()), float(m[k].max())] for k in MEASURES},
    }


def _allowed(name: str, lo: float, hi: float) -> tuple[float, float]:
    if name == "side":
        return lo / SIZE_FACTOR, hi * SIZE_FACTOR
    if name == "aspect":
        return lo / ASPECT_FACTOR, hi * ASPECT_FACTOR
    pad = WIDEN * (hi - lo) + MARGIN
    return lo - pad, hi + pad


def unlike(trained: dict[str, Any], cohort: Cohort) -> list[str]:
    """For each image, why it is unlike the training images ('' when it is not)."""
    reasons = []
    for _, m in measures(cohort).iterrows():
        why = []
        if m["reading"] not in trained["readings"]:
            why.append(
                f"read as {m['reading']} units, the training images as "
                f"{', '.join(trained['readings'])}"
                + (HINT_WINDOW if m["reading"] == "display" and "hu" in trained["readings"] else "")
            )
        if m["colour"] and not trained["colour"]:
            why.append("a colour image (its channels differ), the training images grey")
        for name, (lo, hi) in trained["ranges"].items():
            low, high = _allowed(name, lo, hi)
            if not low <= m[name] <= high:
                why.append(f"{MEASURES[name]} {m[name]:.3g}, training images {lo:.3g} to {hi:.3g}")
        reasons.append("; ".join(why))
    return reasons
