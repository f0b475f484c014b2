"""File -> pixels as stored, and what the file's format says about them.

One reader per format: a DICOM file (multi-frame allowed, rescaled to modality units: CT in
HU), a folder holding one DICOM series, a NIfTI volume (axial slices), PNG/JPEG/TIFF/BMP, or
NPY. Readers never normalise; `duiit.data.intensity` decides what the values mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut

from duiit.errors import DuiitError

PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
NIFTI = (".nii", ".nii.gz")


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


def _natural(path: Path) -> list[Any]:
    """Sort key: numbers in a name compare as numbers (2.jpg before 10.jpg)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def image_files(folder: Path) -> list[Path]:
    """A folder's files, in name order with numbers as numbers (a stack's 1, 2, ..., 10),
    when each is an image by its suffix (PNG/JPEG/TIFF/BMP, NPY, NIfTI): such a folder is a
    list of images, not a DICOM series. Otherwise none."""
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=_natural,
    )
    images = [
        p
        for p in files
        if p.suffix.lower() in PIL_SUFFIXES | {".npy"} or p.name.lower().endswith(NIFTI)
    ]
    return images if images == files else []


def _dicom_header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        raise DuiitError(
            f"holds {path.name}, which is not a DICOM file; a folder must hold one DICOM "
            "series (list other images one by one)"
        ) from None


def _read_dicom_series(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DuiitError("is an empty folder; a folder must hold one DICOM series")
    keys = [(dicom_slice_key(_dicom_header(f)), f) for f in files]
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
    if name.endswith(NIFTI):
        return _read_nifti(path)
    if path.suffix.lower() in PIL_SUFFIXES:
        return _read_pil(path)
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    return FileImage(_read_dicom_dataset(path))  # .dcm, .ima, or no suffix, as DICOM often has
