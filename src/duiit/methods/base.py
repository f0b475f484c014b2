"""What every method shares: label coding, device-resident batches, the fitted model, the
registry. A method is a small class whose `fit` composes models and the training core."""

from __future__ import annotations

import math
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from duiit.config import Config, PredictorConfig, qualify, with_overrides
from duiit.data.cohort import Cohort
from duiit.errors import DuiitError, DuiitWarning
from duiit.evaluation.metrics import prediction_metrics
from duiit.methods.recipe import regression_loss
from duiit.models import Predictor, ResnetGenerator
from duiit.training.loop import LoopSettings, atomic_save, load_checkpoint
from duiit.training.runtime import Runtime, eval_mode


@dataclass
class LabelCodec:
    """Labels <-> network outputs. Regression trains on labels standardised with the target
    training set's mean/std and reports in label units; classes use cross-entropy."""

    classes: tuple[str, ...] | None = None
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, cohort: Cohort) -> LabelCodec:
        if cohort.is_classification:
            return cls(classes=cohort.classes)
        lab = cohort.labels.double()
        return cls(mean=float(lab.mean()), std=max(float(lab.std()), 1e-6) if len(lab) > 1 else 1.0)

    @property
    def out_dim(self) -> int:
        return 1 if self.classes is None else len(self.classes)

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        if self.classes is not None:
            return labels.long()
        return ((labels.double() - self.mean) / self.std).float()

    def loss(self, out: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
        """A loss on encoded labels: `kind` (mse, l1, huber) of standardised labels, or
        cross-entropy for classes. MSE is L_pred as the paper puts it (times `label_units`)."""
        if self.classes is not None:
            return F.cross_entropy(out.float(), target)
        return regression_loss(kind, out, target)

    @property
    def label_units(self) -> float:
        """The factor turning `loss` into label units: std² for regression (an MSE of
        standardised labels times std² is the MSE in years²), 1 for classes."""
        return 1.0 if self.classes is not None else self.std**2

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs -> label units (regression) or class indices."""
        if self.classes is not None:
            return out.argmax(dim=-1)
        return out.double() * self.std + self.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes) if self.classes else None,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelCodec:
        return cls(tuple(d["classes"]) if d["classes"] else None, d["mean"], d["std"])


class Batches:
    """A cohort resident on the device (float16 images, encoded labels); random batches are
    sliced there, so no per-step host work beyond drawing indices from a CPU generator."""

    def __init__(
        self,
        cohort: Cohort,
        codec: LabelCodec,
        rt: Runtime,
        images: torch.Tensor | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.images = (cohort.images if images is None else images).to(rt.device)
        self.labels = codec.encode(cohort.labels).to(rt.device)
        self.patient_ids = cohort.patient_ids
        self.rt = rt
        # Sampling weights (label matching); None: uniform.
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of n (with replacement, by `weights` when given); under torchrun
        every process draws the same global batch of n x processes and keeps its own slice,
        so N processes equal one with N times n."""
        rt = self.rt
        if self.weights is None:
            draw = torch.randint(len(self), (n * rt.world,), generator=gen)
        else:
            draw = torch.multinomial(self.weights, n * rt.world, replacement=True, generator=gen)
        idx = draw[rt.rank * n : (rt.rank + 1) * n]
        idx = idx.to(rt.device, non_blocking=True)
        return rt.batch(self.images[idx]), self.labels[idx]


def label_match_weights(source: Cohort, target: Cohort) -> tuple[np.ndarray, float]:
    """Sampling weights under which the source's labels follow the target's distribution
    (regression: the target's label deciles; classes: its class shares), and the share of
    the target's labels that the source covers at all: reweighting cannot create labels
    the source lacks (adult MRI cannot stand in for CT's children). Source labels beyond
    the target's range are never drawn."""
    if target.is_classification:
        tb, sb = target.labels.numpy().astype(int), source.labels.numpy().astype(int)
        bins, outside = len(target.classes or ()), np.zeros(len(sb), bool)
    else:
        tl, sl = target.labels.double().numpy(), source.labels.double().numpy()
        edges = np.quantile(tl, np.linspace(0, 1, 11)[1:-1])
        tb, sb = np.digitize(tl, edges), np.digitize(sl, edges)
        bins, outside = 10, (sl < tl.min()) | (sl > tl.max())  # beyond the target's range
    t = np.bincount(tb, minlength=bins) / len(tb)
    s = np.bincount(sb[~outside], minlength=bins)
    weights = np.where(outside, 0.0, t[sb] / np.maximum(s[sb], 1))
    if weights.sum() == 0:
        raise DuiitError(
            f"predictor.match_labels: no {source.modality} label falls where the target's "
            "labels are; turn matching off for this source"
        )
    return weights / weights.sum(), float(t[s > 0].sum())


def source_batches(
    source: Cohort,
    target: Cohort,
    codec: LabelCodec,
    cfg: Config,
    rt: Runtime,
) -> Batches:
    """A source's batches (its images: raw, or translated), drawn to match the target's
    labels when `predictor.match_labels` says so (with a warning when the source leaves
    more than a tenth of the target's labels uncovered)."""
    weights = None
    if cfg.predictor.match_labels:
        weights, covered = label_match_weights(source, target)
        warn_coverage(source.modality, covered)
    return Batches(source, codec, rt, weights=weights)


def warn_coverage(modality: str, covered: float) -> None:
    """Say when label matching leaves more than a tenth of the target's labels to the real
    target alone (a DuiitWarning: an experiment says it once, before its runs)."""
    if covered < 0.9:
        warnings.warn(
            f"predictor.match_labels: {modality}'s labels cover {covered:.0%} of the "
            "target's (by its deciles); the rest stays real-target only",
            DuiitWarning,
            stacklevel=2,
        )


def source_counts(p: PredictorConfig, sources: int) -> list[int]:
    """Source images per predictor step beside `batch_size` real target images, one count
    a source: `source_share` of the whole batch, split evenly (the first sources take the
    remainder), so 0.5 adds batch_size of them and 0 none."""
    total = round(p.batch_size * p.source_share / (1 - p.source_share))
    return [total // sources + (k < total % sources) for k in range(sources)]


def weighted_loss(
    codec: LabelCodec, kind: str, parts: list[tuple[torch.Tensor, torch.Tensor, float]]
) -> torch.Tensor:
    """The predictor's loss over parts of a batch (outputs, labels, weight of each image of
    the part): a weighted mean over images, so a part counts by its size times its weight
    (real target images weigh 1, source images `predictor.source_weight`)."""
    parts = [(o, y, w) for o, y, w in parts if y.shape[0] > 0]
    total = sum(codec.loss(o, y, kind) * (w * y.shape[0]) for o, y, w in parts)
    return total / max(sum(w * y.shape[0] for _, y, w in parts), 1e-12)


def in_batches(fn, images: torch.Tensor, rt: Runtime, batch: int = 64) -> torch.Tensor:
    """Apply `fn` to a (CPU) image tensor chunk by chunk on the device; results on the CPU."""
    outs = []
    for i in range(0, images.shape[0], batch):
        with rt.autocast():
            outs.append(fn(rt.batch(images[i : i + batch])).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def translate(generator: nn.Module, images: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Source images -> translated images (float16, CPU), generator in eval mode."""
    with eval_mode(generator):
        return in_batches(generator, images, rt).to(torch.float16)


def predictor_selection(
    predictor: Predictor, val: Batches, codec: LabelCodec, rt: Runtime
) -> dict[str, float]:
    """The model-selection criterion on the real target validation images: for regression
    the patient-level MAE (a patient's slice predictions averaged, as the report scores
    patients; in label units), for classes the cross-entropy. Slice MSE and MAE are logged."""
    with eval_mode(predictor):
        out = in_batches(predictor, val.images, rt)
    return selection_scores(out, val.labels.cpu(), codec, val.patient_ids)


def selection_scores(
    out: torch.Tensor, labels: torch.Tensor, codec: LabelCodec, patients: np.ndarray
) -> dict[str, float]:
    """`predictor_selection`'s scores from outputs already computed (encoded labels)."""
    if codec.classes is not None:
        return {"selection": float(codec.loss(out, labels))}
    scores = prediction_metrics(
        codec.decode(out).numpy(), codec.decode(labels).numpy(), None, patients
    )
    return {"selection": scores["patient_mae"], **scores}


def resolve_steps(cfg: Config, n_images: int) -> int:
    """The translator's steps: `train.steps`, or `train.epochs` passes over the largest
    cohort at `train.batch_size` (predictor stages follow `predictor.epochs`)."""
    if cfg.train.steps > 0:
        return cfg.train.steps
    return cfg.train.epochs * math.ceil(n_images / cfg.train.batch_size)


def loop_settings(
    cfg: Config, stage: str, steps: int, quiet: bool, eval_every: int | None = None
) -> LoopSettings:
    """The loop's settings from `train`; `eval_every` overrides train.eval_every (predictor
    stages validate once a pass over their data)."""
    t = cfg.train
    return LoopSettings(
        stage=stage,
        steps=steps,
        log_every=t.log_every,
        eval_every=eval_every or t.eval_every,
        ckpt_every=t.ckpt_every,
        sample_every=t.sample_every,
        decay_start=t.decay_start,
        quiet=quiet,
    )


def n_blocks(cfg: Config) -> int:
    from duiit.models import default_blocks

    return cfg.model.n_blocks or default_blocks(cfg.data.image_size)


@dataclass
class FittedModel:
    """What a method leaves behind: a predictor (with its label codec) and, for translating
    methods, the source -> target generators. The predictor is any module mapping images to
    outputs that `Predictor.arch`-style `arch` rebuilds (a network, or a classical model)."""

    predictor: nn.Module
    codec: LabelCodec
    translators: dict[str, ResnetGenerator] = field(default_factory=dict)
    translator_arch: dict[str, int] = field(default_factory=dict)

    def predict(
        self, images: torch.Tensor, rt: Runtime, patients: np.ndarray | None = None
    ) -> np.ndarray:
        """Images (N, 1, H, W) in [-1, 1] -> labels (regression) or class indices. A
        patient-level model (`stack_ridge`) predicts from each patient's whole stack and
        needs `patients`, each image's patient id."""
        if getattr(self.predictor, "per_patient", False):
            if patients is None:
                raise DuiitError(
                    f"{self.predictor.arch['network']} predicts a patient from the whole stack "
                    "of its slices: give each image's patient id"
                )
            return self.codec.decode(self.predictor.predict_stacks(images, patients)).numpy()
        self.predictor.to(rt.device)
        with eval_mode(self.predictor):
            out = in_batches(self.predictor, images, rt)
        return self.codec.decode(out).numpy()

    def save(self, path: Path) -> None:
        atomic_save(
            {
                "predictor": self.predictor.state_dict(),
                "codec": self.codec.to_dict(),
                "arch": self.predictor.arch,
                "heads": len(getattr(self.predictor, "heads", [])),
                "translators": {m: g.state_dict() for m, g in self.translators.items()},
                "translator_arch": self.translator_arch,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> FittedModel:
        if not path.exists() and (path.parent / "result.json").exists():
            raise DuiitError(
                f"{path.parent} is a finished run without its weights ({path.name}): a record "
                "of it (scripts/keep_runs.py leaves the weights out); use the run's own folder"
            )
        if not path.exists():
            raise DuiitError(f"{path} does not exist: is this a finished run folder?")
        s = load_checkpoint(path)
        codec = LabelCodec.from_dict(s["codec"])
        pred = rebuild_predictor(s, codec.out_dim)
        pred.load_state_dict(s["predictor"])
        gens = {}
        for m, state in s["translators"].items():
            gens[m] = ResnetGenerator(**s["translator_arch"])
            gens[m].load_state_dict(state)
        return cls(pred, codec, gens, s["translator_arch"])


def rebuild_predictor(saved: dict[str, Any], out_dim: int) -> nn.Module:
    """The empty predictor a saved model's `arch` describes (model.pt files from before the
    recipe name `backbone` and `width` and used BatchNorm)."""
    arch = saved.get("arch") or {
        "network": saved["backbone"],
        "width": saved["width"],
        "norm": "batch",
    }
    from duiit.methods.classical import CLASSICAL_MODELS  # classical imports this module

    if arch["network"] in CLASSICAL_MODELS:
        return CLASSICAL_MODELS[arch["network"]].empty(arch, out_dim)
    return Predictor(out_dim=out_dim, heads=saved["heads"], **arch)


class Method(ABC):
    """A way of using (or not) source modalities to train a target predictor."""

    name: ClassVar[str]
    uses_sources: ClassVar[bool]
    translates: ClassVar[bool] = False  # leaves source -> target generators behind
    description: ClassVar[str]
    # How its predictor learns: "stage" (the recipe's predictor.steps or epochs over the
    # target training images), "joint" (in DUIIT's loop, for the translator's train.steps),
    # "none" (no network: a fitted ridge).
    predictor_training: ClassVar[Literal["stage", "joint", "none"]] = "stage"

    def __init__(self, cfg: Config, rt: Runtime, quiet: bool = False) -> None:
        self.cfg, self.rt, self.quiet = cfg, rt, quiet

    @abstractmethod
    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        """Train on the target training split (+ sources), select on the validation split."""


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    REGISTRY[cls.name] = cls
    return cls


_SPEC = re.compile(r"^\s*(\w+)\s*(?:\[(.*)\])?\s*$")
_TOP_LEVEL_COMMA = re.compile(r",(?![^\[]*\])")


def parse_method(spec: str) -> tuple[str, list[str]]:
    """A method with settings of its own, as an experiment file may name it:
    `duiit[lambda_pred=0.01, model.ngf=32]` -> ("duiit", ["train.lambda_pred=0.01",
    "model.ngf=32"]). A λ sweep is then a list of such names, not new code."""
    match = _SPEC.match(spec)
    if match is None:
        raise DuiitError(f"method {spec!r} is not of the form name or name[key=value, ...]")
    name, inner = match.group(1), match.group(2) or ""
    # Commas inside a list value (`augment=[flip, shift]`) do not separate settings.
    items = [i for i in (part.strip() for part in _TOP_LEVEL_COMMA.split(inner)) if i]
    return name, [qualify(i, f"method {spec!r}") for i in items]


def get_method(spec: str) -> type[Method]:
    """The method class a name (or a `name[key=value]` variant) runs; variant settings are
    checked against the configuration's keys and types here, before any work."""
    import duiit.methods  # noqa: F401  (registers every method)

    name, overrides = parse_method(spec)
    if name not in REGISTRY:
        raise DuiitError(f"unknown method {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    if overrides:
        with_overrides(Config(), overrides, f"settings of method {spec!r}")
    return REGISTRY[name]


def method_config(spec: str, cfg: Config) -> Config:
    """The configuration a method (variant) runs with: `cfg` plus the variant's settings."""
    _, overrides = parse_method(spec)
    return with_overrides(cfg, overrides, f"settings of method {spec!r}") if overrides else cfg


def method_folder(spec: str) -> str:
    """A run-folder name: `duiit[lambda_pred=0.01]` -> `duiit-lambda_pred=0.01`."""
    name, overrides = parse_method(spec)
    parts = [o.split(".", 1)[1].replace("/", "_").replace(" ", "") for o in overrides]
    return "-".join([name, *parts])
