"""The classical baselines: hand-made image features -> a scikit-learn model, methods like
any other (`features_ridge` and `features_boost` per slice, `stack_ridge` per patient).

What `features_ridge` sees, per slice and nothing else: the head (pixels above the window's
floor, holes filled, the largest connected piece) and inside it the share of bright pixels
at the top of the window (bone in a brain window), of mid-grey (brain) and of dark (fluid,
fat) pixels, an intensity histogram and its moments, and the head's size and shape (area,
bounding box, axis lengths, eccentricity, solidity, compactness; scikit-image's
`regionprops`). What it cannot see: texture and anatomy beyond those counts, the slice's
place in its stack and the patient's other slices (a patient's prediction is the mean of
its slices', as for every slice predictor). `stack_ridge` sees a patient's whole stack:
twelve of those features summarised over its slices (mean, maximum, upper quartile,
spread) and the slice count, one row a patient, one prediction a patient; it needs whole
stacks at prediction time too. Ridge regression (regression labels, standardised) or
multinomial logistic regression (classes), with the strength chosen by 5-fold
cross-validation grouped by patient on the training patients only. `features_boost` fits
gradient-boosted trees (scikit-learn's `GradientBoostingRegressor` / `Classifier`) to the
slice features instead: interactions and thresholds a linear model cannot draw (a share
that means one age in a low slice and another high up), its size (trees, depth, rate, leaf
size) chosen by the same grouped cross-validation. A fitted model is stored as tensors
(feature scaling and coefficients, or the trees' nodes), so `model.pt` loads without
pickle.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from skimage.measure import regionprops
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from duiit.data.cohort import Cohort
from duiit.errors import DuiitError, DuiitWarning
from duiit.files import write_text
from duiit.methods.base import (
    FittedModel,
    LabelCodec,
    Method,
    register,
    selection_scores,
)
from duiit.training.loop import MetricsLog, atomic_save, load_checkpoint

HIST_BINS = 12
FEATURES = [
    "head_area",
    "bone_share",
    "brain_share",
    "dark_share",
    "bone_area",
    "brain_area",
    "mean",
    "std",
    "p10",
    "p50",
    "p90",
    "bbox_height",
    "bbox_width",
    "major_axis",
    "minor_axis",
    "eccentricity",
    "solidity",
    "compactness",
    *[f"hist_{k}" for k in range(HIST_BINS)],
]
# What `stack_ridge` summarises over a patient's stack: the head's size and content shares,
# its extent, and its intensity level and spread (chosen before any stack model was fitted;
# the shape measures and the histogram are left out so that ~60 training patients face 49
# columns, not 121).
STACK_BASE = [*FEATURES[:6], *FEATURES[11:15], "mean", "std"]
STACK_SUMMARIES = ("mean", "max", "q75", "sd")
STACK_COLUMNS = [f"{f}_{s}" for s in STACK_SUMMARIES for f in STACK_BASE] + ["slices"]


def slice_features(image: np.ndarray) -> np.ndarray:
    """The features of one slice (H, W) in [-1, 1] (see the module doc), sizes as fractions
    of the image so they do not depend on its pixel count."""
    h, w = image.shape
    mask = ndimage.binary_fill_holes(image > -0.95)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(len(FEATURES))
    largest = 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    head = labels == largest
    v = image[head]
    area = head.sum()
    bone, dark = v >= 0.95, v <= -0.5
    brain = ~bone & ~dark
    (region,) = regionprops(head.astype(np.uint8))
    r0, c0, r1, c1 = region.bbox
    hist = np.histogram(v, bins=HIST_BINS, range=(-1, 1))[0] / area
    return np.array(
        [
            area / (h * w),
            bone.mean(),
            brain.mean(),
            dark.mean(),
            bone.sum() / (h * w),
            brain.sum() / (h * w),
            v.mean(),
            v.std(),
            *np.percentile(v, [10, 50, 90]),
            (r1 - r0) / h,
            (c1 - c0) / w,
            region.axis_major_length / max(h, w),
            region.axis_minor_length / max(h, w),
            region.eccentricity,
            region.solidity,
            region.perimeter**2 / (4 * np.pi * area),
            *hist,
        ]
    )


def image_features(images: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) images -> (N, features)."""
    arr = images.float().cpu().numpy()[:, 0]
    return np.stack([slice_features(a) for a in arr]) if len(arr) else np.zeros((0, len(FEATURES)))


