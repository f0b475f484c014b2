"""Run configuration: defaults < preset < YAML file < dotted `key=value` overrides.

Validated up front (pydantic, unknown keys forbidden) so a typo fails before any work,
with a message naming the bad key and the allowed keys or values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from duiit.errors import DuiitError
from duiit.files import write_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    image_size: int = Field(64, ge=8, le=1024, description="square side after resizing, px")
    hu_window: tuple[float, float] = Field((40.0, 80.0), description="CT window (level, width)")
    hu_modalities: list[str] = Field(["CT"], description="modalities scaled by the HU window")
    percentiles: tuple[float, float] = Field((0.5, 99.5), description="robust range, non-CT")
    units: Literal["auto", "hu", "display", "raw"] = Field(
        "auto",
        description="what pixel values are: hu (CT numbers: hu_window), raw (physical non-CT "
        "units: percentiles per file), display (an already windowed 8/16-bit image: mapped "
        "linearly, never re-windowed); auto: integer PNG/JPEG/TIFF are display, DICOM/NIfTI/"
        "NPY/float TIFF are hu for hu_modalities, else raw. A manifest's units column wins",
    )
    display_window: tuple[float, float] | None = Field(
        None,
        description="HU window (level, width) that display images of hu_modalities were saved "
        "with (CT-ICH JPGs: [40, 120]); they are mapped back to HU, then hu_window applies, so "
        "they match DICOM/NIfTI files. null: the display range maps to [-1, 1]. A manifest's "
        "display_window column (40/120) wins",
    )
    channel: int | Literal["mean"] = Field(
        1,
        description="channel of multi-channel images (index, or mean). 1 = FLAIR in the LGG "
        "MRI slices (pre-contrast, FLAIR, post-contrast), the one sequence real in every case; "
        "a colour image of a grey scan has equal channels, so any index gives the grey. A "
        "manifest's channel column wins",
    )
    split: tuple[float, float, float] = Field(
        (0.77, 0.11, 0.12),
        description="train/val/test: fractions of the images (scaled to sum to 1), or image "
        "counts when all three are whole numbers summing to more than 1, e.g. [1887, 271, 280] "
        "(the images beyond them are in no part)",
    )
    slices_per_patient: int = Field(
        0,
        ge=0,
        description="at most this many images per patient, evenly spaced through its slices "
        "(ends excluded); 0 keeps all. Evens out patients with whole stacks beside single slices",
    )
    source_min_foreground: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="sources only: leave out source slices whose head covers less than this "
        "share of the image (the near-empty ends of whole MRI stacks); the target is never "
        "filtered, so its test set stays as given",
    )
    split_by: Literal["patient", "image"] = "patient"
    disjoint_patients: bool = Field(True, description="refuse a patient id in two modalities")
    task: Literal["auto", "regression", "classification"] = "auto"

    @field_validator("display_window")
    @classmethod
    def _positive_width(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[1] <= 0:
            raise ValueError("the width (second value) must be positive, e.g. [40, 120]")
        return v

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, v: object) -> object:
        if v == "mean" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        raise ValueError("give a channel index (0, 1, 2, ...) or mean")

    def is_hu(self, modality: str) -> bool:
        """Whether a modality's physical units are CT numbers (windowed in HU)."""
        return modality.upper() in {m.upper() for m in self.hu_modalities}

    @field_validator("image_size")
    @classmethod
    def _fits_the_generator(cls, v: int) -> int:
        """Checked here because the generator would fail only at the first training step."""
        if v % 4:
            lower = v - v % 4
            raise ValueError(
                f"{v} is not a multiple of 4, which the generator needs (it halves the "
                f"image twice and doubles it back); use {lower} or {lower + 4}"
            )
        return v


