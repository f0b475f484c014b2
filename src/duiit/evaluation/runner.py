"""The paper's protocol as one job: settings x methods x repeated patient-level splits.

Each (setting, method, split) is its own run folder under `runs/`; a finished run (its
result.json exists) is skipped, so an interrupted sweep resumes where it stopped. Splits are
shared across methods (split k uses seed k), which makes the comparisons paired.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing as mp
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from duiit.config import (
    Config,
    changed_keys,
    deep_merge,
    load_config,
    parse_overrides,
    read_mapping,
    validate_as,
)
from duiit.data import Cohort, load_cohorts
from duiit.errors import DuiitError, DuiitWarning
from duiit.evaluation.quality import PredictorFeatures, fid, inception_scores
from duiit.files import folder_lock, read_json, write_csv, write_json, write_text
from duiit.methods import FittedModel, get_method
from duiit.methods.base import method_folder, translate
from duiit.runs import check_method_fits, execute
from duiit.training.loop import atomic_save
from duiit.training.runtime import Runtime, barrier, distributed_job, is_main_process

ALL_METHODS = [
    "duiit",
    "cyclegan",
    "target_only",
    "transfer",
    "multitask",
    "dann",
    "simple_augment",
    "autoaugment",
    "random_erasing",
]


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    max_images: int = Field(200, ge=2, description="translated images scored per source")
    inception_weights: Path | None = Field(None, description="local FID Inception weights")


class ExperimentConfig(BaseModel):
    """An experiment file. Paths are relative to the file."""

    model_config = ConfigDict(extra="forbid")
    target: Path
    sources: list[Path] = []
    methods: list[str] = ALL_METHODS
    settings: list[list[str]] | None = Field(
        None, description="source subsets to run; default: none (PURE) and every non-empty one"
    )
    splits: int = Field(10, ge=1)
    ours: str = "duiit"
    alpha: float = Field(0.1, gt=0, lt=1)
    preset: str | None = None
    run: dict[str, dict[str, Any]] = Field(
        {}, description="run configuration: data/model/train sections"
    )
    quality: QualityConfig = QualityConfig()


def load_experiment(
    path: Path, overrides: list[str] | None = None
) -> tuple[ExperimentConfig, Config]:
    """Read and validate an experiment file; `run.*` overrides reach the run configuration."""
    path = Path(path)
    raw = read_mapping(path, "experiment file", "key: value")
    raw = deep_merge(raw, parse_overrides(overrides or []))
    exp = validate_as(ExperimentConfig, raw, f"experiment file {path}")
    base = path.parent
    exp.target = (base / exp.target).resolve()
    exp.sources = [(base / s).resolve() for s in exp.sources]
    for m in [*exp.methods, exp.ours]:
        get_method(m)
    if exp.ours not in exp.methods:
        raise DuiitError(f"ours={exp.ours!r} is not among methods {exp.methods}")
    run_overrides = [f"{s}.{k}={json.dumps(v)}" for s, d in exp.run.items() for k, v in d.items()]
    cfg = load_config(None, run_overrides, exp.preset)
    return exp, cfg


def setting_name(target: str, sources: list[str]) -> str:
    return f"PURE-{target}" if not sources else "MIX-" + "-".join([target, *sources])


def plan(
    exp: ExperimentConfig, target: Cohort, sources: list[Cohort]
) -> list[tuple[str, list[Cohort], str, int]]:
    """(setting, its sources, method, split) for every run, split by split, PURE first."""
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
    grid = []
    for k in range(exp.splits):
        for subset in subsets:
            chosen = [c for c in sources if c.modality in subset]
            for m in exp.methods:
                if get_method(m).uses_sources == bool(subset):
                    grid.append((setting_name(target.modality, subset), chosen, m, k))
    if not grid:
        raise DuiitError(
            "the experiment has no run: check methods and settings (methods that "
            "use sources need a setting with sources)"
        )
    return grid


def run_quality(
    run_dir: Path,
    reference: Path | None,
    target: Cohort,
    sources: list[Cohort],
    exp: ExperimentConfig,
    cfg: Config,
) -> dict[str, Any]:
    """Scores of one translating run's translations, saved as quality.json, plus the fixed
    examples (translations.pt) that the report's translation grids show."""
    path = run_dir / "quality.json"
    if quality_done(run_dir):
        return read_json(path)
    rt = Runtime.from_config(cfg.train)
    fitted = FittedModel.load(run_dir / "model.pt")
    ref = FittedModel.load(reference) if reference is not None and reference.exists() else None
    quality: dict[str, Any] = {"notes": []}
    examples = {}
    for c in sources:
        step = max(1, len(c) // exp.quality.max_images)
        src = c.subset(list(range(0, len(c), step))[: exp.quality.max_images])
        fake = translate(fitted.translators[c.modality].to(rt.device), src.images, rt)
        examples[c.modality] = {"source": src.images[:8].clone(), "translated": fake[:8].clone()}
        if ref is not None:
            feats = PredictorFeatures(ref.predictor.to(rt.device))
            quality[f"task_fid_{c.modality}"] = fid(target.images, fake, feats)
            quality[f"task_fid_raw_{c.modality}"] = fid(target.images, src.images, feats)
            pred = ref.predict(fake, rt)
            true = src.labels.numpy()
            quality[f"consistency_{c.modality}"] = float(
                ((pred - true) ** 2).mean() if ref.codec.classes is None else (pred == true).mean()
            )
        if exp.quality.inception_weights is not None:
            try:
                scores = inception_scores(target.images, fake, exp.quality.inception_weights)
                quality.update({f"{k}_{c.modality}": v for k, v in scores.items()})
            except DuiitError as exc:
                quality["notes"].append(str(exc))
    if ref is None:
        quality["notes"].append(
            f"task FID and consistency need the split's quality reference ({reference})"
        )
    atomic_save(examples, run_dir / "translations.pt")
    write_json(quality, path)
    return quality


def quality_done(run_dir: Path) -> bool:
    """Both files of a run's quality scoring are there (quality.json is written last)."""
    return (run_dir / "quality.json").exists() and (run_dir / "translations.pt").exists()


def collect(out: Path) -> pd.DataFrame:
    """All finished runs of an experiment folder as one table (one row per run)."""
    rows = []
    for result_path in sorted((out / "runs").glob("*/*/split-*/result.json")):
        r = read_json(result_path)
        run_dir = result_path.parent
        row = {
            "setting": run_dir.parent.parent.name,
            "method": r["method"],
            "split": r["split_seed"],
            "target": r["target"],
            "sources": "+".join(r["sources"]),
            "n_train": r["n"]["train"],
            "n_test": r["n"]["test"],
            "fit_seconds": r["fit_seconds"],
            **r["metrics"],
            "run_dir": str(run_dir),
        }
        q = run_dir / "quality.json"
        if q.exists():
            row.update({k: v for k, v in read_json(q).items() if k != "notes"})
        rows.append(row)
    return pd.DataFrame(rows)


def run_path(out: Path, setting: str, method: str, split: int) -> Path:
    """The folder of one (setting, method, split) run of an experiment."""
    if setting == REFERENCE:
        return out / "references" / f"split-{split:02d}"
    return out / "runs" / setting / method_folder(method) / f"split-{split:02d}"


# The quality reference of a split: a target-only predictor with a seed of its own, so that
# no method trained against it (cycada's frozen network is the split's target_only recipe
# with the run's seed; scored by that same network, its consistency would be the loss it
# minimised). Its seed is offset from the runs' by this much.
REFERENCE = "quality-reference"
REFERENCE_SEED_OFFSET = 7919


def quality_references(
    exp: ExperimentConfig, grid: list[tuple[str, list[Cohort], str, int]]
) -> list[tuple[str, list[Cohort], str, int]]:
    """One reference cell per split that has a translating run to score."""
    if not exp.quality.enabled:
        return []
    splits = sorted({k for _, _, m, k in grid if get_method(m).translates})
    return [(REFERENCE, [], "target_only", k) for k in splits]


_WORKER: dict[str, Any] = {}


def _worker_init(
    exp: ExperimentConfig,
    cfg: Config,
    target: Cohort,
    sources: list[Cohort],
    threads: int,
    devices: Any,
) -> None:
    """Each worker process gets the experiment and the loaded cohorts once (pickled: faster
    than reading and resizing every file again) and takes one device from the queue."""
    warnings.simplefilter("ignore", DuiitWarning)  # the parent has shown the data's warnings
    torch.set_num_threads(threads)
    device = devices.get()
    if device != "default":
        cfg = cfg.model_copy(deep=True)
        cfg.train.device = device
    _WORKER.update(exp=exp, cfg=cfg, target=target, sources=sources)


def _run_one(out: Path, setting: str, names: list[str], method: str, k: int) -> dict[str, Any]:
    """One grid cell: fit + evaluate (+ translation quality), in this process's state."""
    exp, cfg, target = _WORKER["exp"], _WORKER["cfg"], _WORKER["target"]
    chosen = [c for c in _WORKER["sources"] if c.modality in names]
    run_dir = run_path(out, setting, method, k)
    run_cfg = cfg.model_copy(deep=True)
    run_cfg.train.seed = cfg.train.seed + k
    if setting == REFERENCE:
        run_cfg.train.seed += REFERENCE_SEED_OFFSET
    result = execute(run_dir, method, run_cfg, target, chosen, split_seed=k, quiet=True)
    if exp.quality.enabled and get_method(method).translates and is_main_process():
        reference = run_path(out, REFERENCE, "target_only", k) / "model.pt"
        run_quality(run_dir, reference, target, chosen, exp, run_cfg)
    return result


def _devices(cfg: Config, workers: int) -> list[str]:
    """One device per worker: GPUs round-robin when several are visible, else the default."""
    n_gpu = torch.cuda.device_count() if cfg.train.device == "auto" else 0
    return [f"cuda:{i % n_gpu}" for i in range(workers)] if n_gpu > 1 else ["default"] * workers


# Keys of an experiment record that may change when a folder is run again: report choices
# (`run` and `preset` are compared as the configuration they resolve to) and the grid, which
# may grow.
_REPORT_ONLY = ("ours", "alpha", "preset", "run")
_GRID = ("methods", "settings", "splits")


def experiment_record(exp: ExperimentConfig, cfg: Config) -> dict[str, Any]:
    """What experiment.yaml holds: the experiment file as resolved, and the run settings."""
    return json.loads(exp.model_dump_json()) | {"resolved_run": cfg.model_dump(mode="json")}


def _cells(exp: ExperimentConfig, target: Cohort, sources: list[Cohort]) -> set[str]:
    return {run_path(Path(), s, m, k).as_posix() for s, _, m, k in plan(exp, target, sources)}


def check_record(
    out: Path,
    record: dict[str, Any],
    exp: ExperimentConfig,
    target: Cohort,
    sources: list[Cohort],
) -> None:
    """Refuse to continue an experiment folder with settings other than its runs were made
    with, naming the differing keys, so experiment.yaml always describes the runs beside it.
    More methods, settings or splits (more runs, same run settings) extend a sweep and are
    allowed; dropping some of the folder's runs from the file is refused, since its report
    would still show them."""
    path = out / "experiment.yaml"
    if not path.exists():
        return
    try:
        old = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        old = None
    if not isinstance(old, dict):
        raise DuiitError(
            f"{path} is damaged; restore it, or use another --out for a fresh experiment"
        )
    old["target"] = str(Path(old.get("target", "")).resolve())  # records of older versions
    old["sources"] = [str(Path(p).resolve()) for p in old.get("sources", [])]
    # A run setting added after the record was written counts at its default.
    old["resolved_run"] = deep_merge(Config().model_dump(mode="json"), old.get("resolved_run", {}))
    free = {*_REPORT_ONLY, *_GRID}
    changed = changed_keys(
        {k: v for k, v in old.items() if k not in free},
        {k: v for k, v in record.items() if k not in free},
    )
    if changed:
        shown = "; ".join(c.replace("resolved_run.", "run.", 1) for c in changed)
        raise DuiitError(
            f"experiment folder {out} was made with other settings ({shown}); its runs "
            f"would no longer match {path}. Use another --out for the new settings, or "
            "restore them to continue this folder"
        )
    before = exp.model_copy(update={k: old[k] for k in _GRID if k in old})
    dropped = sorted(_cells(before, target, sources) - _cells(exp, target, sources))
    if dropped:
        raise DuiitError(
            f"experiment folder {out} holds {len(dropped)} run(s) that this file leaves out "
            f"(e.g. {dropped[0]}); a folder only grows: keep its methods, settings and "
            "splits (adding more is fine), or use another --out"
        )


def run_experiment(
    config_path: Path,
    out: Path,
    overrides: list[str] | None = None,
    quiet: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """Run (or resume, or extend) the whole grid; returns the per-run results table.

    Every input is checked before anything is written; the folder is then locked for this
    process and its record compared with the new settings (`check_record`). With `workers`
    > 1 the independent runs fan out over that many processes (each with its share of CPU
    threads, or its own GPU when several are visible). Each split's quality reference (a
    target-only predictor of its own seed, under references/) is trained first, since
    translation quality is scored with it.
    """
    out = Path(out)
    exp, cfg = load_experiment(config_path, overrides)
    with contextlib.ExitStack() as stack:
        rank, world = stack.enter_context(distributed_job())
        main = rank == 0
        if workers > 1 and world > 1:
            raise DuiitError(
                "--workers fans runs out over processes; under torchrun each run "
                "already uses every process: use one or the other"
            )
        target, sources = load_cohorts(exp.target, exp.sources, cfg.data, quiet=quiet)
        grid = plan(exp, target, sources)
        for method in exp.methods:
            check_method_fits(method, cfg)
        if main:
            stack.enter_context(folder_lock(out, "experiment folder"))
        record = experiment_record(exp, cfg)
        check_record(out, record, exp, target, sources)
        barrier()  # every rank has read the old record
        if main:
            write_text(yaml.safe_dump(record, sort_keys=False), out / "experiment.yaml")
        _run_grid(exp, cfg, out, grid, target, sources, quiet, workers)
        results = collect(out)
        if main:
            write_csv(results, out / "runs.csv")
    return results


def _run_grid(
    exp: ExperimentConfig,
    cfg: Config,
    out: Path,
    grid: list[tuple[str, list[Cohort], str, int]],
    target: Cohort,
    sources: list[Cohort],
    quiet: bool,
    workers: int,
) -> None:
    """Run the unfinished cells of `grid`, in this process or over `workers` processes."""
    main = is_main_process()
    console = Console(quiet=quiet or not main)
    references = quality_references(exp, grid)
    cells = [*references, *grid]
    finished = {
        (s, m, k) for s, _, m, k in cells if (run_path(out, s, m, k) / "result.json").exists()
    }
    todo = [
        (s, [c.modality for c in ch], m, k)
        for s, ch, m, k in cells
        if (s, m, k) not in finished
        or (
            get_method(m).translates
            and exp.quality.enabled
            and not quality_done(run_path(out, s, m, k))
        )
    ]
    console.print(f"precision: {Runtime.from_config(cfg.train).precision_note}", highlight=False)
    console.print(
        f"{len(grid)} runs and {len(references)} quality references "
        f"({len(cells) - len(todo)} already finished) -> {out}"
        + (f" with {workers} workers" if workers > 1 else "")
    )
    # The quality references first: translations are scored with them. Then the longest
    # runs first (translating, with most sources), so no worker idles at the end while
    # another finishes a long run.
    first = [t for t in todo if t[0] == REFERENCE]
    rest = [t for t in todo if t[0] != REFERENCE]
    phases = [
        first,
        sorted(rest, key=lambda t: (get_method(t[2]).translates, len(t[1])), reverse=True),
    ]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        bar = progress.add_task("experiment", total=len(cells), completed=len(cells) - len(todo))

        def report(cell: tuple[str, list[str], str, int], result: dict[str, Any]) -> None:
            setting, _, method, k = cell
            metrics = "  ".join(f"{n} {v:.4g}" for n, v in result["metrics"].items())
            progress.console.print(
                f"{setting:24s} {method:15s} split {k}: {metrics} ({result['fit_seconds']:.0f}s)"
            )
            progress.advance(bar)

        if workers <= 1:
            _WORKER.update(exp=exp, cfg=cfg, target=target, sources=sources)
            for cell in (c for phase in phases for c in phase):
                report(cell, _run_one(out, *cell))
        else:
            ctx = mp.get_context("spawn")
            devices = ctx.Queue()
            for d in _devices(cfg, workers):
                devices.put(d)
            threads = max(1, torch.get_num_threads() // workers)
            with ProcessPoolExecutor(
                workers,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(exp, cfg, target, sources, threads, devices),
            ) as pool:
                for phase in phases:
                    futures = {pool.submit(_run_one, out, *cell): cell for cell in phase}
                    for fut in as_completed(futures):
                        report(futures[fut], fut.result())
