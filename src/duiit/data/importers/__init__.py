"""Importers of the paper's public datasets: a download layout in, one manifest CSV out.

Each dataset has one small module with a `collect(src, options)` that finds its images and
ages; this package maps names to them and writes the manifest (`import_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from duiit.data.importers import ctich, hnpet, lgg
from duiit.data.importers.common import Imported, Options, Report, write_manifest
from duiit.errors import DuiitError
from duiit.files import new_output


@dataclass(frozen=True)
class Importer:
    """A dataset's name on the command line and how its rows are found."""

    name: str
    collect: Callable[[Path, Options], Imported]
    layouts: tuple[str, ...] = ("auto",)


REGISTRY: dict[str, Importer] = {
    i.name: i
    for i in (
        Importer("lgg-kaggle3m", lgg.collect),
        Importer("ct-ich", ctich.collect, ("auto", *ctich.LAYOUTS)),
        Importer("head-neck-pet-ct", hnpet.collect),
    )
}


def import_dataset(
    name: str, src: Path, out: Path, options: Options = Options(), force: bool = False
) -> Report:
    """Write the manifest of dataset `name` downloaded to `src` (files referenced in place)."""
    importer = REGISTRY.get(name)
    if importer is None:
        raise DuiitError(f"unknown dataset {name!r}; choose one of: {', '.join(REGISTRY)}")
    if options.layout not in importer.layouts:
        raise DuiitError(
            f"{name} has no layout {options.layout!r}; choose one of: {', '.join(importer.layouts)}"
        )
    new_output(out, force)  # before the scan, which can take minutes
    found = importer.collect(Path(src), options)
    if not found.rows:
        why = "; ".join(f"{what}: {reason}" for what, reason in found.skipped) or "no images"
        raise DuiitError(f"no patient of {src} could be imported ({why})")
    write_manifest(found.rows, out)
    labels = [float(r["label"]) for r in found.rows]
    return Report(
        manifest=Path(out),
        rows=len(found.rows),
        patients=len({r["patient_id"] for r in found.rows}),
        label_range=(min(labels), max(labels)),
        skipped=found.skipped,
        notes=found.notes,
    )


__all__ = ["REGISTRY", "Importer", "Options", "Report", "import_dataset"]