class ModelConfig(_Strict):
    translator: Literal["cyclegan", "cut", "fastcut"] = Field(
        "cyclegan",
        description="the unpaired translator: cyclegan (the paper's: G and F, cycle loss, a "
        "discriminator per domain), cut (Park et al. 2020: one generator, PatchNCE between "
        "input and output patches, identity NCE on target images) or fastcut (CUT with "
        "lambda_NCE 10 and no identity NCE)",
    )
    ngf: int = Field(64, ge=4, description="generator base width")
    ndf: int = Field(64, ge=4, description="discriminator base width")
    n_blocks: int = Field(0, ge=0, description="residual blocks; 0: 6 at <=128 px, 9 above")


class PredictorConfig(_Strict):
    """How the predictor is built and trained: one recipe that every method shares (a method
    changes what data the predictor sees, never how it learns). The defaults are the recipe
    of docs/results-real.md's learning study on CT-ICH."""

    network: Literal["resnet10", "resnet18", "resnet34", "resnet50", "cnn"] = Field(
        "resnet50",
        description="backbone: a MONAI 2-D ResNet (the paper's ResNet-50 by default) or cnn, "
        "a plain 4-block convolutional network",
    )
    width: float = Field(1.0, gt=0, le=4, description="channel width factor of the backbone")
    norm: Literal["batch", "group", "instance"] = Field(
        "group",
        description="normalisation layers: group (8 groups; independent of the batch, so small "
        "batches and several processes behave alike) or batch (BatchNorm, the torchvision "
        "default, noisy at small batches)",
    )
    weights: str | None = Field(
        None,
        description="a checkpoint file to start from (ImageNet ResNet weights as torchvision "
        "or timm save them, or a duiit model.pt); a 3-channel first convolution is summed to 1 "
        "channel; a table says which layers matched",
    )
    batch_size: int = Field(32, ge=1, description="real target images per predictor step")
    epochs: int = Field(
        12,
        ge=1,
        description="passes over the real target training images at batch_size (predictor "
        "stages; TL's pre-training: over the largest source; in DUIIT's joint loop the "
        "translator's train.steps decide)",
    )
    steps: int = Field(0, ge=0, description="predictor-stage steps; 0: epochs x passes")
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(
        1e-3,
        gt=0,
        description="peak learning rate (1e-3: a lower test MSE than 2e-3 on 9 of 10 CT-ICH "
        "splits in the learning study, q 0.044; 5e-3 higher)",
    )
    weight_decay: float = Field(
        1e-2, ge=0, description="decoupled (AdamW); with adam an L2 penalty"
    )
    schedule: Literal["onecycle", "cosine", "constant"] = Field(
        "onecycle",
        description="learning-rate schedule over the stage: onecycle (warm-up then cosine "
        "annealing), cosine (linear warm-up, cosine to 0) or constant",
    )
    warmup: float = Field(0.3, ge=0, lt=1, description="fraction of the steps warming up")
    loss: Literal["mse", "l1", "huber"] = Field(
        "mse",
        description="regression loss on standardised labels (classes: cross-entropy): mse, "
        "the score every report ranks by (l1 aims at the median, which skewed labels pull "
        "away from the mean). DUIIT's task gradient into G is always the MSE in label "
        "units, as the paper's L_pred",
    )
    augment: list[Literal["flip", "shift", "affine", "intensity"]] = Field(
        ["flip", "affine"],
        description="training-time augmentation of every image the predictor learns from: "
        "flip (left-right), shift (rotation 10 degrees, shift 6 %: a head keeps its size in "
        "pixels), affine (shift + scale 0.9-1.1), intensity (brightness/contrast jitter); "
        "never at validation or test time",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the head")
    mixup: float = Field(
        0.0, ge=0, description="mixup alpha (regression: images and labels mixed); 0: off"
    )
    source_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of each predictor batch made of source images (translated, or raw "
        "for MTL/DANN) beside the batch_size real target images, split evenly among the "
        "sources: 0.5 adds batch_size of them, 0.25 a third of it, 0 none; the same in DUIIT's "
        "joint loop and in translate-then-train",
    )
    source_weight: float = Field(
        1.0,
        ge=0,
        description="loss weight of a source image relative to a real target image in the "
        "predictor's loss (a weighted mean); DUIIT's task gradient into G is not affected",
    )
    domain_weight: float = Field(
        1.0,
        ge=0,
        description="DANN: the gradient reversal's final weight on the domain loss, reached "
        "by Ganin et al.'s ramp 2/(1+exp(-10p))-1 over training (theirs: 1); lower keeps "
        "more of what tells the modalities apart",
    )
    match_labels: bool = Field(
        False,
        description="draw source images so that their labels follow the target training set's "
        "distribution (regression: the target's label deciles; classes: its class shares); "
        "reweights what the sources cover, cannot create labels they lack",
    )


class TrainConfig(_Strict):
    steps: int = Field(0, ge=0, description="optimiser steps; 0: epochs x steps per epoch")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(4, ge=1)
    lr_translator: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 of the translator")
    lambda_pred: float = Field(
        1e-3,
        ge=0,
        description="weight of L_pred in G's objective, L_pred in label units as the paper "
        "puts it (regression: the MSE in years² for ages; the paper's lambda is 1e-3). The "
        "predictor itself learns on standardised labels",
    )
    lambda_cyc: float = Field(10.0, ge=0, description="cycle loss weight (cyclegan)")
    lambda_identity: float = Field(
        0.5,
        ge=0,
        description="cyclegan: identity loss L1(G(x), x) + L1(F(y), y) as a fraction of "
        "lambda_cyc (CycleGAN's convention: 0.5 weighs it 5 beside the cycle's 10); 0 disables",
    )
    lambda_sem: float = Field(
        1.0,
        ge=0,
        description="cycada: weight of the frozen predictor's loss (on standardised labels, "
        "or cross-entropy) in G's objective",
    )
    pool_size: int | None = Field(
        None,
        ge=0,
        description="past fakes the discriminators also see; null: each translator's own "
        "(cyclegan 50, cut and fastcut 0, as their authors)",
    )
    decay_start: float = Field(0.5, ge=0, le=1, description="fraction of steps before LR decay")
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(100, ge=1)
    ckpt_every: int = Field(200, ge=1)
    sample_every: int = Field(200, ge=1)
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32"
    )
    fast: bool = Field(
        True, description="fast path: bf16 where native, fused Adam; on CUDA torch.compile"
    )
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile; auto: GPU")
    channels_last: bool = Field(
        False, description="channels-last tensors and weights (slower on CPU; GPU: measure)"
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: object) -> object:
        """YAML reads `on`/`off` as booleans; take them as meant."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class Config(_Strict):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    predictor: PredictorConfig = PredictorConfig()
    train: TrainConfig = TrainConfig()


# Keys that moved into the predictor section: their new place, for the error message.
MOVED = {
    "model.predictor": "predictor.network",
    "model.width": "predictor.width",
    "train.lr_predictor": "predictor.lr",
}


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a laptop CPU: tiny images and networks, enough to see learning happen.
    "cpu-demo": {
        "data": {"image_size": 32},
        "model": {"ngf": 16, "ndf": 16, "n_blocks": 3},
        "predictor": {"network": "resnet10", "width": 0.5, "epochs": 6},
        "train": {
            "steps": 300,
            "batch_size": 8,
            "eval_every": 50,
            "ckpt_every": 100,
            "sample_every": 100,
            "log_every": 10,
        },
    },
    # The paper's architecture and optimiser: 256 px, 9 blocks, ResNet-50, batch 1.
    "paper": {
        "data": {"image_size": 256},
        "model": {"ngf": 64, "ndf": 64, "n_blocks": 0},
        "predictor": {"network": "resnet50"},
        "train": {
            "steps": 0,
            "epochs": 100,
            "batch_size": 1,
            "eval_every": 1000,
            "ckpt_every": 2000,
            "sample_every": 2000,
            "log_every": 50,
        },
    },
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `train.steps=100`-style strings into a nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DuiitError(
                f"override {item!r} is not of the form section.key=value "
                "(for example train.steps=200)"
            )
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DuiitError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return tree


def qualify(item: str, origin: str) -> str:
    """`lambda_pred=0.01` -> `train.lambda_pred=0.01`: a bare key names the one section that
    has it; a dotted key is kept as it is (validation checks it later)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise DuiitError(f"{origin}: {item!r} is not of the form key=value")
    if "." in key:
        return f"{key}={value.strip()}"
    sections = [name for name, f in Config.model_fields.items() if key in f.annotation.model_fields]
    if len(sections) > 1:
        named = " or ".join(f"{s}.{key}" for s in sections)
        raise DuiitError(f"{origin}: setting {key!r} is in more than one section: give {named}")
    if not sections:
        known = sorted({k for f in Config.model_fields.values() for k in f.annotation.model_fields})
        raise DuiitError(f"{origin}: unknown setting {key!r}; known: {', '.join(known)}")
    return f"{sections[0]}.{key}={value.strip()}"


