"""Writing outputs so that a failure or a kill never leaves them half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from duiit.errors import DuiitError


@contextmanager
def staged_dir(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder of `out`; on success it replaces `out`, on any error
    it is removed and `out` is left as it was. An existing `out` is refused unless `force`."""
    out = Path(out)
    if out.exists() and not force:
        raise DuiitError(
            f"output folder {out} already exists; choose another or pass --force to replace it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(obj: Any, path: Path) -> None:
    """Atomic JSON write: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