class ClassicalModel(nn.Module):
    """A fitted scikit-learn estimator as tensors, so it predicts, saves and loads as the
    network predictors do (outputs in the codec's space: standardised labels, or class
    logits). Subclasses say how they are fitted (`fitted`) and how they map a feature matrix
    to outputs (`outputs`)."""

    network: str
    columns = FEATURES  # what a row of the fitted matrix holds (classical.json)

    def __init__(self, arch: dict[str, Any], out_dim: int) -> None:
        super().__init__()
        self.arch = {"network": self.network, **arch}
        self.out_dim = out_dim

    @classmethod
    def empty(cls, arch: dict[str, Any], out_dim: int) -> ClassicalModel:
        """The model with the shapes `arch` names, its tensors to be loaded."""
        return cls(arch, out_dim)

    @classmethod
    def fitted(
        cls, x: np.ndarray, y: np.ndarray, groups: np.ndarray, codec: LabelCodec
    ) -> tuple[ClassicalModel, dict[str, Any]]:
        """Fitted to features `x` and encoded labels `y` (CV folds grouped by `groups`), and
        what the fit chose (classical.json)."""
        raise NotImplementedError

    def outputs(self, x: np.ndarray) -> torch.Tensor:
        """A feature matrix -> outputs (CPU, float32)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.outputs(image_features(images)).to(images.device)

    @classmethod
    def featurise(cls, cohort: Cohort) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        """What the model is fitted on: (features, labels, CV groups), a row per slice."""
        return image_features(cohort.images), cohort.labels, cohort.patient_ids

    def scores(self, cohort: Cohort) -> torch.Tensor:
        """Outputs for each image of a cohort."""
        return self.outputs(image_features(cohort.images))


class FeatureModel(ClassicalModel):
    """Features -> standardisation -> linear map (ridge, or logistic regression)."""

    network = "features_ridge"

    def __init__(self, arch: dict[str, Any], out_dim: int) -> None:
        super().__init__(arch, out_dim)
        n = arch["n_features"]
        self.register_buffer("center", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n, dtype=torch.float64))
        self.register_buffer("coef", torch.zeros(out_dim, n, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(out_dim, dtype=torch.float64))

    @classmethod
    def fitted(
        cls, x: np.ndarray, y: np.ndarray, groups: np.ndarray, codec: LabelCodec
    ) -> tuple[FeatureModel, dict[str, Any]]:
        search = grouped_search(x, y, groups, codec.classes is not None)
        scaler, est = search.best_estimator_.steps[0][1], search.best_estimator_.steps[1][1]
        model = cls({"n_features": x.shape[1]}, codec.out_dim)
        coef = np.atleast_2d(est.coef_)
        intercept = np.atleast_1d(est.intercept_)
        if codec.classes is not None and len(codec.classes) == 2:  # sklearn's one binary logit
            coef, intercept = np.vstack([0 * coef, coef]), np.r_[0.0, intercept]
        model.center.copy_(torch.from_numpy(scaler.mean_))
        model.scale.copy_(torch.from_numpy(scaler.scale_))
        model.coef.copy_(torch.from_numpy(coef))
        model.intercept.copy_(torch.from_numpy(intercept))
        return model, search_info(search, est)

    def outputs(self, x: np.ndarray) -> torch.Tensor:
        x64 = torch.from_numpy(x).to(self.coef.device)
        out = (((x64 - self.center) / self.scale) @ self.coef.T + self.intercept).float().cpu()
        return out.squeeze(-1) if self.out_dim == 1 else out


# `features_boost`'s search, kept to four fits a fold (a fit on ~2000 slices takes seconds):
# 100 or 300 trees, two or three levels deep; a slow rate, leaves of at least 20 slices
BOOST_GRID = {"n_estimators": [100, 300], "max_depth": [2, 3]}
BOOST_FIXED = {"learning_rate": 0.05, "min_samples_leaf": 20, "init": "zero", "random_state": 0}


class BoostModel(ClassicalModel):
    """Slice features -> gradient-boosted regression trees, the trees' nodes as tensors
    (one row a tree, padded to the largest): an output is the learning rate times the sum
    of its trees' leaf values (fitted from zero: `init="zero"`), as scikit-learn computes
    it, features compared in float32 as it does."""

    network = "features_boost"

    def __init__(self, arch: dict[str, Any], out_dim: int) -> None:
        super().__init__(arch, out_dim)
        shape = (arch["trees"], arch["nodes"])
        self.register_buffer("feature", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("left", torch.full(shape, -1, dtype=torch.long))
        self.register_buffer("right", torch.full(shape, -1, dtype=torch.long))
        self.register_buffer("value", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("output", torch.zeros(arch["trees"], dtype=torch.long))
        self.register_buffer("rate", torch.zeros((), dtype=torch.float64))

    @classmethod
    def fitted(
        cls, x: np.ndarray, y: np.ndarray, groups: np.ndarray, codec: LabelCodec
    ) -> tuple[BoostModel, dict[str, Any]]:
        classes = codec.classes is not None
        kind = GradientBoostingClassifier if classes else GradientBoostingRegressor
        search = GridSearchCV(
            kind(**BOOST_FIXED),
            BOOST_GRID,
            cv=patient_folds(groups),
            scoring="neg_log_loss" if classes else "neg_mean_squared_error",
        )
        search.fit(x, y, groups=groups)
        est = search.best_estimator_
        # a stage's trees: one (regression, two classes: the second class's logit) or one a
        # class (its logit), in the order of the classes the fit saw
        cols = [0] if not classes else [1] if len(est.classes_) == 2 else list(est.classes_)
        trees = [
            (est.estimators_[i, k].tree_, int(cols[k]))
            for i in range(est.estimators_.shape[0])
            for k in range(est.estimators_.shape[1])
        ]
        arch = {
            "n_features": x.shape[1],
            "trees": len(trees),
            "nodes": max(t.node_count for t, _ in trees),
            "depth": int(est.max_depth),
        }
        model = cls(arch, codec.out_dim)
        for row, (tree, col) in enumerate(trees):
            n = tree.node_count
            model.feature[row, :n] = torch.from_numpy(tree.feature.clip(min=0).astype(np.int64))
            model.threshold[row, :n] = torch.from_numpy(tree.threshold)
            model.left[row, :n] = torch.from_numpy(tree.children_left.astype(np.int64))
            model.right[row, :n] = torch.from_numpy(tree.children_right.astype(np.int64))
            model.value[row, :n] = torch.from_numpy(tree.value[:, 0, 0])
            model.output[row] = col
        model.rate.fill_(est.learning_rate)
        info = search_info(search, est)
        info["importance"] = dict(
            zip(cls.columns, est.feature_importances_.round(4).tolist(), strict=True)
        )
        return model, info

    def outputs(self, x: np.ndarray) -> torch.Tensor:
        device = self.value.device
        x64 = torch.from_numpy(x.astype(np.float32)).to(device, torch.float64)
        rows = torch.arange(len(x64), device=device)[:, None]
        trees = torch.arange(self.arch["trees"], device=device)[None, :]
        node = torch.zeros(len(x64), self.arch["trees"], dtype=torch.long, device=device)
        for _ in range(self.arch["depth"]):  # down one level a pass; a leaf stays put
            left = self.left[trees, node]
            goes_left = x64[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            step = torch.where(goes_left, left, self.right[trees, node])
            node = torch.where(left < 0, node, step)
        leaves = self.value[trees, node] * self.rate
        out = torch.zeros(len(x64), self.out_dim, dtype=torch.float64, device=device)
        out.index_add_(1, self.output, leaves)
        out = out.float().cpu()
        return out.squeeze(-1) if self.out_dim == 1 else out


def stack_features(features: np.ndarray, patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slice features -> one row per patient (ids sorted): each of `STACK_BASE`'s mean, max,
    upper quartile and spread over the patient's stack, and its number of slices."""
    frame = pd.DataFrame(features[:, [FEATURES.index(c) for c in STACK_BASE]])
    groups = frame.groupby(np.asarray(patients), sort=True)
    parts = [groups.mean(), groups.max(), groups.quantile(0.75), groups.std().fillna(0.0)]
    sizes = groups.size()
    x = np.hstack([part.to_numpy() for part in parts] + [sizes.to_numpy()[:, None]])
    return sizes.index.to_numpy(), x.astype(np.float64)


