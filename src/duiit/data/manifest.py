"""CSV -> validated rows: the manifests users write and the label tables datasets ship.

Both are read by `read_csv`, the one way duiit reads a CSV: every cell as text, headers
compared ignoring case, spacing and line breaks, and a row longer than its header refused
(pandas would otherwise shift it silently). A manifest is `path,label,patient_id
[,modality][,slice]` plus the per-row intensity columns, one row per image or volume, paths
relative to the CSV; every row keeps its CSV line number for errors.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from duiit.config import DataConfig
from duiit.data.intensity import INTENSITY_COLUMNS, row_config
from duiit.errors import DuiitError, DuiitWarning, explain

REQUIRED_COLUMNS = ("path", "label", "patient_id")
OPTIONAL_COLUMNS = ("modality", "slice", *INTENSITY_COLUMNS)


# ---------------------------------------------------------------- any CSV table


def normalise_header(name: object) -> str:
    """`"Age\\n(years)"` -> `"age (years)"`: line breaks and runs of spaces inside quoted
    headers (CT-ICH's demographics file has one) do not change what a column is."""
    return re.sub(r"\s+", " ", str(name)).strip().lower()


def read_csv(path: Path, kind: str, needs: str) -> pd.DataFrame:
    """A CSV with normalised headers, every cell as text ('' for blanks). `kind` names the
    file in errors (manifest, table); `needs` says what an empty one should hold."""
    path = Path(path)
    if not path.is_file():
        raise DuiitError(f"{kind} {path} does not exist")
    try:
        with warnings.catch_warnings():  # pandas only warns of rows longer than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                index_col=False,
            )
    except pd.errors.ParserWarning:
        raise DuiitError(
            f"{kind} {path} has rows with more fields than its header; "
            "quote cells that contain commas"
        ) from None
    except pd.errors.EmptyDataError:
        raise DuiitError(f"{kind} {path} is empty; it needs {needs}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise DuiitError(f"{kind} {path} is not a readable CSV: {reason}") from None
    df.columns = [normalise_header(c) for c in df.columns]
    return df


def read_sheets(path: Path) -> list[pd.DataFrame]:
    """A label table as its sheets: every sheet of an Excel workbook, or the one CSV table."""
    path = Path(path)
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return [read_csv(path, "table", "a header row naming its columns")]
    try:
        excel = pd.read_excel(path, sheet_name=None, dtype=str)
    except FileNotFoundError:
        raise DuiitError(f"table {path} does not exist") from None
    except Exception as exc:  # openpyxl's many failures: the file is not a workbook
        raise DuiitError(f"table {path} is not a readable Excel file ({explain(exc)})") from None
    return [sheet.rename(columns=normalise_header).fillna("") for sheet in excel.values()]


def finite_numbers(texts: pd.Series) -> pd.Series:
    """Cells as float64; NaN where a cell is blank, not a number, or infinite."""
    values = pd.to_numeric(texts.astype(str).str.strip(), errors="coerce").astype(float)
    return values.where(np.isfinite(values))


def find_column(df: pd.DataFrame, path: Path, wanted: str | None, prefix: str) -> str:
    """The column named `wanted` (compared with normalised headers), or else the one column
    whose name starts with `prefix`."""
    if wanted is not None:
        key = normalise_header(wanted)
        if key not in df.columns:
            raise DuiitError(
                f"table {path} has no column {wanted!r}; found: {', '.join(df.columns)}"
            )
        return key
    found = [c for c in df.columns if c.startswith(prefix)]
    if len(found) != 1:
        raise DuiitError(
            f"table {path}: {'no' if not found else 'several'} column(s) starting with "
            f"{prefix!r} ({', '.join(found) or 'columns: ' + ', '.join(df.columns)}); name one"
        )
    return found[0]


def read_age_column(path: Path, column: str | None = None) -> list[float]:
    """The finite ages of a CSV table's age column; blank or non-numeric cells (patients
    without an age) are dropped."""
    df = read_csv(path, "table", "a header row naming its columns")
    col = find_column(df, path, column, "age")
    ages = finite_numbers(df[col]).dropna()
    if ages.empty:
        raise DuiitError(f"table {path}: column {col!r} holds no numeric age")
    return ages.tolist()


# ---------------------------------------------------------------- manifests


def read_manifest(
    csv_path: Path, modality: str | None = None, labelled: bool = True
) -> pd.DataFrame:
    """Read and check a manifest's structure; each row keeps its CSV line number. Rows that
    name no modality are of `modality`, by default the CSV's file name in capitals. Without
    `labelled` (images to predict), the label column may be missing or blank."""
    csv_path = Path(csv_path)
    header = ",".join(REQUIRED_COLUMNS)
    df = read_csv(csv_path, "manifest", f"a header {header} and one row per image or volume")
    if not labelled and "label" not in df.columns:
        df["label"] = ""
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
    for col in REQUIRED_COLUMNS if labelled else ("path", "patient_id"):
        blank = df[df[col].str.strip() == ""]
        if not blank.empty:
            raise DuiitError(f"{csv_path}, line {blank['line'].iloc[0]}: empty {col!r}")
    default = modality or csv_path.stem.upper()
    if "modality" not in df.columns:
        df["modality"] = default
    df["modality"] = df["modality"].str.strip().replace("", default)
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


def parse_labels(df: pd.DataFrame, csv_path: Path, task: str, blank: bool = False) -> pd.Series:
    """The label column as float32 numbers, or as class names for classification. With
    `blank`, blank cells are allowed (unlabelled images to predict: NaN, or '')."""
    if task == "classification":
        return df["label"].str.strip()
    values = finite_numbers(df["label"])
    bad = df[values.isna() & ~(blank & (df["label"].str.strip() == ""))]
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


def class_names(paths: list[Path], cfg: DataConfig) -> tuple[str, ...] | None:
    """The sorted union of class names over all manifests, so every cohort shares indices."""
    if cfg.task != "classification":
        return None
    names: set[str] = set()
    for p in paths:
        names.update(read_manifest(p)["label"].str.strip())
    return tuple(sorted(names))
