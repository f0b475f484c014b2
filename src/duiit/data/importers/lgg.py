"""TCGA-LGG "kaggle_3m" (Buda et al. 2019), the paper's MRI set: 110 cases of 3-channel
slices (pre-contrast, FLAIR, post-contrast) with `data.csv` holding each patient's age."""

from __future__ import annotations

import re
from pathlib import Path

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

CASE = re.compile(r"TCGA_[A-Z0-9]+_[A-Z0-9]+_\d+", re.IGNORECASE)
FLAIR = 1  # channels: pre-contrast, FLAIR, post-contrast; missing ones were filled with FLAIR


def _cases(folder: Path) -> list[Path]:
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and CASE.fullmatch(d.name)]


def collect(src: Path, options: Options) -> Imported:
    """One row per image slice of every case whose patient has an age in data.csv."""
    root = find_root(
        src,
        lambda d: bool(_cases(d)),
        "case folders TCGA_<institution>_<patient>_<date>/ holding <case>_<n>.tif slices "
        "and data.csv (the kaggle_3m folder, or a folder holding it)",
    )
    table = age_table(options, root, "data.csv", "Patient, age_at_initial_pathologic")
    ages = read_age_table(table, "Patient", "age_at_initial_pathologic", str.strip)
    out = Imported()
    for case in _cases(root):
        patient = "_".join(case.name.split("_")[:3])  # TCGA_CS_4941_19960909 -> TCGA_CS_4941
        slices = numbered(list(case.iterdir()), rf"{re.escape(case.name)}_(\d+)\.(?:tiff?|png)")
        add_patient(
            out,
            patient,
            evenly_spaced(slices, options.slices),
            ages,
            table.name,
            unreadable_by(Image.open),
            lambda _: [{"modality": "MRI", "units": "display", "channel": FLAIR}],
        )
    return out
