"""The one place that knows the grid: an experiment's cells, each cell's folder and seed,
which cells are unfinished, the order they run in, and what running one means.

A cell is one run folder: a (setting, method, split) run of the protocol, or a split's
quality reference (a target-only predictor with a seed of its own, under `references/`,
that scores the split's translations). Split k uses seed k for every method, so the
comparisons are paired. Backends (`backends.py`, `ray_backend.py`) call `run_cell` and know
nothing else about the grid.
"""

from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from duiit.config import Config
from duiit.data import Cohort
from duiit.errors import DuiitError, explain
from duiit.evaluation.experiment import ExperimentConfig, QualityConfig
from duiit.evaluation.quality import SplitReference, quality_done, score_run
from duiit.files import write_text
from duiit.methods import get_method
from duiit.methods.base import method_folder
from duiit.runs import execute
from duiit.training.runtime import is_main_process

# The quality reference of a split: a target-only predictor with a seed of its own, so that
# no method trained against it (cycada's frozen network is the split's target_only recipe
# with the run's seed; scored by that same network, its consistency would be the loss it
# minimised). Its seed is offset from the runs' by this much.
REFERENCE = "quality-reference"
REFERENCE_SEED_OFFSET = 7919


@dataclass(frozen=True)
class Cell:
    """One run of the grid; small and picklable, so backends can ship it to any worker."""

    setting: str
    sources: tuple[str, ...]  # the setting's source modalities
    method: str
    split: int

    @property
    def is_reference(self) -> bool:
        return self.setting == REFERENCE

    @property
    def translates(self) -> bool:
        return get_method(self.method).translates

    def folder(self, out: Path) -> Path:
        """This cell's run folder inside the experiment folder `out`."""
        if self.is_reference:
            return out / "references" / f"split-{self.split:02d}"
        return out / "runs" / self.setting / method_folder(self.method) / f"split-{self.split:02d}"

    def seed(self, base: int) -> int:
        """The run's training seed: the split's, offset for a quality reference."""
        return base + self.split + (REFERENCE_SEED_OFFSET if self.is_reference else 0)

    def pick(self, sources: list[Cohort]) -> list[Cohort]:
        """The experiment's source cohorts this cell's setting uses."""
        return [c for c in sources if c.modality in self.sources]

    def reference(self) -> Cell:
        """The quality reference that scores this cell's translations."""
        return Cell(REFERENCE, (), "target_only", self.split)

    def __str__(self) -> str:
        return self.folder(Path()).as_posix()


def setting_name(target: str, sources: list[str]) -> str:
    return f"PURE-{target}" if not sources else "MIX-" + "-".join([target, *sources])


def plan(exp: ExperimentConfig, target: Cohort, sources: list[Cohort]) -> list[Cell]:
    """The protocol's runs: every (setting, method, split), split by split, PURE first."""
    names = [c.modality for c in sources]
    subsets = (
        exp.settings
        if exp.settings is not None
        else [list(s) for r in range(len(names) + 1) for s in itertools.combinations(names, r)]
    )
    for s in subsets:
        unknown = set(s) - set(names)
        if unknown:
            raise DuiitError(
                f"setting {s} names {sorted(unknown)}, which is not among the "
                f"sources ({', '.join(names) or 'none'})"
            )
    subsets = sorted(subsets, key=len)
    runs = []
    for k in range(exp.splits):
        for subset in subsets:
            chosen = tuple(n for n in names if n in subset)
            for m in exp.methods:
                if get_method(m).uses_sources == bool(subset):
                    runs.append(Cell(setting_name(target.modality, list(chosen)), chosen, m, k))
    if not runs:
        raise DuiitError(
            "the experiment has no run: check methods and settings (methods that "
            "use sources need a setting with sources)"
        )
    return runs


def quality_references(exp: ExperimentConfig, runs: list[Cell]) -> list[Cell]:
    """One reference cell per split that has a translating run to score."""
    if not exp.quality.enabled:
        return []
    splits = sorted({c.split for c in runs if c.translates})
    return [Cell(REFERENCE, (), "target_only", k) for k in splits]