class StackModel(FeatureModel):
    """The patient-level baseline: a patient's stack summary (`stack_features`) -> the
    linear map; every slice of a patient gets the patient's prediction."""

    network = "stack_ridge"
    columns = STACK_COLUMNS
    per_patient = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise DuiitError("stack_ridge predicts a patient from its whole stack: use predict_stacks")

    def predict_stacks(self, images: torch.Tensor, patients: np.ndarray) -> torch.Tensor:
        """Images with their patient ids -> each image's output (its patient's). A patient
        with half the slices or fewer of the training patients' mean (a partial stack, or files
        that are each their own patient) is predicted, with a warning: its summary is
        unlike any the model was fitted on."""
        ids, x = stack_features(image_features(images), patients)
        few = x[:, -1] <= 0.5 * float(self.center[-1])
        if few.any():
            warnings.warn(
                f"stack_ridge: {few.sum()} of {len(ids)} patients (first: {ids[few][0]}, "
                f"{int(x[few][0, -1])} slices) have at most half the training patients' mean "
                f"of {float(self.center[-1]):.0f} slices: their predictions come from "
                "partial stacks (give each patient's whole stack, one patient_id per patient)",
                DuiitWarning,
                stacklevel=2,
            )
        rows = pd.Index(ids).get_indexer(np.asarray(patients))
        assert (rows >= 0).all()  # every image's patient is among the stacks
        return self.outputs(x)[rows]

    @classmethod
    def featurise(cls, cohort: Cohort) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        ids, x = stack_features(image_features(cohort.images), cohort.patient_ids)
        frame = pd.DataFrame({"p": cohort.patient_ids, "y": cohort.labels.numpy()})
        mixed = frame.groupby("p")["y"].nunique()
        if (mixed > 1).any():
            first = mixed[mixed > 1].index[0]
            raise DuiitError(
                f"stack_ridge predicts one label a patient, but patient {first} "
                "has slices with different labels: use features_ridge (per slice) for this task"
            )
        labels = torch.tensor(frame.groupby("p")["y"].first().loc[ids].to_numpy())
        return x, labels.to(cohort.labels.dtype), ids

    def scores(self, cohort: Cohort) -> torch.Tensor:
        return self.predict_stacks(cohort.images, cohort.patient_ids)


