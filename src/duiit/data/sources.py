"""Files on disk -> normalised cohorts. The one place that knows formats and intensities.

The user-facing input is a manifest CSV `path,label,patient_id[,modality][,slice]` with paths
relative to the CSV. A path may be a DICOM file (multi-frame allowed), a folder holding one
DICOM series, a NIfTI volume (axial slices, empty ones dropped), PNG/JPEG/TIFF, or NPY.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import torch
import torch.nn.functional as F
from PIL import Image
from pydicom.pixels import apply_modality_lut

from duiit.config import DataConfig
from duiit.data.cohort import Cohort
from duiit.errors import DuiitError
from duiit.progress import track

REQUIRED_COLUMNS = ("path", "label", "patient_id")
OPTIONAL_COLUMNS = ("modality", "slice")
PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


# ---------------------------------------------------------------- readers (raw units)


def _read_dicom_dataset(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise DuiitError(
            "has no pixel data (a DICOMDIR, report or presentation state?); list image files only"
        )
    arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)  # slope/intercept -> HU
    return arr[None] if arr.ndim == 2 else arr


def _read_dicom_series(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DuiitError("is an empty folder; a folder must hold one DICOM series")
    slices = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        pos = getattr(ds, "ImagePositionPatient", None)
        key = float(pos[2]) if pos is not None else float(getattr(ds, "InstanceNumber", 0))
        slices.append((key, f))
    return np.concatenate([_read_dicom_dataset(f) for _, f in sorted(slices)])


def _read_nifti(path: Path) -> np.ndarray:
    img = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(img.get_fdata(dtype=np.float32))
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DuiitError(f"has {data.ndim} dimensions; expected a 2-D image or 3-D volume")
    # RAS axes -> axial slices with anterior at the top, as radiologists view them.
    return np.stack([np.flipud(data[:, :, k].T) for k in range(data.shape[2])])


def _read_pil(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3:  # colour or alpha: a scan saved as RGB -> grey
        arr = arr[..., :3].mean(axis=-1)
    return arr[None]


def _read_npy(path: Path) -> np.ndarray:
    arr = np.load(path, allow_pickle=False).astype(np.float32)
    if arr.ndim not in (2, 3):
        raise DuiitError(f"holds an array of shape {arr.shape}; expected (H, W) or (slices, H, W)")
    return arr[None] if arr.ndim == 2 else arr


def read_slices(path: Path) -> np.ndarray:
    """All 2-D slices of one file or DICOM folder, (S, H, W) float32 in raw units."""
    name = path.name.lower()
    if path.is_dir():
        return _read_dicom_series(path)
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if path.suffix.lower() in PIL_SUFFIXES:
        return _read_pil(path)
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    return _read_dicom_dataset(path)  # .dcm, .ima, or no suffix, as DICOM often has


# ---------------------------------------------------------------- intensities and size


def normalise(arr: np.ndarray, modality: str, cfg: DataConfig) -> np.ndarray:
    """Map raw intensities to [-1, 1]: CT by the HU window, others by robust percentiles.

    Percentiles are taken over the whole file (volume), so differences between slices of
    one patient are kept.
    """
    if modality.upper() in {m.upper() for m in cfg.hu_modalities}:
        level, width = cfg.hu_window
        lo, hi = level - width / 2, level + width / 2
    else:
        lo, hi = np.percentile(arr, cfg.percentiles)
    if hi <= lo:
        return np.full_like(arr, -1.0)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0


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
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
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
    return df


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


def _expand_rows(
    df: pd.DataFrame, base: Path, origin: str, cfg: DataConfig, quiet: bool
) -> Iterator[tuple[pd.Series, int, np.ndarray, tuple[int, int]]]:
    """Yield (row, slice index, normalised slice, raw shape) for every usable slice."""
    for _, row in track(df.iterrows(), f"reading {Path(origin).name}", len(df), quiet):
        path = (base / row["path"].strip()).resolve()
        where = f"{origin}, line {row['line']}"
        if not path.exists():
            raise DuiitError(
                f"{where}: file {path} does not exist; paths are relative to the manifest's folder"
            )
        try:
            slices = read_slices(path)
        except DuiitError as exc:
            raise DuiitError(f"{where}: {path} {exc}") from None
        except Exception as exc:  # any reader failure is the file's fault: say which file
            reason = " ".join(str(exc).split())  # one line, however the reader wrapped it
            raise DuiitError(
                f"{where}: cannot read {path} ({type(exc).__name__}: {reason}); "
                "is the file complete and in a supported format "
                "(DICOM, NIfTI, PNG/JPEG/TIFF, NPY)?"
            ) from None
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
        norm = normalise(slices, row["modality"], cfg)
        for k in chosen:
            if len(chosen) > 1 and np.ptp(slices[k]) == 0:
                continue  # empty slice of a volume: nothing to learn from
            yield row, k, norm[k], slices[k].shape


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
        for row, k, img, raw_shape in _expand_rows(part, base, origin, cfg, quiet):
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
                    "raw_h": raw_shape[0],
                    "raw_w": raw_shape[1],
                }
            )
        if not images:
            raise DuiitError(f"{origin}: no usable (non-empty) slices for modality {modality}")
        if classes is not None:
            lab = torch.tensor([classes.index(v) for v in labels], dtype=torch.int64)
        else:
            lab = torch.tensor(np.asarray(labels, dtype=np.float32))
        cohorts.append(
            Cohort(
                str(modality),
                torch.cat(images).to(torch.float16),
                lab,
                np.asarray(pids, dtype=object),
                pd.DataFrame(meta),
                classes,
            )
        )
    return cohorts


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
