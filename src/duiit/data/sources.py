"""Files on disk -> normalised cohorts. The one place that knows formats and intensities.

The user-facing input is a manifest CSV `path,label,patient_id[,modality][,slice]` with paths
relative to the CSV, plus optional per-row intensity settings `units`, `display_window` and
`channel` that win over the run's `data.*` values. A path may be a DICOM file (multi-frame
allowed), a folder holding one DICOM series, a NIfTI volume (axial slices, empty ones
dropped), PNG/JPEG/TIFF, or NPY.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydantic
import pydicom
import torch
import torch.nn.functional as F
from PIL import Image
from pydicom.pixels import apply_modality_lut

from duiit.config import DataConfig
from duiit.data.cohort import Cohort
from duiit.errors import DuiitError, DuiitWarning
from duiit.progress import track

REQUIRED_COLUMNS = ("path", "label", "patient_id")
INTENSITY_COLUMNS = ("units", "display_window", "channel")
OPTIONAL_COLUMNS = ("modality", "slice", *INTENSITY_COLUMNS)
PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


# ---------------------------------------------------------------- readers (stored values)


@dataclass(frozen=True)
class FileImage:
    """One file's pixels as stored, and what its reader can tell about their meaning.

    `pixels` is (slices, H, W, channels) float32. `full_scale` is the largest value of the
    file's unsigned integer encoding (255, 65535) or None for floats and signed values.
    `display` says whether the file is, by its format, an image made for viewing (an integer
    PNG/JPEG/TIFF), which `auto` units take as already windowed.
    """

    pixels: np.ndarray
    full_scale: float | None = None
    display: bool = False


def _full_scale(dtype: np.dtype) -> float | None:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.unsignedinteger) else None


def _read_dicom_dataset(path: Path) -> np.ndarray:
    """(frames, H, W, samples) in modality units (slope/intercept applied: CT in HU)."""
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise DuiitError(
            "has no pixel data (a DICOMDIR, report or presentation state?); list image files only"
        )
    arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    if int(getattr(ds, "SamplesPerPixel", 1)) == 1:
        arr = arr[..., None]
    return arr[None] if arr.ndim == 3 else arr


def dicom_slice_key(ds: pydicom.Dataset) -> float:
    """Where a slice lies in its series (z position, else instance number), for sorting."""
    pos = getattr(ds, "ImagePositionPatient", None)
    return float(pos[2]) if pos is not None else float(getattr(ds, "InstanceNumber", 0))


def _read_dicom_series(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DuiitError("is an empty folder; a folder must hold one DICOM series")
    keys = [(dicom_slice_key(pydicom.dcmread(f, stop_before_pixels=True)), f) for f in files]
    return np.concatenate([_read_dicom_dataset(f) for _, f in sorted(keys)])


def _read_nifti(path: Path) -> FileImage:
    img = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(img.get_fdata(dtype=np.float32))
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DuiitError(f"has {data.ndim} dimensions; expected a 2-D image or 3-D volume")
    # RAS axes -> axial slices with anterior at the top, as radiologists view them.
    slices = np.stack([np.flipud(data[:, :, k].T) for k in range(data.shape[2])])
    slope, inter = img.header.get_slope_inter()
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)  # stored values were rescaled
    return FileImage(slices[..., None], None if scaled else _full_scale(img.get_data_dtype()))


def _read_pil(path: Path) -> FileImage:
    with Image.open(path) as img:
        if img.mode == "1":
            img = img.convert("L")
        elif img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGB")
        img.load()
        stored = np.asarray(img)
        keep = [i for i, band in enumerate(img.getbands()) if band != "A"]  # alpha: not a scan
        # Pillow reads some 16-bit PNGs as 32-bit "I"; PNG holds at most 16 bits.
        full = 65535.0 if img.mode == "I" and img.format == "PNG" else _full_scale(stored.dtype)
    arr = stored.astype(np.float32)
    arr = arr[..., None] if arr.ndim == 2 else arr[..., keep]
    return FileImage(arr[None], full, display=full is not None)


def _read_npy(path: Path) -> FileImage:
    stored = np.load(path, allow_pickle=False)
    if stored.ndim not in (2, 3):
        raise DuiitError(
            f"holds an array of shape {stored.shape}; expected (H, W) or (slices, H, W)"
        )
    arr = stored.astype(np.float32)[..., None]
    return FileImage(arr[None] if arr.ndim == 3 else arr, _full_scale(stored.dtype))


def read_image(path: Path) -> FileImage:
    """All 2-D slices of one file or DICOM folder with their channels, as stored."""
    name = path.name.lower()
    if path.is_dir():
        return FileImage(_read_dicom_series(path))
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if path.suffix.lower() in PIL_SUFFIXES:
        return _read_pil(path)
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    return FileImage(_read_dicom_dataset(path))  # .dcm, .ima, or no suffix, as DICOM often has


# ---------------------------------------------------------------- intensities and size


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
    """Map one file's values to [-1, 1] by what they are (the one home of these conventions).

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