CLASSICAL_MODELS: dict[str, type[ClassicalModel]] = {
    m.network: m for m in (FeatureModel, StackModel, BoostModel)
}


def patient_folds(patients: np.ndarray) -> GroupKFold:
    """5-fold cross-validation grouped by patient (fewer folds for fewer patients), so no
    patient is on both sides of a fold."""
    return GroupKFold(n_splits=max(2, min(5, len(np.unique(patients)))))


def grouped_search(
    x: np.ndarray, y: np.ndarray, patients: np.ndarray, classes: bool
) -> GridSearchCV:
    """Standardise -> ridge (logistic regression for classes), fitted with its strength chosen
    by cross-validation grouped by patient (`patient_folds`)."""
    if not classes:
        search = GridSearchCV(
            make_pipeline(StandardScaler(), Ridge()),
            {"ridge__alpha": np.logspace(-3, 4, 15)},
            cv=patient_folds(patients),
            scoring="neg_mean_squared_error",
        )
    else:
        search = GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            {"logisticregression__C": np.logspace(-4, 2, 13)},
            cv=patient_folds(patients),
            scoring="neg_log_loss",
        )
    search.fit(x, y, groups=patients)
    return search


def search_info(search: GridSearchCV, est: Any) -> dict[str, Any]:
    """What a cross-validated search chose, for classical.json."""
    return {
        "estimator": type(est).__name__,
        "chosen": {k.split("__")[-1]: float(v) for k, v in search.best_params_.items()},
        "cv_score": float(search.best_score_),
    }


