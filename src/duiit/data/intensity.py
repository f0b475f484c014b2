"""Stored values -> [-1, 1]: the one home of the intensity conventions.

What a file's numbers are decides how they are mapped (`units`): `hu` CT numbers through the
run's HU window, `raw` physical units (MRI signal, PET activity) by robust percentiles of
each file, `display` an already windowed 8/16-bit image mapped linearly (or back to HU
through the window it was saved with). A manifest row's `units`, `display_window` and
`channel` win over the run's `data.*` settings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pydantic
import torch
import torch.nn.functional as F

from duiit.config import DataConfig
from duiit.data.readers import FileImage
from duiit.errors import DuiitError

#: Manifest columns that set how one row's file is read, over the run's `data.*` values.
INTENSITY_COLUMNS = ("units", "display_window", "channel")


def row_config(row: pd.Series, cfg: DataConfig) -> DataConfig:
    """The run's data settings with a manifest row's own units/display_window/channel on top.

    Raises ValueError naming the column and what it accepts.
    """
    out = cfg.model_copy()
    for col in INTENSITY_COLUMNS:
        text = str(row.get(col, "") or "").strip()
        if not text:
            continue
        if col == "display_window":
            value: object = text.replace(",", "/").split("/")
        elif col == "channel":
            value = int(text) if text.isdigit() else text.lower()
        else:
            value = text.lower()
        try:
            setattr(out, col, value)
        except pydantic.ValidationError as exc:
            example = {"units": "hu, display or raw", "display_window": "level/width, e.g. 40/120"}
            accepted = example.get(col, "a channel index (0, 1, 2) or mean")
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"{col} {text!r} is not valid ({reason}); give {accepted}") from None
    return out


def file_units(image: FileImage, modality: str, cfg: DataConfig) -> str:
    """Resolve `cfg.units` for one file: `auto` goes by what the file holds (see DataConfig)."""
    if cfg.units == "auto":
        if image.display:
            return "display"
        return "hu" if cfg.is_hu(modality) else "raw"
    if cfg.units == "display" and image.full_scale is None:
        raise DuiitError(
            "holds floating-point or signed values, so it is not a display image; set units "
            "to hu or raw for it (display needs 8/16-bit unsigned pixels, e.g. PNG or JPEG)"
        )
    return cfg.units


def normalise(
    arr: np.ndarray,
    units: str,
    cfg: DataConfig,
    full_scale: float | None = None,
    display_window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map one file's values to [-1, 1] by what they are.

    `hu`: the run's HU window. `raw`: robust percentiles over the whole file (volume), so
    slices of one patient keep their differences and any constant factor per file (such as
    SUV's dose/weight normalisation of PET) cancels out. `display`: already windowed for
    viewing, so mapped linearly; with the HU window it was saved with, first back to HU and
    then through the run's HU window, so it matches HU files of the same modality.
    """
    if units not in ("hu", "raw", "display") or (units == "display" and full_scale is None):
        raise ValueError(f"cannot normalise units {units!r} (full scale {full_scale})")
    if units == "raw":
        lo, hi = np.percentile(arr, cfg.percentiles)
    elif units == "display" and display_window is None:
        lo, hi = 0.0, full_scale
    else:
        if units == "display":  # back to the HU it was windowed from
            level, width = display_window
            arr = level - width / 2 + arr / full_scale * width
        level, width = cfg.hu_window
        lo, hi = level - width / 2, level + width / 2
    if hi <= lo:
        return np.full_like(arr, -1.0)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0


def pick_channel(pixels: np.ndarray, channel: int | str) -> np.ndarray:
    """(S, H, W, C) -> (S, H, W): one channel of a multi-channel image, or their mean."""
    n = pixels.shape[-1]
    if n == 1:
        return pixels[..., 0]
    if channel == "mean":
        return pixels.mean(axis=-1)
    if not isinstance(channel, int) or channel >= n:
        raise DuiitError(
            f"has {n} channels (0..{n - 1}) and channel {channel} was asked for; set the "
            f"channel column or data.channel to one of 0..{n - 1} or mean"
        )
    return pixels[..., channel]


def file_intensities(
    image: FileImage, row: pd.Series, cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """One file under its manifest row's settings: (slices as stored, normalised slices,
    units, display window as level/width or ''). Errors name the file's problem only; the
    caller adds where it is listed."""
    modality = row["modality"]
    own = row_config(row, cfg)  # validated when the manifest was read
    units = file_units(image, modality, own)
    window = own.display_window if units == "display" and cfg.is_hu(modality) else None
    if str(row.get("display_window", "") or "").strip():
        if not cfg.is_hu(modality):
            raise DuiitError(
                f"has a display_window but its modality {modality} is not in data.hu_modalities "
                f"({', '.join(cfg.hu_modalities)}); the window is a CT (HU) window: clear it"
            )
        if units != "display":
            raise DuiitError(
                f"has a display_window but holds {units} units, not a display image; clear "
                "the window, or set units=display if the file is an already windowed image"
            )
    slices = pick_channel(image.pixels, own.channel)
    norm = normalise(slices, units, cfg, image.full_scale, window)
    return slices, norm, units, "" if window is None else f"{window[0]:g}/{window[1]:g}"


def warn_mixed_units(meta: pd.DataFrame, origin: str, modality: str) -> None:
    """HU files and display images of unknown window in one cohort may not share a range."""
    hu = meta[meta["units"] == "hu"]
    display = meta[(meta["units"] == "display") & (meta["window"] == "")]
    if hu.empty or display.empty:
        return
    warnings.warn(
        f"{origin}: the {modality} images mix files in HU (e.g. line {hu['line'].iloc[0]}) "
        f"with display images of unknown window (e.g. line {display['line'].iloc[0]}), so "
        "their intensity ranges may disagree. Give the HU window the display images were "
        "saved with: a display_window column (e.g. 40/120) or data.display_window=[40,120]",
        stacklevel=3,
    )


def to_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (S, H, W) to a square with the background value, then resize to size x size."""
    s, h, w = images.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    padded = images.new_full((s, side, side), -1.0)
    padded[:, top : top + h, left : left + w] = images
    x = padded[:, None]
    if side != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
        )
    return x.clamp_(-1, 1)