# ---------------------------------------------------------------- manifests


def read_manifest(csv_path: Path) -> pd.DataFrame:
    """Read and check a manifest's structure; each row keeps its CSV line number."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DuiitError(f"manifest {csv_path} does not exist")
    try:
        with warnings.catch_warnings():  # pandas only warns of rows longer than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
    except pd.errors.ParserWarning:
        raise DuiitError(
            f"manifest {csv_path} has rows with more fields than its header; "
            "quote paths or labels that contain commas"
        ) from None
    except pd.errors.EmptyDataError:
        raise DuiitError(
            f"manifest {csv_path} is empty; it needs a header "
            f"{','.join(REQUIRED_COLUMNS)} and one row per image or volume"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DuiitError(f"manifest {csv_path} is not a readable CSV: {exc}") from None
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DuiitError(
            f"manifest {csv_path} lacks column(s) {', '.join(missing)}; found "
            f"{', '.join(df.columns) or 'none'}. Required: "
            f"{', '.join(REQUIRED_COLUMNS)}; optional: {', '.join(OPTIONAL_COLUMNS)}"
        )
    if df.empty:
        raise DuiitError(f"manifest {csv_path} has a header but no rows")
    df["line"] = np.arange(len(df)) + 2  # header is line 1
    for col in REQUIRED_COLUMNS:
        blank = df[df[col].str.strip() == ""]
        if not blank.empty:
            raise DuiitError(f"{csv_path}, line {blank['line'].iloc[0]}: empty {col!r}")
    if "modality" not in df.columns:
        df["modality"] = csv_path.stem.upper()
    df["modality"] = df["modality"].str.strip().replace("", csv_path.stem.upper())
    _check_intensity_columns(df, csv_path)
    return _drop_repeated_rows(df, csv_path)


def _drop_repeated_rows(df: pd.DataFrame, csv_path: Path) -> pd.DataFrame:
    """A row listing the same image as an earlier one (same file, slice, modality and reading:
    units, window, channel) would count that image twice: it is dropped with a warning, or
    refused when it says something else about it."""
    key = df["path"].str.strip().map(os.path.normpath)
    for col in [c for c in OPTIONAL_COLUMNS if c in df.columns]:
        key = key + "|" + df[col].str.strip()
    label = df["label"].str.strip()
    number = pd.to_numeric(label, errors="coerce")  # 63.5 and 63.50 are one label
    same = number.astype(str).where(number.notna(), label) + "|" + df["patient_id"].str.strip()
    repeated = key.duplicated()
    for i in np.flatnonzero(repeated):
        first = int(np.flatnonzero(key == key.iloc[i])[0])
        a, b = df.iloc[first], df.iloc[i]
        if same.iloc[first] != same.iloc[i]:
            raise DuiitError(
                f"{csv_path}, lines {a['line']} and {b['line']} list the same image "
                f"({b['path'].strip()}) with different labels or patients "
                f"({a['label']!r}/{a['patient_id']!r} vs {b['label']!r}/{b['patient_id']!r}); "
                "keep the right one"
            )
        warnings.warn(
            f"{csv_path}, line {b['line']} repeats line {a['line']} ({b['path'].strip()}); "
            "the image is used once",
            DuiitWarning,
            stacklevel=2,
        )
    return df[~repeated].reset_index(drop=True)


def _check_pixels(slices: np.ndarray, where: str, path: Path, size: int) -> None:
    """Refuse NaN/Inf pixels (they would surface only as a diverged training) and warn about
    an image so small that resizing it to `size` px invents nearly all of it."""
    bad = int(np.size(slices) - np.count_nonzero(np.isfinite(slices)))
    if bad:
        raise DuiitError(
            f"{where}: {path} has {bad} non-finite pixel value(s) (NaN or Inf); "
            "fix or remove the file"
        )
    h, w = slices.shape[-2:]
    if min(h, w) * 4 < size:
        warnings.warn(
            f"{where}: {path} is only {h}x{w} px and is enlarged to {size}x{size}; "
            "is it a thumbnail or the wrong file?",
            DuiitWarning,
            stacklevel=2,
        )


def _check_intensity_columns(df: pd.DataFrame, csv_path: Path) -> None:
    """Refuse a bad units/display_window/channel value before any image is read."""
    present = [c for c in INTENSITY_COLUMNS if c in df.columns]
    if not present:
        return
    defaults = DataConfig()
    for _, row in df.drop_duplicates(present).iterrows():  # the first line of each setting
        try:
            row_config(row, defaults)
        except ValueError as exc:
            raise DuiitError(f"{csv_path}, line {row['line']}: {exc}") from None


def _parse_labels(df: pd.DataFrame, csv_path: Path, task: str) -> pd.Series:
    if task == "classification":
        return df["label"].str.strip()
    values = pd.to_numeric(df["label"].str.strip(), errors="coerce")
    bad = df[values.isna() | ~np.isfinite(values.fillna(0))]
    if not bad.empty:
        row = bad.iloc[0]
        hint = (
            "set data.task=classification if the labels are class names"
            if task == "auto"
            else "fix or remove the row"
        )
        raise DuiitError(
            f"{csv_path}, line {row['line']}: label {row['label']!r} is not a finite number; {hint}"
        )
    return values.astype(np.float32)


def _intensities(
    image: FileImage, row: pd.Series, cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """One file under its row's settings: (slices as stored, normalised slices, units,
    display window as level/width or '')."""
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


def _expand_rows(
    df: pd.DataFrame, base: Path, origin: str, cfg: DataConfig, quiet: bool
) -> Iterator[tuple[pd.Series, int, np.ndarray, dict[str, object]]]:
    """Yield (row, slice index, normalised slice, facts for the cohort's meta) for every
    usable slice."""
    for _, row in track(df.iterrows(), f"reading {Path(origin).name}", len(df), quiet):
        path = (base / row["path"].strip()).resolve()
        where = f"{origin}, line {row['line']}"
        if not path.exists():
            raise DuiitError(
                f"{where}: file {path} does not exist; paths are relative to the manifest's folder"
            )
        try:
            image = read_image(path)
        except DuiitError as exc:
            raise DuiitError(f"{where}: {path} {exc}") from None
        except Exception as exc:  # any reader failure is the file's fault: say which file
            reason = " ".join(str(exc).split())  # one line, however the reader wrapped it
            raise DuiitError(
                f"{where}: cannot read {path} ({type(exc).__name__}: {reason}); "
                "is the file complete and in a supported format "
                "(DICOM, NIfTI, PNG/JPEG/TIFF, NPY)?"
            ) from None
        try:
            slices, norm, units, window = _intensities(image, row, cfg)
        except DuiitError as exc:
            raise DuiitError(f"{where}: {path} {exc}") from None
        _check_pixels(slices, where, path, cfg.image_size)
        chosen = range(len(slices))
        wanted = row.get("slice", "")
        if isinstance(wanted, str) and wanted.strip():
            try:
                k = int(wanted)
            except ValueError:
                raise DuiitError(f"{where}: slice {wanted!r} is not an integer") from None
            if not 0 <= k < len(slices):
                raise DuiitError(
                    f"{where}: slice {k} is out of range; {path.name} has "
                    f"{len(slices)} slice(s), numbered from 0"
                )
            chosen = [k]
        for k in chosen:
            if len(chosen) > 1 and np.ptp(slices[k]) == 0:
                continue  # empty slice of a volume: nothing to learn from
            h, w = slices[k].shape
            yield row, k, norm[k], {"raw_h": h, "raw_w": w, "units": units, "window": window}


def _cohorts(
    df: pd.DataFrame,
    base: Path,
    origin: str,
    cfg: DataConfig,
    quiet: bool,
    classes: tuple[str, ...] | None,
) -> list[Cohort]:
    """Rows with parsed labels -> one cohort per modality."""
    cohorts = []
    for modality, part in df.groupby("modality", sort=True):
        images, labels, pids, meta = [], [], [], []
        for row, k, img, facts in _expand_rows(part, base, origin, cfg, quiet):
            images.append(
                to_square(torch.from_numpy(np.ascontiguousarray(img))[None], cfg.image_size)
            )
            labels.append(row["label"])
            pids.append(row["patient_id"].strip())
            meta.append(
                {
                    "path": row["path"].strip(),
                    "slice": k,
                    "line": row["line"],
                    "manifest": origin,
                    **facts,
                }
            )
        if not images:
            raise DuiitError(f"{origin}: no usable (non-empty) slices for modality {modality}")
        _warn_mixed_units(pd.DataFrame(meta), origin, str(modality))
        if classes is not None:
            lab = torch.tensor([classes.index(v) for v in labels], dtype=torch.int64)
        else:
            lab = torch.tensor(np.asarray(labels, dtype=np.float32))
        cohort = Cohort(
            str(modality),
            torch.cat(images).to(torch.float16),
            lab,
            np.asarray(pids, dtype=object),
            pd.DataFrame(meta),
            classes,
        )
        cohorts.append(cohort.central_slices(cfg.slices_per_patient))
    return cohorts


def _warn_mixed_units(meta: pd.DataFrame, origin: str, modality: str) -> None:
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


def load_manifest(
    csv_path: Path, cfg: DataConfig, quiet: bool = False, classes: tuple[str, ...] | None = None
) -> list[Cohort]:
    """Load every image of a manifest, one cohort per modality it lists."""
    csv_path = Path(csv_path)
    df = read_manifest(csv_path)
    task = "classification" if classes is not None else cfg.task
    df["label"] = _parse_labels(df, csv_path, task)
    return _cohorts(df, csv_path.parent, str(csv_path), cfg, quiet, classes)


def load_files(paths: list[Path], modality: str, cfg: DataConfig, quiet: bool = False) -> Cohort:
    """Unlabelled image files (for prediction) as one cohort; labels are NaN."""
    df = pd.DataFrame(
        {
            "path": [str(Path(p).resolve()) for p in paths],
            "label": np.nan,
            "patient_id": [Path(p).name for p in paths],
            "modality": modality,
            "line": np.arange(len(paths)) + 1,
        }
    )
    [cohort] = _cohorts(df, Path.cwd(), "command-line file", cfg, quiet, None)
    return cohort


def _class_names(paths: list[Path], cfg: DataConfig) -> tuple[str, ...] | None:
    """The sorted union of class names over all manifests, so every cohort shares indices."""
    if cfg.task != "classification":
        return None
    names: set[str] = set()
    for p in paths:
        names.update(read_manifest(p)["label"].str.strip())
    return tuple(sorted(names))


def check_disjoint(cohorts: list[Cohort]) -> None:
    """Refuse a patient id that appears in two modalities' cohorts (unpaired by design)."""
    seen: dict[str, Cohort] = {}
    for c in cohorts:
        for pid in np.unique(c.patient_ids):
            other = seen.get(pid)
            if other is not None and other.modality != c.modality:
                raise DuiitError(
                    f"patient {pid!r} appears in {other.modality} "
                    f"({other.meta['manifest'].iloc[0]}) and in {c.modality} "
                    f"({c.meta['manifest'].iloc[0]}); the modalities were declared disjoint. "
                    "Rename the ids if they are different people, or set "
                    "data.disjoint_patients=false if they are the same patients"
                )
            seen[pid] = c


def load_cohorts(
    target: Path, sources: list[Path], cfg: DataConfig, quiet: bool = False
) -> tuple[Cohort, list[Cohort]]:
    """Load the target cohort (exactly one modality) and every source modality."""
    classes = _class_names([Path(target), *map(Path, sources)], cfg)
    targets = load_manifest(target, cfg, quiet, classes)
    if len(targets) != 1:
        raise DuiitError(
            f"target manifest {target} lists {len(targets)} modalities "
            f"({', '.join(c.modality for c in targets)}); give exactly one"
        )
    src: list[Cohort] = []
    for path in sources:
        src.extend(load_manifest(path, cfg, quiet, classes))
    names = [c.modality for c in [targets[0], *src]]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DuiitError(
            f"modality {sorted(dup)[0]} is given twice (target and sources must "
            "be different modalities); set the `modality` column to tell them apart"
        )
    if cfg.disjoint_patients:
        check_disjoint([targets[0], *src])
    return targets[0], src
