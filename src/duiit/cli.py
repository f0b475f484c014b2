"""The `duiit` command. Thin: parse, call the library, print. Every command is a function
in the library too (see each command's body for which)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from duiit.errors import DuiitError

app = typer.Typer(
    help=__doc__.split("\n")[0] if __doc__ else None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Make, read and look at cohorts (manifest CSV + image files).", no_args_is_help=True
)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def print_frame(df, title: str) -> None:
    """A pandas frame as a rich table."""
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col))
    for row in df.itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Folder to create (refused if it exists)."),
    ct: int = typer.Option(80, help="CT patients (the target in the demo)."),
    mri: int = typer.Option(110, help="T1 MRI patients."),
    pet: int = typer.Option(300, help="FDG-PET patients."),
    size: int = typer.Option(128, help="Slice size in pixels."),
    slices: int = typer.Option(4, help="Axial slices per patient."),
    seed: int = typer.Option(0, help="Same seed, same files; another seed, other patients."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Write the built-in phantom cohort: NIfTI brain slices of CT, MRI and PET patients
    with their ages, plus one manifest CSV per modality (library: duiit.data.phantom.synthesise).
    """
    from duiit.data.phantom import PhantomSpec, synthesise

    spec = PhantomSpec(
        patients={k: v for k, v in {"CT": ct, "MRI": mri, "PET": pet}.items() if v},
        size=size,
        slices=slices,
        seed=seed,
    )
    manifests = synthesise(out, spec, force=force, quiet=quiet)
    for modality, path in manifests.items():
        console.print(f"{modality}: {spec.patients[modality]} patients -> {path}")


@data_app.command("inspect")
def data_inspect(
    manifests: list[Path] = typer.Argument(..., help="Manifest CSV(s): path,label,patient_id."),
    size: int = typer.Option(64, help="Image size to load at."),
    task: str = typer.Option("auto", help="auto, regression or classification."),
    sheet: Path | None = typer.Option(
        None, help="Contact-sheet PNG [default: beside the first manifest, <name>_contact.png]."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Print counts, patients, label statistics and sizes; save a contact sheet of random
    slices per modality (library: duiit.data.inspect)."""
    from duiit.config import validate
    from duiit.data.inspect import contact_sheet, summarise
    from duiit.data.sources import load_manifest

    cfg = validate({"data": {"image_size": size, "task": task}}, "options").data
    cohorts = [c for m in manifests for c in load_manifest(m, cfg, quiet=quiet)]
    print_frame(summarise(cohorts), "cohorts")
    path = sheet or manifests[0].with_name(f"{manifests[0].stem}_contact.png")
    console.print(f"contact sheet -> {contact_sheet(cohorts, path)}")


def main() -> None:
    """Entry point: user errors become one clear message and exit status 2."""
    try:
        app()
    except DuiitError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from None