def unfinished(cells: list[Cell], out: Path, quality: QualityConfig) -> list[Cell]:
    """The cells with work left: no result yet, or quality scores missing (a translating
    run's quality.json; a reference's features, which folders from before they were cached
    lack)."""

    def scored(cell: Cell) -> bool:
        if not quality.enabled:
            return True
        if cell.is_reference:
            return SplitReference.cached(cell.folder(out))
        return not cell.translates or quality_done(cell.folder(out))

    return [c for c in cells if not (c.folder(out) / "result.json").exists() or not scored(c)]


def phases(todo: list[Cell]) -> list[list[Cell]]:
    """The order cells run in. The quality references first, in a phase of their own:
    translations are scored with them. Then split by split, so that a grid stopped after
    any sitting holds complete splits that the report can pair method against method (a
    long grid's every translating run first left it with nothing to compare); within a
    split the longest runs first (translating, with most sources), so a worker idles only
    at the very end."""
    references = [c for c in todo if c.is_reference]
    runs = sorted(
        (c for c in todo if not c.is_reference),
        key=lambda c: (c.split, not c.translates, -len(c.sources)),
    )
    return [p for p in (references, runs) if p]


@dataclass
class Job:
    """What every cell of an experiment needs; sent to each worker once (pickled: faster
    than reading and resizing every file again, and no worker needs the data files)."""

    exp: ExperimentConfig
    cfg: Config
    target: Cohort
    sources: list[Cohort]


@dataclass
class Outcome:
    """How a cell ended: its result.json, or the one-line reason it failed."""

    cell: Cell
    result: dict[str, Any] | None = None
    error: str | None = None


ERROR_FILE = "error.txt"  # the traceback of a cell's last fault, in its folder


def run_cell(job: Job, cell: Cell, out: Path, lock_wait: float = 0.0) -> Outcome:
    """Run one cell in this process: fit and evaluate (resuming from the run's last
    checkpoint; a finished run is read back), then score its translations, or for a quality
    reference cache the features its split's runs are scored against. `lock_wait`: how long
    to wait for the run folder's lock (`runs.execute`).

    A failure is this cell's outcome, returned rather than raised, so the other cells need
    not stop for it: a DuiitError (bad input: a damaged checkpoint, a folder in use) with
    its one line, and any other exception (a fault: CUDA out of memory, a crash in a
    library) as its type and message, its traceback kept in the run folder (`ERROR_FILE`).
    Ray never sees either, so it does not retry them: a retry of bad input fails the same
    way, and a fault is for the user to look at. Under torchrun both stop the experiment,
    since every rank must run the same cells in step."""
    folder = cell.folder(out)
    try:
        result = _run(job, cell, out, lock_wait)
    except Exception as exc:
        if dist.is_initialized():
            raise
        if isinstance(exc, DuiitError):
            return Outcome(cell, error=str(exc))
        said = explain(exc)
        said = said if len(said) <= 300 else said[:297] + "..."
        try:  # the fault may be the disk's: the cell's outcome must not depend on this write
            write_text(traceback.format_exc(), folder / ERROR_FILE)
            kept = f"traceback in {folder / ERROR_FILE}"
        except (OSError, DuiitError) as unwritten:
            kept = f"its traceback could not be kept: {explain(unwritten)}"
        return Outcome(cell, error=f"{said} ({kept})")
    (folder / ERROR_FILE).unlink(missing_ok=True)
    return Outcome(cell, result=result)


def _run(job: Job, cell: Cell, out: Path, lock_wait: float) -> dict[str, Any]:
    run_dir = cell.folder(out)
    cfg = job.cfg.model_copy(deep=True)
    cfg.train.seed = cell.seed(job.cfg.train.seed)
    chosen = cell.pick(job.sources)
    result = execute(
        run_dir, cell.method, cfg, job.target, chosen, cell.split, quiet=True, lock_wait=lock_wait
    )
    quality = job.exp.quality
    if not quality.enabled or not is_main_process():
        return result
    if cell.is_reference:
        SplitReference.compute(run_dir, job.target, job.sources, quality, cfg).save(run_dir)
    elif cell.translates and (cell.reference().folder(out) / "model.pt").exists():
        # without its reference (its cell failed) the run stays unscored, for the next try
        score_run(run_dir, cell.reference().folder(out), job.target, chosen, quality, cfg)
    return result
