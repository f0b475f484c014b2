"""The `duiit` command. Thin: parse, call the library, print. Every command is a function
in the library too (see each command's body for which).

Help texts are the commands' docstrings, reflowed (`_polish_help`) so that hard line breaks
of the source never reach the terminal: rich wraps the prose to the terminal's width.
"""

from __future__ import annotations

import errno
import inspect
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rich
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperCommand

from duiit.errors import DuiitError
from duiit.files import NO_SPACE
from duiit.progress import console as make_console
from duiit.progress import fit_width

if TYPE_CHECKING:
    from duiit.report.build import Report

QUIET_HELP = "No progress bars or progress lines; results and errors still show."

app = typer.Typer(
    help="Cross-modal data augmentation of medical images: make or check a cohort, train a "
    "translator with a predictor, translate, augment, predict, and compare methods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Make, read and look at cohorts (manifest CSV + image files).", no_args_is_help=True
)
app.add_typer(data_app, name="data")
console = make_console()
err_console = make_console(stderr=True)


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
    ages: list[str] = typer.Option(
        [],
        help="MODALITY=CSV[:COLUMN]: take that modality's ages from a real age table, one "
        "patient per age (the column defaults to the one whose name starts with 'age'); "
        "repeatable. Sets that modality's patient count.",
    ),
    subtle_cue: bool = typer.Option(
        False,
        help="Put most age information in small, low-contrast lesions (a few HU in CT) and "
        "make the gross anatomy a noisier cue: a test of whether translation keeps it.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Write the built-in phantom cohort: NIfTI brain slices of CT, MRI and PET patients
    with their ages, plus one manifest CSV per modality (library: duiit.data.phantom.synthesise).
    """
    from duiit.data.phantom import PhantomSpec, read_age_option, synthesise

    spec = PhantomSpec(
        patients={k: v for k, v in {"CT": ct, "MRI": mri, "PET": pet}.items() if v},
        size=size,
        slices=slices,
        seed=seed,
        ages=dict(read_age_option(a) for a in ages),
        subtle_cue=subtle_cue,
    )
    manifests = synthesise(out, spec, force=force, quiet=quiet)
    for modality, path in manifests.items():
        console.print(f"{modality}: {spec.patients[modality]} patients -> {path}")


@data_app.command("inspect")
def data_inspect(
    manifests: list[Path] = typer.Argument(..., help="Manifest CSV(s): path,label,patient_id."),
    size: int = typer.Option(64, help="Image size to load at."),
    task: str = typer.Option("auto", help="auto, regression or classification."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Contact-sheet PNG to write, or an existing folder to write it in (default: "
        "<first manifest's name>_contact.png in the current folder).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the contact sheet if it exists."),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="A data setting as training would use it, e.g. --set data.display_window=[40,120] "
        "--set data.slices_per_patient=5; repeatable.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Print counts, patients, label statistics and sizes; save a contact sheet of random
    slices per modality, one row per way the files were read (units, display window), so
    you see the images exactly as training will (library: duiit.data.inspect). Nothing is
    written beside the data, so read-only data can be inspected."""
    from duiit.config import load_config
    from duiit.data.inspect import contact_sheet, summarise
    from duiit.data.load import load_manifest
    from duiit.data.manifest import class_names
    from duiit.files import new_output

    cfg = load_config(overrides=[f"data.image_size={size}", f"data.task={task}", *settings]).data
    name = f"{manifests[0].stem}_contact.png"
    path = out / name if out is not None and out.is_dir() else out or Path(name)
    if path.suffix.lower() != ".png":
        raise DuiitError(
            f"--out {path} is neither a folder nor a .png file name; the contact sheet is a "
            f"PNG: give e.g. --out {path.with_suffix('.png')}"
        )
    new_output(path, force)
    classes = class_names(manifests, cfg)  # one index per class name across the manifests
    cohorts = [c for m in manifests for c in load_manifest(m, cfg, quiet, classes)]
    print_frame(summarise(cohorts), "cohorts")
    console.print(f"contact sheet -> {contact_sheet(cohorts, path)}")


IMPORT_HELP = "\n\n".join(
    [
        "Write a manifest for one of the paper's public datasets, referencing its files where "
        "they lie: nothing is copied, and paths are relative to the manifest wherever --out is.",
        "lgg-kaggle3m: the TCGA-LGG brain MRI of Kaggle's lgg-mri-segmentation, "
        "kaggle_3m/<case>/<case>_<n>.tif with data.csv; masks are skipped and the FLAIR "
        "channel is used.",
        "ct-ich: PhysioNet's CT-ICH head CT, as brain-window JPGs (Patients_CT/<nnn>/brain/; "
        "the bone window is skipped) or NIfTI volumes in HU (ct_scans/), with "
        "Patient_demographics.csv.",
        "head-neck-pet-ct: TCIA's Head-Neck-PET-CT DICOM series (<PatientID>/<study>/<series>/); "
        "the PET series of each patient, ages from --labels.",
        "Prints how many patients and rows were found, the age range, and every patient left "
        "out with the reason (no age, no images, unreadable). Library: "
        "duiit.data.importers.import_dataset.",
    ]
)


@data_app.command("import", help=IMPORT_HELP)
def data_import(
    dataset: str = typer.Argument(
        ..., metavar="FORMAT", help="lgg-kaggle3m, ct-ich or head-neck-pet-ct."
    ),
    src: Path = typer.Argument(
        ..., metavar="SRC", help="The dataset's folder, as downloaded and unpacked."
    ),
    out: Path = typer.Option(..., "--out", help="Manifest CSV to write."),
    labels: Path | None = typer.Option(
        None,
        help="Age table (default: the dataset's own data.csv or Patient_demographics.csv). "
        "Needed for head-neck-pet-ct: TCIA's clinical table, CSV or Excel (Patient #, Age).",
    ),
    slices: int = typer.Option(
        0,
        min=0,
        help="Take N evenly spaced slices per patient, first and last excluded (0: every slice).",
    ),
    layout: str = typer.Option(
        "auto", help="ct-ich only: jpg or nifti, when the folder holds both (auto: nifti)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """The paper's datasets, from their download layouts, to a manifest."""
    from duiit.data.importers import Options, import_dataset

    report = import_dataset(
        dataset, src, out, Options(labels=labels, slices=slices, layout=layout), force
    )
    console.print(report.summary(dataset), highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    if report.skipped:
        console.print(f"skipped {len(report.skipped)}:", highlight=False)
        for what, why in report.skipped:
            console.print(f"  {escape(what)}: {escape(why)}", highlight=False)


CONFIG_HELP = "YAML config file (sections data, model, predictor, train)."
PRESET_HELP = "cpu-demo (tiny, minutes on a laptop CPU) or paper (256 px, ResNet-50, batch 1)."
OVERRIDE_HELP = "Dotted overrides, e.g. train.steps=500 predictor.network=resnet18."


def _show_result(result: dict, run: Path) -> None:
    """The test scores, then where the run's outputs are, with counts."""
    metrics = "  ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items())
    console.print(
        f"[bold]{result['method']}[/bold] on {result['target']} test patients "
        f"({result['n']['test']} images): {metrics}"
    )
    n = result["n"]
    counts = {d: sum(p.is_file() for p in (run / d).rglob("*")) for d in ("checkpoints", "samples")}
    folders = "".join(f", {d}/ ({k} file{'s' * (k != 1)})" for d, k in counts.items() if k)
    console.print(
        f"outputs -> {run}: model.pt, result.json, test_predictions.csv ({n['test']} test "
        f"images), split.csv ({n['train']} train, {n['val']} val, {n['test']} test images), "
        f"metrics.csv and tb/ (training curves){folders}",
        highlight=False,
    )


def _show_manifest(manifest: Path) -> str:
    """What a written manifest holds: '24 real training images + 60 translated (MRI 60)'."""
    from duiit.files import read_csv

    df = read_csv(manifest)
    per = df["source_modality"].dropna().value_counts().sort_index()
    translated = f"{per.sum()} translated ({', '.join(f'{m} {k}' for m, k in per.items())})"
    real = int(df["source_modality"].isna().sum())
    return f"{real} real training images + {translated}" if real else translated


@app.command("train")
def train_cmd(
    target: Path | None = typer.Option(None, help="Manifest of the target modality (e.g. CT)."),
    source: list[Path] = typer.Option([], help="Manifest of a source modality; repeatable."),
    out: Path | None = typer.Option(None, help="Run folder to create."),
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    method: str = typer.Option("duiit", help="Method to train (see `duiit methods`)."),
    resume: Path | None = typer.Option(None, help="Continue an interrupted run folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    overrides: list[str] = typer.Argument(None, help=OVERRIDE_HELP),
) -> None:
    """Train the translator and predictor jointly (DUIIT) on a patient-level split of the
    target, then report the error on its held-out test patients (library: duiit.runs.train).

    The run folder gets config.yaml, metrics.csv, tb/ (TensorBoard), checkpoints/, samples/
    (source | translated | cycled grids), model.pt and result.json.
    """
    from duiit import runs
    from duiit.config import load_config

    if resume is not None:
        if overrides or config or preset:
            raise DuiitError(
                "--resume continues with the run's saved configuration; drop "
                "--config, --preset and overrides"
            )
        out = resume
        result = runs.train(None, [], resume, resume=True, quiet=quiet)
    else:
        if out is None:
            raise DuiitError("give --out RUN_DIR (or --resume RUN_DIR)")
        cfg = load_config(config, overrides or [], preset)
        result = runs.train(target, source, out, cfg, method=method, quiet=quiet)
    _show_result(result, out)


@app.command("translate")
def translate_cmd(
    run: Path = typer.Argument(..., help="A finished run folder of a translating method."),
    source: Path = typer.Option(..., help="Manifest of source images to translate."),
    out: Path = typer.Option(..., help="Folder to create: NIfTI files + manifest.csv."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Translate source images into the target modality, keeping their labels
    (library: duiit.runs.translate_manifest). Images are written in the target's units
    (HU for CT), so they read back exactly as duiit saw them."""
    from duiit.runs import translate_manifest

    manifest = translate_manifest(run, source, out, force, quiet)
    console.print(f"{_show_manifest(manifest)} -> {out} ({manifest.name})", highlight=False)


@app.command("augment")
def augment_cmd(
    run: Path = typer.Argument(..., help="A finished run folder of a translating method."),
    target: Path = typer.Option(..., help="Manifest of the real target training images."),
    source: list[Path] = typer.Option(..., help="Manifest of a source modality; repeatable."),
    out: Path = typer.Option(..., help="Folder to create: real/ + translated/ + manifest.csv."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Write the augmented target training set: the real target images plus the translated
    source images with their labels, as files and one manifest any pipeline can read
    (library: duiit.runs.augment)."""
    from duiit.runs import augment

    manifest = augment(run, target, source, out, force, quiet)
    console.print(f"{_show_manifest(manifest)} -> {out} ({manifest.name})", highlight=False)


@app.command("predict")
def predict_cmd(
    run: Path = typer.Argument(..., help="A finished run folder."),
    input: list[Path] = typer.Option(
        ...,
        help="A manifest CSV (path, patient_id; label optional), or image files, DICOM series "
        "folders and folders of PNG/JPEG/TIFF/NPY/NIfTI files (one patient each); repeatable.",
    ),
    out: Path = typer.Option(
        ...,
        help="CSV to write, one row per image (path, slice, patient_id, [label,] prediction, "
        "unlike_training); OUT_patients.csv beside it holds one row per patient.",
    ),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="How your files are stored, as in a run: data.units, data.display_window or "
        "data.channel, e.g. --set data.display_window=[40,120]; repeatable.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Predict the labels of images of the run's target modality (library: duiit.runs.predict):
    per image, and per patient (the mean of a patient's slice predictions with their
    spread, or the most frequent class). With labels in the manifest, the scores too. Inputs
    unlike the run's training images (size, channels, intensities) are warned about."""
    from duiit.runs import patients_csv, predict

    done = predict(run, input, out, quiet, force, settings)
    for note in done.notes:
        console.print(f"note: {note}", highlight=False)
    shown = done.patients.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
    print_frame(shown.fillna(""), "per patient")
    if done.scores is not None:
        scores = "  ".join(f"{k} {v:.4g}" for k, v in done.scores.items())
        console.print(f"scores on the {done.labelled} labelled images: {scores}", highlight=False)
    console.print(
        f"{len(done.images)} image predictions -> {out}; {len(done.patients)} patients -> "
        f"{patients_csv(out)}",
        highlight=False,
    )


@app.command("methods")
def methods_cmd() -> None:
    """List the methods that can be trained and compared. In an experiment file a method
    may carry settings of its own, e.g. duiit\\[lambda_pred=0.01] for a lambda sweep."""
    from duiit.methods import REGISTRY

    table = Table(box=None, show_header=True, pad_edge=False)
    for col in ("method", "sources", "what it does"):
        table.add_column(col, no_wrap=col != "what it does")
    for name, cls in sorted(REGISTRY.items()):
        table.add_row(name, "yes" if cls.uses_sources else "no", cls.description)
    console.print(table)


@app.command("experiment")
def experiment_cmd(
    config: Path = typer.Argument(
        ...,
        help="Experiment YAML: target, sources, methods, splits, run (data/model/train), quality.",
    ),
    out: Path = typer.Option(..., help="Experiment folder; re-running resumes it."),
    backend: str = typer.Option(
        "local",
        help="Where runs go: 'local' (processes on this machine) or 'ray' (a Ray cluster; "
        "OUT must be on a file system every node shares).",
    ),
    workers: int | None = typer.Option(
        None,
        help="local: runs at a time, each in its own process (CPU threads are shared out; "
        "several GPUs are used round-robin). Default 1.",
        show_default=False,
    ),
    address: str | None = typer.Option(
        None,
        help="ray: the cluster, 'auto' or HOST:PORT (default: RAY_ADDRESS, else a cluster "
        "started on this machine, else a new one here).",
        show_default=False,
    ),
    cpus_per_run: float | None = typer.Option(
        None, help="ray: CPUs each run asks for; fractions allowed. Default 1.", show_default=False
    ),
    gpus_per_run: float | None = typer.Option(
        None, help="ray: GPUs each run asks for; fractions allowed. Default 0.", show_default=False
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    overrides: list[str] = typer.Argument(
        None, help="Dotted overrides, e.g. splits=3 run.train.steps=200."
    ),
) -> None:
    """Run the paper's protocol: every setting (no source, each subset of sources) x method x
    patient-level split, each run a folder; finished runs are skipped, so an interrupted sweep
    resumes (library: duiit.evaluation.runner.run_experiment). A run that fails on bad input
    does not stop the others; the command then names it and exits with status 2. Then
    `duiit report OUT`."""
    from duiit.evaluation.ray_backend import RayOptions
    from duiit.evaluation.runner import run_experiment

    if backend not in ("local", "ray"):
        raise DuiitError(f"--backend {backend!r}: choose local or ray")
    ray_only = {
        "--address": address,
        "--cpus-per-run": cpus_per_run,
        "--gpus-per-run": gpus_per_run,
    }
    given = [name for name, v in ray_only.items() if v is not None]
    if backend == "local" and given:
        raise DuiitError(f"{', '.join(given)}: only with --backend ray")
    if backend == "ray" and workers is not None:
        raise DuiitError(
            "--workers is for --backend local; on Ray the cluster's free CPUs and GPUs decide "
            "how many runs go at a time (--cpus-per-run, --gpus-per-run)"
        )
    ray = None
    if backend == "ray":
        ray = RayOptions(
            address,
            1.0 if cpus_per_run is None else cpus_per_run,
            0.0 if gpus_per_run is None else gpus_per_run,
        )
    results = run_experiment(
        config, out, overrides or [], quiet, 1 if workers is None else workers, ray
    )
    console.print(f"{len(results)} finished runs -> {out / 'runs.csv'}; next: duiit report {out}")


def _show_report(report: Report, out: Path) -> None:
    """results.md on the terminal, then what it says is missing, and where the page is."""
    console.print((out / "results.md").read_text(), markup=False, highlight=False)
    if report.notes:
        console.print(
            f"{len(report.notes)} note(s) on unfinished or damaged runs: see the top of "
            f"{out / 'results.md'}",
            highlight=False,
        )
    figures = [f for name, f in report.files.items() if name.endswith(".png")]
    where = f" and {len(figures)} figures in {figures[0].parent}" if figures else ""
    written = ", ".join(str(report.files[n]) for n in ("results.md", "results.csv", "report.html"))
    console.print(f"report -> {written}{where}", highlight=False)


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="An experiment folder."),
    beside: list[Path] = typer.Option(
        [],
        help="Another experiment folder whose results to show beside this one's, one column "
        "each (e.g. the same experiment with image-level splits); repeatable.",
    ),
) -> None:
    """Write results.md, results.csv, figures/ and report.html: error tables, the paper's
    claims with verdicts, ours vs baselines, augmentations and variants with t-tests, FID/IS,
    translation grids, learning curves, error bars, predicted vs true (library:
    duiit.report.build_report)."""
    from duiit.report import build_report

    _show_report(build_report(out, beside), out)


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), help="Folder for the cohort, runs and report."),
    force: bool = typer.Option(False, "--force", help="Start afresh if OUT exists."),
    workers: int = typer.Option(2, help="Runs at a time (processes); 2 suits a 2-core laptop."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Everything on built-in data: synthesise the phantom cohort (CT target; MRI, PET
    sources), run a small protocol grid (4 settings; ours, CycleGAN, target only, transfer,
    simple augmentation; 3 splits) at CPU-friendly size, and write the report."""
    from duiit.demo import prepare_demo
    from duiit.evaluation.runner import run_experiment
    from duiit.report import build_report

    experiment = prepare_demo(out, force, quiet)
    run_experiment(experiment, out, [], quiet, workers)
    _show_report(build_report(out), out)


def _reflow(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph: the terminal wraps, not the source."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


class _Command(TyperCommand):
    """Usage lines as manuals write them: `RUN` for a required argument, `[OVERRIDES]...`
    for optional ones. Typer writes `{run}`, which reads as something to type literally."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.display_name_raw.upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


def _polish_help(typer_app: typer.Typer) -> None:
    """Every command's help, from its docstring or `help=`, reflowed, and its usage line
    written plainly (recursively)."""
    for cmd in typer_app.registered_commands:
        text = cmd.help or (cmd.callback.__doc__ if cmd.callback else None)
        if text:
            cmd.help = _reflow(text)
        cmd.cls = _Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _polish_help(group.typer_instance)


_polish_help(app)

# Errors of the environment that a user fixes there (space, permissions), named with the file.
_ENVIRONMENT = {*NO_SPACE, errno.EROFS, errno.EACCES, errno.EPERM}


def _print_line(label: str, message: object) -> None:
    """One line on stderr, whatever line breaks the message carried (parsers' messages do)."""
    err_console.print(f"{label} {escape(' '.join(str(message).split()))}", soft_wrap=True)


def _one_line_warning(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
    _print_line("[yellow]warning:[/yellow]", message)


def _error(message: str) -> SystemExit:
    _print_line("[bold red]error:[/bold red]", message)
    return SystemExit(2)


def main() -> None:
    """Entry point: user errors become one clear line and exit status 2; warnings are one
    line each, without the source line Python would print."""
    for c in (console, err_console, rich.get_console()):  # the last: training's progress
        fit_width(c)  # where output goes now (a test, or a notebook, may redirect it)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            app(prog_name="duiit")  # also under `python -m duiit`
        except DuiitError as exc:
            raise _error(str(exc)) from None
        except OSError as exc:
            if exc.errno not in _ENVIRONMENT:
                raise
            raise _error(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)) from None
