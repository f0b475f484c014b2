"""The paper's protocol as one job: settings x methods x repeated patient-level splits.

`run_experiment` reads the experiment file (`experiment.py`), turns it into cells
(`grid.py`), checks the folder's record (`record.py`), runs the unfinished cells on a
backend (`backends.py`: this machine's processes; `ray_backend.py`: a Ray cluster) with one
progress display, and collects the results (`results.py`). Each cell is its own run folder;
a finished run is skipped, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from duiit.config import Config
from duiit.data import load_cohorts
from duiit.errors import DuiitError
from duiit.evaluation.backends import Backend, LocalPool
from duiit.evaluation.checks import check_grid
from duiit.evaluation.experiment import load_experiment
from duiit.evaluation.grid import Cell, Job, Outcome, phases, plan, quality_references, unfinished
from duiit.evaluation.ray_backend import RayCluster, RayOptions
from duiit.evaluation.record import check_record, experiment_record
from duiit.evaluation.results import collect
from duiit.files import folder_lock, write_csv, write_text
from duiit.progress import console as make_console
from duiit.runs import check_method_fits, settled
from duiit.training.runtime import (
    barrier,
    choose_precision,
    distributed_job,
    is_main_process,
    resolve_device,
)


def run_experiment(
    config_path: Path,
    out: Path,
    overrides: list[str] | None = None,
    quiet: bool = False,
    workers: int = 1,
    ray: RayOptions | None = None,
) -> pd.DataFrame:
    """Run (or resume, or extend) the whole grid; returns the per-run results table.

    Every input is checked before anything is written; the folder is then locked for this
    process and its record compared with the new settings (`check_record`). The runs go to
    `workers` processes on this machine, or, with `ray`, to a Ray cluster. A run that fails
    on bad input does not stop the others: once they have finished, the failed runs are
    named in one DuiitError (runs.csv then holds the finished ones).
    """
    out = Path(out)
    if workers < 1:
        raise DuiitError(f"--workers {workers}: give 1 or more (runs at a time)")
    exp, cfg = load_experiment(config_path, overrides)
    with contextlib.ExitStack() as stack:
        rank, world = stack.enter_context(distributed_job())
        main = rank == 0
        cfg, precision_note = settle_precision(cfg, world, ray)
        if world > 1 and (workers > 1 or ray is not None):
            raise DuiitError(
                "--workers and --backend ray fan runs out over processes; under torchrun "
                "each run already uses every process: use one or the other"
            )
        target, sources = load_cohorts(exp.target, exp.sources, cfg.data, quiet=quiet)
        runs = plan(exp, target, sources)
        check_grid(exp, cfg, target, sources, runs, warn=not quiet)
        for method in exp.methods:
            check_method_fits(method, cfg)
        job = Job(exp, cfg, target, sources)
        backend: Backend = RayCluster(job, ray, out) if ray is not None else LocalPool(job, workers)
        stack.enter_context(backend)
        if main:
            stack.enter_context(folder_lock(out, "experiment folder"))
        record = experiment_record(exp, cfg)
        check_record(out, record, exp, target, sources, precision_note)
        barrier()  # every rank has read the old record
        if main:
            write_text(yaml.safe_dump(record, sort_keys=False), out / "experiment.yaml")
        failed = _run_grid(backend, job, out, runs, quiet, precision_note)
        results = collect(out)
        if main:
            write_csv(results, out / "runs.csv")
    if failed:
        raise DuiitError(_failures(failed, len(runs)))
    return results


def settle_precision(cfg: Config, world: int, ray: RayOptions | None) -> tuple[Config, str]:
    """The run settings with `train.precision=auto` replaced by what it means here (bf16 or
    fp32), and why. Settled once for the grid and recorded in experiment.yaml, so every run
    computes alike wherever it runs (another worker, a Ray node, a later sitting on another
    machine): `auto` differs between CPUs, and a grid mixing bf16 and fp32 runs would compare
    unlike. Ray runs given GPUs are settled for CUDA."""
    if ray is not None and ray.gpus_per_run > 0 and cfg.train.device in ("auto", "cuda"):
        dev = torch.device("cuda")  # the runs' GPUs, wherever the head runs
    else:
        dev = resolve_device(cfg.train.device, world)
    bf16, note = choose_precision(cfg.train.precision, cfg.train.fast, dev)
    return settled(cfg, bf16), note


def _run_grid(
    backend: Backend,
    job: Job,
    out: Path,
    runs: list[Cell],
    quiet: bool,
    precision_note: str,
) -> list[Outcome]:
    """Run the unfinished cells (runs and their quality references) with one progress
    display, whichever backend runs them; returns the cells that failed."""
    console = make_console(quiet=quiet or not is_main_process())
    references = quality_references(job.exp, runs)
    cells = [*references, *runs]
    todo = unfinished(cells, out, job.exp.quality)
    console.print(f"precision: {precision_note}, for every run of the grid", highlight=False)
    console.print(
        f"{len(runs)} runs and {len(references)} quality references "
        f"({len(cells) - len(todo)} already finished) -> {out}{backend.describe()}"
    )
    failed = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        bar = progress.add_task("experiment", total=len(cells), completed=len(cells) - len(todo))
        for phase in phases(todo):
            for outcome in backend.run_cells(phase, out):
                progress.console.print(_line(outcome), markup=False, highlight=False)
                progress.advance(bar)
                if outcome.error is not None:
                    failed.append(outcome)
    return failed


def _line(outcome: Outcome) -> str:
    """A finished cell as one progress line: its test metrics and fit time, or its error."""
    c, r = outcome.cell, outcome.result
    if r is None:
        said = f"failed: {outcome.error}"
    else:
        metrics = "  ".join(f"{n} {v:.4g}" for n, v in r["metrics"].items())
        took = r["fit_seconds"]
        if took is None:  # a resumed run: its clock saw only this sitting
            said = f"{metrics} (resumed: {r['sitting_seconds']:.0f}s this sitting)"
        else:
            said = f"{metrics} ({took:.0f}s)"
    return f"{c.setting:24s} {c.method:15s} split {c.split}: {said}"


def _failures(failed: list[Outcome], total: int) -> str:
    """The one line that ends an experiment with failed runs."""
    shown = "; ".join(f"{o.cell}: {o.error}" for o in failed[:3])
    more = f"; {len(failed) - 3} more above" if len(failed) > 3 else ""
    return (
        f"{len(failed)} run(s) failed, the others of the {total} finished ({shown}{more}); "
        "fix the cause and run the same command again: it runs only what is missing"
    )
