"""An experiment checks itself before it spends time: every method it lists gets runs, and
every split has a test part (parts too small for the statistics are said once, here, not
in each run)."""

from __future__ import annotations

from duiit.config import Config
from duiit.data import Cohort, split_cohort
from duiit.data.splits import check_parts, part_problems
from duiit.errors import DuiitError
from duiit.evaluation.experiment import ExperimentConfig
from duiit.evaluation.grid import Cell
from duiit.methods import get_method
from duiit.methods.base import label_match_weights, method_config, warn_coverage


def check_grid(
    exp: ExperimentConfig,
    cfg: Config,
    target: Cohort,
    sources: list[Cohort],
    runs: list[Cell],
    warn: bool = True,
) -> None:
    """Refuse a method that gets no run in the planned `runs` (its settings are missing) and
    splits without test images; warn (with `warn`) of the splits whose parts are too small
    and of sources that label matching leaves short of the target's labels."""
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
    for k in range(exp.splits):  # split k is every run's split with seed k (grid.Cell)
        split = split_cohort(target, cfg.data.split, seed=k, by=cfg.data.split_by)
        for problem in part_problems(split, target):
            problems.setdefault(problem, []).append(k)
    check_parts(problems, cfg.data.split, target, warn)
    if warn and any(method_config(m, cfg).predictor.match_labels for m in exp.methods):
        for source in sources:  # on the whole target: each run says it again, silenced
            warn_coverage(source.modality, label_match_weights(source, target)[1])
