"""Small writers of test files in the formats users bring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)


def write_dicom(
    path: Path,
    stored: np.ndarray,
    slope: float = 1.0,
    intercept: float = -1024.0,
    position: float | None = None,
    pixels: bool = True,
    modality: str = "CT",
    **attributes: object,
) -> Path:
    """A CT (or PET: modality PT) DICOM file of unsigned 16-bit stored values; (F, H, W) makes
    it multi-frame; `attributes` are further DICOM keywords (PatientID, ...)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = (
        PositronEmissionTomographyImageStorage if modality == "PT" else CTImageStorage
    )
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if position is not None:
        ds.ImagePositionPatient = [0.0, 0.0, position]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    if pixels:
        ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_manifest(path: Path, rows: list[str], header: str = "path,label,patient_id") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# The smallest networks that still learn on 32 px phantoms: keeps the suite in minutes.
TINY = [
    "data.image_size=32",
    "model.ngf=8",
    "model.ndf=8",
    "model.n_blocks=2",
    "model.predictor=resnet10",
    "model.width=0.5",
]
