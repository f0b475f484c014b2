"""PhysioNet CT-ICH (Hssayeni et al.), the paper's CT set: 82 head CT scans with
`Patient_demographics.csv`, published as brain-window JPG stacks (v1.0.0, also on Kaggle)
and as NIfTI volumes in HU (v1.3.1)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
from PIL import Image

from duiit.data.cohort import evenly_spaced
from duiit.data.importers.common import (
    Imported,
    Options,
    add_patient,
    age_table,
    find_root,
    numbered,
    read_age_table,
    unreadable_by,
)
from duiit.errors import DuiitError

LAYOUTS = ("jpg", "nifti")
FOLDERS = {"jpg": "Patients_CT", "nifti": "ct_scans"}
BRAIN_WINDOW = "40/120"  # level/width the JPGs were saved with (the dataset's description)


def _layouts(folder: Path) -> list[str]:
    return [name for name in LAYOUTS if (folder / FOLDERS[name]).is_dir()]


def _patient_id(number: str) -> str:
    """The table's 49 -> 049, as the folders and files are named."""
    return f"{int(float(number)):03d}" if number.replace(".", "", 1).isdigit() else number


def _volume_rows(path: Path, n: int) -> list[dict[str, object]]:
    """One row for the whole volume, or one per chosen axial slice (index as the reader
    counts them: inferior to superior)."""
    row: dict[str, object] = {"modality": "CT", "units": "hu"}
    if n <= 0:
        return [row]
    img = nib.load(path)
    axial = [int(a) for a, _ in nib.io_orientation(img.affine)].index(2)
    return [{**row, "slice": k} for k in evenly_spaced(range(img.shape[axial]), n)]


def collect(src: Path, options: Options) -> Imported:
    """Rows of the JPG slices or the NIfTI volumes of every patient with an age."""
    root = find_root(
        src,
        lambda d: bool(_layouts(d)),
        "Patients_CT/<nnn>/brain/<k>.jpg (JPG release) or ct_scans/<nnn>.nii (NIfTI "
        "release) beside Patient_demographics.csv",
    )
    present = _layouts(root)
    layout = options.layout if options.layout != "auto" else present[-1]  # NIfTI: true HU
    if layout not in present:
        raise DuiitError(f"{root} has no {FOLDERS[layout]}/ folder for --layout {layout}")
    out = Imported()
    if len(present) > 1 and options.layout == "auto":
        out.notes.append("both layouts present: read the NIfTI volumes (--layout jpg for JPGs)")
    table = age_table(options, root, "Patient_demographics.csv", "Patient Number, Age (years)")
    ages = read_age_table(table, "Patient Number", "Age (years)", _patient_id)
    folder = root / FOLDERS[layout]
    if layout == "jpg":
        for patient in sorted(d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()):
            brain = patient / "brain"
            jpgs = numbered(list(brain.iterdir()) if brain.is_dir() else [], r"(\d+)\.jpe?g")
            add_patient(
                out,
                patient.name,
                evenly_spaced(jpgs, options.slices),
                ages,
                table.name,
                unreadable_by(Image.open),
                lambda _: [{"modality": "CT", "units": "display", "display_window": BRAIN_WINDOW}],
            )
    else:
        for volume in sorted(folder.glob("*.nii*")):
            add_patient(
                out,
                volume.name.split(".")[0],
                [volume],
                ages,
                table.name,
                unreadable_by(nib.load),
                lambda f: _volume_rows(f, options.slices),
            )
    return out
