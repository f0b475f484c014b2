"""An experiment checks itself before it spends time: every method it lists gets runs, and
every split has a test part (parts too small for the statistics, predictors trained for
unequal lengths and co-trained predictors that skip mixup are said once, here, not in each
run)."""

from __future__ import annotations

import warnings

from duiit.config import Config
from duiit.data import Cohort, split_cohort
from duiit.data.splits import check_parts, part_problems
from duiit.errors import DuiitError, DuiitWarning
from duiit.evaluation.experiment import ExperimentConfig
from duiit.evaluation.grid import Cell
from duiit.methods import get_method
from duiit.methods.base import label_match_weights, method_config, resolve_steps, warn_coverage
from duiit.methods.duiit import warn_unmixed
from duiit.methods.recipe import predictor_steps


def check_grid(
    exp: ExperimentConfig,
    cfg: Config,
    target: Cohort,
    sources: list[Cohort],
    runs: list[Cell],
    warn: bool = True,
) -> None:
    """Refuse a method that gets no run in the planned `runs` (its settings are missing) and
    splits without test images; warn (with `warn`) of the splits whose parts are too small,
    of sources that label matching leaves short of the target's labels, and of predictors
    trained for unequal lengths."""
    planned = {c.method for c in runs}
    for method in exp.methods:
        if method in planned:
            continue
        if not get_method(method).uses_sources:
            why, fix = "no sources, so it runs only in the setting without them", "add [] to"
        elif sources:
            why, fix = (
                "sources, so it runs only in settings with them",
                f"add [{sources[0].modality}] to",
            )
        else:
            why, fix = "sources, and the experiment has none", "give sources in"
        raise DuiitError(
            f"method {method} gets no run: it uses {why}; {fix} settings, or drop the method"
        )
    problems: dict[str, list[int]] = {}
    n_train = 0
    for k in range(exp.splits):  # split k is every run's split with seed k (grid.Cell)
        split = split_cohort(target, cfg.data.split, seed=k, by=cfg.data.split_by)
        n_train = n_train or len(split.train)
        for problem in part_problems(split, target):
            problems.setdefault(problem, []).append(k)
    check_parts(problems, cfg.data.split, target, warn)
    if warn:
        warn_training_lengths(sorted(planned, key=exp.methods.index), cfg, n_train, sources)
        unmixed = [
            m
            for m in exp.methods
            if get_method(m).predictor_training == "joint"
            and method_config(m, cfg).predictor.mixup > 0
        ]
        if unmixed:  # each run says it again, silenced
            what = f"the co-trained predictor of {', '.join(unmixed)}"
            warn_unmixed(method_config(unmixed[0], cfg), what)
    if warn and any(method_config(m, cfg).predictor.match_labels for m in exp.methods):
        for source in sources:  # on the whole target: each run says it again, silenced
            warn_coverage(source.modality, label_match_weights(source, target)[1])


def training_steps(method: str, cfg: Config, n_train: int, sources: list[Cohort]) -> int | None:
    """The steps a method's (last) predictor trains for on `n_train` target training images:
    the joint loop's (the translator's train.steps, or its epochs over the largest cohort) for
    DUIIT's co-trained predictor, the recipe's stage otherwise; None for a fitted ridge."""
    kind = get_method(method).predictor_training
    mcfg = method_config(method, cfg)
    if kind == "joint":
        return resolve_steps(mcfg, max([n_train, *(len(c) for c in sources)]))
    if kind == "stage":
        return predictor_steps(mcfg.predictor, n_train)
    return None


def warn_training_lengths(
    methods: list[str], cfg: Config, n_train: int, sources: list[Cohort]
) -> None:
    """Say when the experiment's predictors train for lengths more than 1.5x apart: a method
    compared with another then differs by its training as well (typically DUIIT's
    co-trained predictor, which follows the translator's train.steps, against predictor
    stages of predictor.epochs passes over a small target set)."""
    steps = {m: s for m in methods if (s := training_steps(m, cfg, n_train, sources))}
    if not steps or max(steps.values()) <= 1.5 * min(steps.values()):
        return
    by_length: dict[int, list[str]] = {}
    joint, stage = [], []
    for method, n in steps.items():
        by_length.setdefault(n, []).append(method)
        (joint if get_method(method).predictor_training == "joint" else stage).append(n)
    listed = "; ".join(f"{n} steps: {', '.join(ms)}" for n, ms in sorted(by_length.items()))
    # predictor.steps sets every stage's length (not the joint loop's): match the joint loop
    fix = f"set run.predictor.steps={max(joint or stage)}"
    if joint and stage:
        fix += f" (or run.train.steps={max(stage)}, which also sets the translators' length)"
    warnings.warn(
        f"the predictors of this experiment train for unequal lengths on split 0's {n_train} "
        f"target training images ({listed}), so methods differ by their training as well: "
        "a predictor stage takes predictor.steps, or predictor.epochs passes at "
        "predictor.batch_size, and DUIIT's co-trained predictor the translator's train.steps; "
        f"{fix} so that they match",
        DuiitWarning,
        stacklevel=2,
    )