def fit_classical(
    model_cls: type[ClassicalModel], cohort: Cohort, codec: LabelCodec
) -> tuple[ClassicalModel, dict[str, Any]]:
    """Fit on the given (training) cohort alone, its settings by grouped 5-fold CV."""
    x, labels, groups = model_cls.featurise(cohort)
    model, info = model_cls.fitted(x, codec.encode(labels).numpy(), groups, codec)
    info |= {"train_images": len(cohort), "train_rows": len(x), "features": model_cls.columns}
    return model, info


class ClassicalBaseline(Method):
    """A classical baseline: features of the training cohort -> a scikit-learn model, fitted
    once (deterministic, so a resumed run reuses the saved fit)."""

    uses_sources = False
    predictor_training = "none"
    model_cls: type[ClassicalModel] = FeatureModel

    def fit(
        self, target_train: Cohort, target_val: Cohort, sources: list[Cohort], run_dir: Path
    ) -> FittedModel:
        codec = LabelCodec.fit(target_train)
        saved = run_dir / "checkpoints" / "classical-final.pt"
        if saved.exists():
            state = load_checkpoint(saved)
            # fits saved before `features_boost` kept only the linear model's width
            arch = state.get("arch") or {"n_features": state["n_features"]}
            model = self.model_cls.empty(arch, codec.out_dim)
            model.load_state_dict(state["weights"])
            return FittedModel(model, codec)
        model, info = fit_classical(self.model_cls, target_train, codec)
        # metrics.csv as every run has one: the fit's CV score and its validation scores
        val = selection_scores(
            model.scores(target_val), codec.encode(target_val.labels), codec, target_val.patient_ids
        )
        log = MetricsLog(run_dir, "classical", 0)
        try:
            log.log(1, {"cv_score": info["cv_score"], **{f"val_{k}": v for k, v in val.items()}})
        finally:
            log.close()
        atomic_save({"weights": model.state_dict(), "arch": model.arch}, saved)
        write_text(json.dumps(info, indent=2) + "\n", run_dir / "classical.json")
        return FittedModel(model, codec)


@register
class FeaturesRidge(ClassicalBaseline):
    name = "features_ridge"
    description = (
        "classical baseline: head-mask intensity and shape features of each slice -> ridge "
        "(logistic for classes), strength by patient-grouped CV on the training patients"
    )


@register
class StackRidge(ClassicalBaseline):
    name = "stack_ridge"
    model_cls = StackModel
    description = (
        "patient-level classical baseline: the same features summarised over each patient's "
        "stack (mean, max, upper quartile, spread; slice count) -> ridge; every slice gets "
        "its patient's prediction"
    )


@register
class FeaturesBoost(ClassicalBaseline):
    name = "features_boost"
    model_cls = BoostModel
    description = (
        "classical baseline: the same slice features as features_ridge -> gradient-boosted "
        "trees (thresholds and interactions a ridge cannot draw), size by patient-grouped CV"
    )
