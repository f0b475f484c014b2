"""How good are the translations? FID/IS on a pluggable feature extractor (torchmetrics).

Two extractors: the standard FID Inception network (needs torch-fidelity + torchvision and a
local weights file: the optional `inception` extra), and, needing nothing external, the
penultimate features of a predictor trained on real target images ("task FID"). Plus task
consistency: the error of that real-target predictor on translated images.

In an experiment that predictor is the split's quality reference (`SplitReference`); what it
computes from real target and raw source images is the same for every run of the split, so
it is computed once per split and cached beside the reference; `score_run` scores one run.
The real target images of a split's FIDs are its validation and test patients' (`held_out`):
its training patients' images are what the translators' discriminators learnt as real, so a
FID against them would reward fitting those images rather than the modality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from duiit.config import Config
from duiit.data import Cohort, split_cohort
from duiit.errors import DuiitError
from duiit.evaluation.experiment import QualityConfig
from duiit.files import read_json, write_json
from duiit.methods import FittedModel
from duiit.methods.base import translate
from duiit.models import Predictor
from duiit.training.loop import atomic_save, load_checkpoint
from duiit.training.runtime import Runtime


class PredictorFeatures(nn.Module):
    """Feature extractor for torchmetrics: [0, 1] images -> a predictor's pooled features."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor.eval()
        self.num_features = predictor.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictor.features(images.float() * 2 - 1).double()


# The states of torchmetrics' FID that hold the real images' features: their sum, the sum of
# their outer products and their count (float64).
_REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


def _fid_metric(extractor: nn.Module) -> tuple[FrechetInceptionDistance, torch.device]:
    """A FID metric on the extractor's device: the metric (whose feature sums torchmetrics
    keeps where the metric lives) and each batch are moved there. An extractor without
    weights computes where its input lies: on the CPU."""
    device = next((t.device for t in extractor.parameters()), torch.device("cpu"))
    metric = FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=True)
    return metric.to(device).eval(), device


def _add(
    metric: FrechetInceptionDistance,
    images: torch.Tensor,
    real: bool,
    device: torch.device,
    batch: int,
) -> None:
    """Feed images in [-1, 1] (CPU float16) to the metric, `batch` at a time."""
    with torch.no_grad():
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch].to(device).float()
            metric.update(((chunk + 1) / 2).clamp(0, 1), real=real)


def real_statistics(
    real: torch.Tensor, extractor: nn.Module, batch: int = 128
) -> dict[str, torch.Tensor]:
    """The extractor's feature statistics of a real image set, as FID keeps them (CPU)."""
    metric, device = _fid_metric(extractor)
    _add(metric, real, True, device, batch)
    return {name: getattr(metric, name).cpu() for name in _REAL_STATES}


def fid_to(
    real: dict[str, torch.Tensor], fake: torch.Tensor, extractor: nn.Module, batch: int = 128
) -> float:
    """Fréchet distance between a real set, given by its `real_statistics`, and the
    extractor's features of `fake` (images in [-1, 1])."""
    metric, device = _fid_metric(extractor)
    for name, value in real.items():
        setattr(metric, name, value.to(device))
    _add(metric, fake, False, device, batch)
    with torch.no_grad():
        return float(metric.compute())


def fid(real: torch.Tensor, fake: torch.Tensor, extractor: nn.Module, batch: int = 128) -> float:
    """Fréchet distance between the extractor's features of two image sets in [-1, 1]."""
    return fid_to(real_statistics(real, extractor, batch), fake, extractor, batch)