def with_overrides(cfg: Config, overrides: list[str], origin: str) -> Config:
    """A copy of `cfg` with dotted overrides applied, validated like any configuration."""
    raw = deep_merge(cfg.model_dump(mode="json"), parse_overrides(overrides))
    return validate(raw, origin)


M = TypeVar("M", bound=BaseModel)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def validate_as(model: type[M], raw: dict[str, Any], origin: str) -> M:
    """Validate a nested dict as `model`, naming each bad key and what it accepts, in one
    line (the CLI shows errors as one line)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden" and key in MOVED:
                msg = f"moved to {MOVED[key]}"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown key; allowed here: {', '.join(_allowed_keys(model, err['loc']))}"
            elif err["type"] == "value_error":
                msg = str(err["ctx"]["error"])
            problems.append(f"{key}: {msg}")
        raise DuiitError(f"invalid {origin}: " + "; ".join(problems)) from None


def validate(raw: dict[str, Any], origin: str = "configuration") -> Config:
    """Validate a run configuration."""
    return validate_as(Config, raw, origin)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"{key!r} is given twice (lines {first} and {again}); keep one")


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the
    last silently, so a second `methods:` further down a file would undo the first. Keys
    merged in with `<<: *anchor` may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool):
                if key in first:
                    raise _DuplicateKey(key, first[key], line)
                first[key] = line
        return super().construct_mapping(node, deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: where, what, and where the construct that
    broke began (an unclosed bracket or quote is found only at the end of the file)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return ": " + " ".join(str(exc).split())
    mark = exc.problem_mark
    text = f" at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context:
        began = exc.context_mark
        text += f" ({exc.context}" + (f" begun on line {began.line + 1})" if began else ")")
    return text + "; check the brackets, quotes and indentation there"


def read_mapping(path: Path, what: str, shape: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping, with one-line errors naming it (`what` says
    which kind of file, `shape` what it should look like); a key given twice is an error."""
    try:
        loaded = yaml.load(path.read_text(), Loader=_UniqueKeys) or {}
    except FileNotFoundError:
        raise DuiitError(f"{what} {path} does not exist") from None
    except _DuplicateKey as exc:
        raise DuiitError(f"{what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise DuiitError(f"{what} {path} is not valid YAML{_yaml_problem(exc)}") from None
    if not isinstance(loaded, dict):
        raise DuiitError(f"{what} {path} must hold a mapping ({shape})")
    return loaded


def load_config(
    path: Path | None = None, overrides: list[str] | None = None, preset: str | None = None
) -> Config:
    """Resolve the configuration of a run from its layers."""
    raw: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise DuiitError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        raw = deep_merge(raw, PRESETS[preset])
    if path is not None:
        raw = deep_merge(raw, read_mapping(Path(path), "config file", "section: {key: value}"))
    raw = deep_merge(raw, parse_overrides(overrides or []))
    return validate(raw, "configuration" if path is None else f"configuration in {path}")


def save_config(config: Config, path: Path) -> None:
    """Write the resolved configuration, so a run folder says exactly how it was made."""
    write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), path)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings, with both values
    (`train.steps: 6 -> 5`); a key present on one side only counts as changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(set(old) | set(new), key=str)
            for change in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old} -> {new}"]
