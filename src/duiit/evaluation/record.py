"""experiment.yaml: the record of the settings an experiment folder's runs were made with,
and the check that a re-run keeps them, so the record always describes the runs beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from duiit.config import Config, changed_keys, deep_merge
from duiit.data import Cohort
from duiit.errors import DuiitError
from duiit.evaluation.experiment import ExperimentConfig
from duiit.evaluation.grid import plan
from duiit.files import read_json

# Keys of an experiment record that may change when a folder is run again: report choices
# (`run` and `preset` are compared as the configuration they resolve to) and the grid, which
# may grow.
_REPORT_ONLY = ("ours", "alpha", "preset", "run")
_GRID = ("methods", "settings", "splits")


def experiment_record(exp: ExperimentConfig, cfg: Config) -> dict[str, Any]:
    """What experiment.yaml holds: the experiment file as resolved, and the run settings."""
    return json.loads(exp.model_dump_json()) | {"resolved_run": cfg.model_dump(mode="json")}


def _folders(exp: ExperimentConfig, target: Cohort, sources: list[Cohort]) -> set[str]:
    return {str(cell) for cell in plan(exp, target, sources)}


def _runs_precision(out: Path) -> str | None:
    """What the folder's finished runs computed in ('bf16' or 'fp32', from their env.json),
    None without any; a folder already mixing both is refused, since its runs compare unlike."""
    found = {
        "bf16" if read_json(env).get("bf16") else "fp32"
        for env in sorted(out.glob("*/**/split-*/env.json"))
        if (env.parent / "result.json").exists()
    }
    if len(found) > 1:
        raise DuiitError(
            f"experiment folder {out} holds runs trained in bf16 and runs trained in fp32 "
            "(their env.json): their scores compare unlike; re-run one kind (delete those run "
            "folders and pass run.train.precision=bf16 or fp32), or use another --out"
        )
    return found.pop() if found else None


def check_record(
    out: Path,
    record: dict[str, Any],
    exp: ExperimentConfig,
    target: Cohort,
    sources: list[Cohort],
    precision_note: str,
) -> None:
    """Refuse to continue an experiment folder with settings other than its runs were made
    with, naming the differing keys, so experiment.yaml always describes the runs beside it.
    More methods, settings or splits (more runs, same run settings) extend a sweep and are
    allowed; dropping some of the folder's runs from the file is refused, since its report
    would still show them. `precision_note` says what train.precision=auto means here."""
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
    train = old["resolved_run"]["train"]
    if train["precision"] == "auto":  # recorded before the grid settled it (settle_precision)
        train["precision"] = _runs_precision(out) or record["resolved_run"]["train"]["precision"]
    free = {*_REPORT_ONLY, *_GRID}
    changed = changed_keys(
        {k: v for k, v in old.items() if k not in free},
        {k: v for k, v in record.items() if k not in free},
    )
    if changed:
        shown = "; ".join(c.replace("resolved_run.", "run.", 1) for c in changed)
        hint = ""
        if any(c.startswith("resolved_run.train.precision:") for c in changed):
            hint = (
                f" (precision: train.precision=auto means {precision_note} on this machine; "
                f"run.train.precision={train['precision']} continues the folder as its runs "
                "were made)"
            )
        raise DuiitError(
            f"experiment folder {out} was made with other settings ({shown}){hint}; its runs "
            f"would no longer match {path}. Use another --out for the new settings, or "
            "restore them to continue this folder"
        )
    before = exp.model_copy(update={k: old[k] for k in _GRID if k in old})
    dropped = sorted(_folders(before, target, sources) - _folders(exp, target, sources))
    if dropped:
        raise DuiitError(
            f"experiment folder {out} holds {len(dropped)} run(s) that this file leaves out "
            f"(e.g. {dropped[0]}); a folder only grows: keep its methods, settings and "
            "splits (adding more is fine), or use another --out"
        )
