"""Clinical tables as datasets ship them: find a column by name despite their quirks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from duiit.errors import DuiitError


def normalise_header(name: object) -> str:
    """`"Age\\n(years)"` -> `"age (years)"`: line breaks and runs of spaces inside quoted
    headers (CT-ICH's demographics file has one) do not change what a column is."""
    return re.sub(r"\s+", " ", str(name)).strip().lower()


def read_table(path: Path) -> pd.DataFrame:
    """A CSV table with normalised headers, every cell as text."""
    path = Path(path)
    if not path.is_file():
        raise DuiitError(f"table {path} does not exist")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise DuiitError(f"table {path} is not a readable CSV: {reason}") from None
    df.columns = [normalise_header(c) for c in df.columns]
    return df


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
    """The finite ages of a table's age column; blank or non-numeric cells (patients without
    an age) are dropped."""
    df = read_table(path)
    col = find_column(df, path, column, "age")
    ages = pd.to_numeric(df[col].str.strip(), errors="coerce").to_numpy(float)
    ages = ages[np.isfinite(ages)]
    if len(ages) == 0:
        raise DuiitError(f"table {path}: column {col!r} holds no numeric age")
    return ages.tolist()