def inception_scores(real: torch.Tensor, fake: torch.Tensor, weights: Path) -> dict[str, float]:
    """Standard FID and Inception Score with the FID Inception network from a local file.

    Raises DuiitError with the reason where torch-fidelity/torchvision are missing (they do
    not import beside the CPU-only torch wheel) or the weights file is absent.
    """
    if not Path(weights).is_file():
        raise DuiitError(
            f"Inception weights {weights} not found; point quality.inception_weights "
            "at a local copy of pt_inception-2015-12-05 weights"
        )
    try:
        from torchmetrics.image.inception import InceptionScore
    except (ImportError, RuntimeError) as exc:
        raise DuiitError(
            f"standard FID/IS need the optional extra: pip install 'duiit[inception]' "
            f"on a CUDA-enabled torch ({exc})"
        ) from None
    to_rgb = lambda x: ((x.float() + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)  # noqa: E731
    try:
        fid_metric = FrechetInceptionDistance(
            feature=2048, feature_extractor_weights_path=str(weights)
        )
        is_metric = InceptionScore(
            feature="logits_unbiased", feature_extractor_weights_path=str(weights)
        )
    except (ImportError, ModuleNotFoundError, RuntimeError) as exc:
        raise DuiitError(
            f"standard FID/IS need the optional extra: pip install 'duiit[inception]' "
            f"on a CUDA-enabled torch ({exc})"
        ) from None
    with torch.no_grad():
        fid_metric.update(to_rgb(real), real=True)
        fid_metric.update(to_rgb(fake), real=False)
        is_metric.update(to_rgb(fake))
        is_mean, is_std = is_metric.compute()
    return {
        "fid_inception": float(fid_metric.compute()),
        "is_mean": float(is_mean),
        "is_std": float(is_std),
    }


FEATURES = "quality-features.pt"


def scored_sample(cohort: Cohort, max_images: int) -> Cohort:
    """The source images a run's translations are scored on: at most `max_images`, evenly
    spaced; the same images for every run."""
    step = max(1, len(cohort) // max_images)
    return cohort.subset(list(range(0, len(cohort), step))[:max_images])


def held_out(target: Cohort, reference: Path, cfg: Config) -> Cohort:
    """The split's real target images that no run of it trained on: its validation and test
    patients', the split being the quality reference's (`split_seed` of its result.json)."""
    seed = read_json(reference / "result.json")["split_seed"]
    split = split_cohort(target, cfg.data.split, seed=seed, by=cfg.data.split_by)
    return target.subset(np.concatenate([split.val, split.test]))


class SplitReference:
    """A split's quality reference and what every run of the split is scored against: its
    feature statistics of the split's held-out real target images (`held_out`) and the task
    FID of each raw source. Both
    are the same for every translating run of the split, so the reference's cell computes
    them once and saves them beside the reference's model (`quality-features.pt`)."""

    def __init__(
        self,
        model: FittedModel,
        rt: Runtime,
        real: dict[str, torch.Tensor],
        raw_fid: dict[str, float],
    ) -> None:
        self.model, self.rt, self.real, self.raw_fid = model, rt, real, raw_fid
        self.features = PredictorFeatures(model.predictor.to(rt.device))

    @classmethod
    def compute(
        cls, folder: Path, target: Cohort, sources: list[Cohort], q: QualityConfig, cfg: Config
    ) -> SplitReference:
        """From the reference's model in `folder`: features of the split's held-out real
        target images, and the task FID of every source's scored sample before translation."""
        model, rt = FittedModel.load(folder / "model.pt"), Runtime.from_config(cfg.train)
        features = PredictorFeatures(model.predictor.to(rt.device))
        real = real_statistics(held_out(target, folder, cfg).images, features)
        raw = {
            c.modality: fid_to(real, scored_sample(c, q.max_images).images, features)
            for c in sources
        }
        return cls(model, rt, real, raw)

    @classmethod
    def load(
        cls, folder: Path, target: Cohort, sources: list[Cohort], q: QualityConfig, cfg: Config
    ) -> SplitReference:
        """The reference as its cell cached it; computed here (the same numbers) where the
        cache is absent, e.g. for a folder older than the cache."""
        if not cls.cached(folder):
            return cls.compute(folder, target, sources, q, cfg)
        saved = load_checkpoint(folder / FEATURES)
        model = FittedModel.load(folder / "model.pt")
        return cls(model, Runtime.from_config(cfg.train), saved["real"], saved["task_fid_raw"])

    @staticmethod
    def cached(folder: Path) -> bool:
        return (folder / FEATURES).exists()

    def save(self, folder: Path) -> None:
        atomic_save({"real": self.real, "task_fid_raw": self.raw_fid}, folder / FEATURES)

    def scores(self, sample: Cohort, translated: torch.Tensor) -> dict[str, float]:
        """Task FID of a source's translated sample (and of the raw sample, for scale) and
        consistency: the reference's error (MSE, or accuracy for classes) on the translated
        images against the source labels."""
        m = sample.modality
        pred = self.model.predict(translated, self.rt)
        true = sample.labels.numpy()
        regression = self.model.codec.classes is None
        consistency = ((pred - true) ** 2).mean() if regression else (pred == true).mean()
        return {
            f"task_fid_{m}": fid_to(self.real, translated, self.features),
            f"task_fid_raw_{m}": self.raw_fid[m],
            f"consistency_{m}": float(consistency),
        }


def quality_done(run_dir: Path) -> bool:
    """A run's translations are scored: quality.json is written last, after the examples
    (translations.pt), which records of a run may leave out (results/README.md)."""
    return (run_dir / "quality.json").exists()


def score_run(
    run_dir: Path,
    reference: Path,
    target: Cohort,
    sources: list[Cohort],
    q: QualityConfig,
    cfg: Config,
) -> dict[str, Any]:
    """Scores of one translating run's translations against its split's quality reference
    (the folder `reference`) and held-out real target images, saved as quality.json, plus
    the fixed examples (translations.pt) that the report's translation grids show."""
    path = run_dir / "quality.json"
    if quality_done(run_dir):
        return read_json(path)
    rt = Runtime.from_config(cfg.train)
    fitted = FittedModel.load(run_dir / "model.pt")
    ref = SplitReference.load(reference, target, sources, q, cfg)
    quality: dict[str, Any] = {"notes": []}
    examples = {}
    for c in sources:
        sample = scored_sample(c, q.max_images)
        fake = translate(fitted.translators[c.modality].to(rt.device), sample.images, rt)
        examples[c.modality] = {"source": sample.images[:8].clone(), "translated": fake[:8].clone()}
        quality.update(ref.scores(sample, fake))
        if q.inception_weights is not None:
            try:
                real = held_out(target, reference, cfg).images
                scores = inception_scores(real, fake, q.inception_weights)
                quality.update({f"{k}_{c.modality}": v for k, v in scores.items()})
            except DuiitError as exc:
                quality["notes"].append(str(exc))
    atomic_save(examples, run_dir / "translations.pt")
    write_json(quality, path)
    return quality
