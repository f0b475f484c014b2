"""TCIA Head-Neck-PET-CT (Vallières et al. 2017), the paper's PET set: FDG-PET/CT of 298
patients as DICOM series, ages in the collection's clinical table.

PET values: the reader applies each slice's rescale slope, giving the activity concentration
the scanner stored (Bq/ml), not SUV. duiit does not need SUV: SUV multiplies a patient's
activity by one constant (body weight / decay-corrected injected dose), and non-HU units are
scaled by percentiles of each file, which cancels any constant factor.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pydicom

from duiit.data.cohort import evenly_spaced
from duiit.data.importers.common import (
    Imported,
    Options,
    add_patient,
    age_table,
    read_age_table,
)
from duiit.data.readers import dicom_slice_key
from duiit.errors import DuiitError, explain


def _series_folders(src: Path) -> dict[Path, list[Path]]:
    """Every folder holding .dcm files, with its files (a TCIA series folder each)."""
    found: dict[Path, list[Path]] = defaultdict(list)
    for f in sorted(src.rglob("*")):
        if f.suffix.lower() == ".dcm" and f.is_file():
            found[f.parent].append(f)
    return found


def _first_header(files: list[Path]) -> pydicom.Dataset | None:
    """The header of a series' first file that opens (it says what the series is)."""
    for f in files:
        try:
            return pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # a broken file: try the next one
            continue
    return None


def _ordered(files: list[Path]) -> tuple[list[Path], dict[Path, str]]:
    """A series' readable files from feet to head, and what fails in the others."""
    keyed, problems = [], {}
    for f in files:
        try:
            keyed.append((dicom_slice_key(pydicom.dcmread(f, stop_before_pixels=True)), f))
        except Exception as exc:  # whatever pydicom raises, the file is the problem
            problems[f] = explain(exc)
    return [f for _, f in sorted(keyed)], problems


def _attenuation_corrected(ds: pydicom.Dataset) -> bool:
    value = ds.get("CorrectedImage", [])
    return "ATTN" in ([value] if isinstance(value, str) else list(value))


def collect(src: Path, options: Options) -> Imported:
    """One row per slice (or N evenly spaced ones) of each patient's PET series."""
    table = age_table(options, src, None, "TCIA's clinical table, CSV or Excel: Patient #, Age")
    folders = _series_folders(src) if src.is_dir() else {}
    if not folders:
        raise DuiitError(
            f"{src} does not look like this dataset: expected TCIA's download layout "
            "<PatientID>/<study>/<series>/*.dcm"
        )
    # Per patient, the candidate series as (is PET, attenuation-corrected, files); a series
    # none of whose files opens may be the PET one, and is reported as unreadable.
    candidates: dict[str, list[tuple[bool, bool, list[Path]]]] = defaultdict(list)
    modalities: dict[str, set[str]] = defaultdict(set)
    for folder, files in folders.items():
        ds = _first_header(files)
        modality = "unreadable" if ds is None else str(ds.get("Modality", "?"))
        patient = "" if ds is None else str(ds.get("PatientID", "")).strip()
        patient = patient or folder.parents[1].name  # TCIA: <PatientID>/<study>/<series>
        modalities[patient].add(modality)
        if modality == "PT":
            candidates[patient].append((True, _attenuation_corrected(ds), files))
        elif modality == "unreadable":
            candidates[patient].append((False, False, files))
    if not candidates:
        found = ", ".join(sorted(set().union(*modalities.values())))
        raise DuiitError(f"{src} holds DICOM series of {found} but none of modality PT (PET)")
    ages = read_age_table(table, "Patient #", "Age", str.strip)
    out = Imported()
    for patient in sorted(modalities):
        if not candidates[patient]:
            out.skip(patient, f"no PET series (found {', '.join(sorted(modalities[patient]))})")
            continue
        *_, files = max(candidates[patient], key=lambda s: (s[0], s[1], len(s[2])))
        ordered, problems = _ordered(files)
        add_patient(
            out,
            patient,
            evenly_spaced(ordered, options.slices) + list(problems),  # the latter reported
            ages,
            table.name,
            problems.get,
            lambda _: [{"modality": "PET", "units": "raw"}],
        )
    return out
