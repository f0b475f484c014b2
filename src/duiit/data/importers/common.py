"""What every dataset importer shares: finding the dataset's folder, its age table, keeping
account of what was skipped and why, and writing the manifest.

An importer turns a published download layout into manifest rows that reference the files
where they are; nothing is copied and nothing but the manifest is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from duiit.data.manifest import finite_numbers, normalise_header, read_sheets
from duiit.errors import DuiitError, explain
from duiit.files import write_csv

#: Manifest columns in the order they are written; importers fill the ones they know.
COLUMNS = ("path", "label", "patient_id", "modality", "slice", "units", "display_window", "channel")


@dataclass(frozen=True)
class Options:
    """What a user can choose on the command line, the same for every dataset."""

    labels: Path | None = None  # the age table; None: the one shipped with the dataset
    slices: int = 0  # N evenly spaced slices per patient (or series); 0: all
    layout: str = "auto"  # for datasets published in more than one layout


@dataclass
class Imported:
    """Manifest rows (with absolute paths) and an account of everything left out."""

    rows: list[dict[str, object]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (patient or file, why)
    notes: list[str] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))


@dataclass(frozen=True)
class Report:
    """What `import_dataset` wrote, for the summary a user reads."""

    manifest: Path
    rows: int
    patients: int
    label_range: tuple[float, float]
    skipped: list[tuple[str, str]]
    notes: list[str]

    def summary(self, dataset: str) -> str:
        """The line `duiit data import` prints first: counts, ages, where the manifest is.
        Ages to at most 3 decimals, so a newborn reads 0.003 y rather than 0.00274725, and
        one age when all are equal."""
        ages = "–".join(dict.fromkeys(f"{round(a, 3):g}" for a in self.label_range))
        return (
            f"{dataset}: {self.patients} patients, {self.rows} rows, age {ages} y "
            f"-> {self.manifest}"
        )


def find_root(src: Path, looks_right: Callable[[Path], bool], expected: str) -> Path:
    """The dataset's own folder: `src` itself or a folder up to two levels below it (the
    archives unpack into a versioned folder). Fails with what was expected."""
    if not src.is_dir():
        raise DuiitError(f"{src} is not a folder; give the dataset's folder as downloaded")
    level = [src]
    for depth in range(3):
        found = next((folder for folder in level if looks_right(folder)), None)
        if found is not None:
            return found
        if depth < 2:
            level = sorted(d for f in level for d in f.iterdir() if d.is_dir())
    raise DuiitError(f"{src} does not look like this dataset: expected {expected}")


def find_file(folder: Path, name: str) -> Path | None:
    """A file in `folder` by name, ignoring case (downloads differ in capitalisation)."""
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == name.lower()), None)


def age_table(options: Options, root: Path, name: str | None, what: str) -> Path:
    """The age table: --labels, else the file `name` shipped in the dataset's folder."""
    found = options.labels or (find_file(root, name) if name else None)
    if found is None:
        where = f"no {name} in {root}; " if name else ""
        raise DuiitError(f"{where}give the age table with --labels ({what})")
    return found


def read_age_table(
    path: Path, id_column: str, age_column: str, patient_id: Callable[[str], str]
) -> tuple[dict[str, float], set[str]]:
    """Ages by patient id from a CSV or Excel table (every sheet), and the ids listed without
    a usable age. Headers match ignoring case and line breaks; `patient_id` maps the table's
    ids onto the ids the images carry."""
    sheets = read_sheets(path)
    wanted = (normalise_header(id_column), normalise_header(age_column))
    frames = []
    for sheet in sheets:
        if all(c in sheet.columns for c in wanted):
            frames.append(sheet[list(wanted)])
    if not frames:
        found = ", ".join(repr(c) for s in sheets for c in s.columns)
        raise DuiitError(
            f"age table {path} has no columns {id_column!r} and {age_column!r} (found {found}); "
            "give the dataset's own table with --labels"
        )
    table = pd.concat(frames)
    ids = table[wanted[0]].astype(str).str.strip()
    ages = finite_numbers(table[wanted[1]])
    ok = ids.ne("") & ages.ge(0)
    valid = {patient_id(i): float(a) for i, a in zip(ids[ok], ages[ok], strict=True)}
    missing = {patient_id(i) for i in ids[~ok & ids.ne("")]} - set(valid)
    return valid, missing


def numbered(paths: list[Path], pattern: str) -> list[Path]:
    """The paths whose name matches `pattern` (one group: the slice number), in number order."""
    rx = re.compile(pattern, re.IGNORECASE)
    hits = [(int(m.group(1)), p) for p in paths if (m := rx.fullmatch(p.name))]
    return [p for _, p in sorted(hits)]


def unreadable_by(opener: Callable[[Path], object]) -> Callable[[Path], str | None]:
    """A check that a file opens with `opener` (headers only, so fast): its problem or None."""

    def problem(path: Path) -> str | None:
        try:
            opened = opener(path)
        except Exception as exc:  # whatever the library raises, the file is the problem
            return explain(exc)
        if hasattr(opened, "close"):
            opened.close()
        return None

    return problem


def add_patient(
    out: Imported,
    patient: str,
    files: list[Path],
    ages: tuple[dict[str, float], set[str]],
    table: str,
    unreadable: Callable[[Path], str | None],
    rows: Callable[[Path], list[dict[str, object]]],
) -> None:
    """Rows for one patient's image files, or the reason the patient is skipped: no images,
    no age in `table`, or no file that opens (`unreadable` gives a file's problem or None).
    `rows` gives a file's rows beyond path, label and patient id."""
    valid, missing = ages
    if not files:
        out.skip(patient, "no images")
        return
    if patient not in valid:
        out.skip(patient, f"{'blank age' if patient in missing else 'not listed'} in {table}")
        return
    problems = {f: p for f in files if (p := unreadable(f)) is not None}
    if len(problems) == len(files):
        out.skip(patient, f"unreadable: {files[0].name}: {problems[files[0]]}")
        return
    for f, problem in problems.items():
        out.skip(f"{patient} file {f.name}", f"unreadable: {problem}")
    for f in files:
        if f not in problems:
            base = {"path": f, "label": valid[patient], "patient_id": patient}
            out.rows.extend({**base, **extra} for extra in rows(f))


def write_manifest(rows: list[dict[str, object]], out: Path) -> None:
    """Write rows atomically, paths relative to the manifest's folder (as manifests read
    them), so a reader never sees half a manifest."""
    out = Path(os.path.abspath(out))
    frame = pd.DataFrame(rows)
    frame["path"] = [Path(os.path.relpath(p, out.parent)).as_posix() for p in frame["path"]]
    write_csv(frame[[c for c in COLUMNS if c in frame.columns]], out)
