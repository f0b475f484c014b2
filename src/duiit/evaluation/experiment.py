"""The experiment file: what a user writes to run the paper's protocol, validated up front.

Only the schema and its reading live here; `grid.py` turns an experiment into cells, and
`runner.py` runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from duiit.config import Config, deep_merge, load_config, parse_overrides, read_mapping, validate_as
from duiit.errors import DuiitError
from duiit.methods import get_method
from duiit.methods.base import method_folder

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
        {}, description="run configuration: data/model/predictor/train sections"
    )
    quality: QualityConfig = QualityConfig()

    @field_validator("run", mode="before")
    @classmethod
    def _run_sections(cls, v: object) -> object:
        """`run: {colour: red}` is an unknown key, not a value that should be a mapping."""
        if isinstance(v, dict):
            unknown = sorted(set(v) - set(Config.model_fields), key=str)
            if unknown:
                allowed = ", ".join(Config.model_fields)
                raise ValueError(f"unknown key {unknown[0]!r}; allowed here: {allowed}")
        return v


def _refuse_repeats(exp: ExperimentConfig, path: Path) -> None:
    """A method or setting listed twice would run twice into one folder (the progress
    counting both, the results one): refused, naming it."""
    for what, items in (
        ("methods name", [method_folder(m) for m in exp.methods]),
        ("settings list", [sorted(s) for s in exp.settings or []]),
    ):
        for i, item in enumerate(items):
            if item in items[:i]:
                raise DuiitError(
                    f"experiment file {path}: {what} {item} twice; each runs once per split, "
                    "so drop the repeat"
                )


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
    _refuse_repeats(exp, path)
    if exp.ours not in exp.methods:
        raise DuiitError(f"ours={exp.ours!r} is not among methods {exp.methods}")
    run_overrides = [f"{s}.{k}={json.dumps(v)}" for s, d in exp.run.items() for k, v in d.items()]
    cfg = load_config(None, run_overrides, exp.preset)
    return exp, cfg
