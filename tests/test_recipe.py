"""The predictor recipe (methods/recipe.py), predictor weights from a file, and the
classical baseline: each test fails when its piece silently changes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY, noise_cohort
from monai.networks.nets import resnet18
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from torch import nn
from torch.nn import functional as F

from duiit import runs
from duiit.config import Config, load_config
from duiit.data import split_cohort
from duiit.data.cohort import Cohort
from duiit.data.load import load_cohorts
from duiit.errors import DuiitError, DuiitWarning
from duiit.evaluation.checks import check_grid
from duiit.evaluation.experiment import load_experiment
from duiit.evaluation.grid import plan
from duiit.methods import FittedModel
from duiit.methods.base import (
    Batches,
    LabelCodec,
    label_match_weights,
    predictor_selection,
    source_batches,
)
from duiit.methods.classical import (
    BOOST_FIXED,
    FEATURES,
    BoostModel,
    ClassicalModel,
    FeatureModel,
    StackModel,
    fit_classical,
    image_features,
    stack_features,
)
from duiit.methods.duiit import TranslationTask
from duiit.methods.predictor_task import Group, PredictorTask, batch_plan, modality_groups
from duiit.methods.recipe import augmentation, build_predictor, lr_factor, mixup
from duiit.training.runtime import Runtime


def _task(overrides: list[str], cohort: Cohort | None = None) -> PredictorTask:
    cfg = load_config(overrides=[*TINY, *overrides])
    cohort = cohort or noise_cohort("CT", 0, n=24)
    rt = Runtime.create("cpu", "fp32")
    codec = LabelCodec.fit(cohort)
    group = Group(Batches(cohort, codec, rt))
    return PredictorTask([group], Batches(cohort, codec, rt), cfg, rt, codec)


def test_training_batches_are_augmented_as_the_recipe_says() -> None:
    """With flips on, the batch the predictor learns from is the drawn images, some of them
    mirrored; with augmentation off, exactly the drawn images."""
    torch.manual_seed(0)  # kornia draws from the global generator: no flip of 16 is 2^-16
    for augment, expect_flips in (("[flip]", True), ("[]", False)):
        task = _task([f"predictor.augment={augment}", "predictor.batch_size=16"])
        group = task.groups[0]
        state = task.gen.get_state()
        x, _ = task.batch(group, 16)
        task.gen.set_state(state)
        raw, _ = group.batches.sample(task.gen, 16)
        same = (x == raw).flatten(1).all(1)
        mirrored = (x == raw.flip(-1)).flatten(1).all(1)
        assert bool((same | mirrored).all())
        assert bool((~same).any()) is expect_flips


def test_shift_moves_a_head_without_changing_its_size_and_affine_scales_it() -> None:
    """`shift` keeps a head's area in pixels (where size carries age); `affine` scales it."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disk = torch.where((yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 15**2, 1.0, -1.0)
    batch = disk.expand(64, 1, 64, 64)

    def areas(kind: str) -> torch.Tensor:
        torch.manual_seed(0)
        cfg = load_config(overrides=[f"predictor.augment=[{kind}]"])
        out = augmentation(cfg.predictor)(batch)
        assert not torch.equal(out, batch)  # it moved the head
        return ((out > 0).sum(dim=(1, 2, 3)) / (disk > 0).sum()).float()

    shifted, scaled = areas("shift"), areas("affine")
    assert (shifted - 1).abs().max() < 0.05, shifted
    assert (scaled - 1).abs().max() > 0.1, scaled


def test_validation_and_prediction_see_images_unaugmented() -> None:
    """Selection and test predictions are the network on the images as they are: the
    augmentation belongs to training alone."""
    task = _task(["predictor.augment=[flip, affine, intensity]"])
    model = FittedModel(task.predictor, task.codec)
    images = task.val.images.float().cpu()
    first = model.predict(images, task.rt)
    second = model.predict(images, task.rt)
    task.predictor.eval()
    with torch.no_grad():
        plain = task.codec.decode(task.predictor(images)).numpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, plain, rtol=1e-6)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_the_recipe_builds_the_normalisation_it_names(norm: str) -> None:
    cfg = load_config(overrides=[*TINY, f"predictor.norm={norm}"])
    kinds = {type(m) for m in build_predictor(cfg, 1).modules()}
    wanted, unwanted = (
        (nn.GroupNorm, nn.BatchNorm2d) if norm == "group" else (nn.BatchNorm2d, nn.GroupNorm)
    )
    assert wanted in kinds and unwanted not in kinds


def test_mixup_blends_images_and_labels_by_the_same_weights() -> None:
    """Each image filled with its own label's value: after mixup every image must still be
    filled with its (mixed) label, and some pairs must really be mixed."""
    torch.manual_seed(0)
    y = torch.linspace(-1, 1, 16)
    x = y.view(-1, 1, 1, 1).expand(16, 1, 8, 8).clone()
    mx, my = mixup(x, y, 0.4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(mx, my.view(-1, 1, 1, 1).expand_as(mx))
    assert not torch.allclose(my, y)


def test_the_predictor_follows_the_recipes_learning_rate_schedule() -> None:
    """One-cycle: warm-up to the peak at 30 % of the steps, then down to almost 0."""
    task = _task(["predictor.schedule=onecycle", "predictor.lr=0.01", "predictor.warmup=0.3"])
    factor = task.lr_factors(100)["P"]
    assert factor(0) == pytest.approx(1 / 25)
    assert factor(30) == pytest.approx(1.0)
    assert factor(99) < 1e-3
    assert lr_factor(task.cfg.predictor.model_copy(update={"schedule": "constant"}), 100)(
        99
    ) == pytest.approx(1.0)


def test_a_runs_predictor_is_trained_with_the_recipe(phantom_dir: Path, tmp_path: Path) -> None:
    """End to end: the saved model is the recipe's network (GroupNorm by default), the
    optimiser is AdamW with the recipe's weight decay, and the logged learning rate of the
    predictor stage follows its schedule."""
    cfg = load_config(overrides=[*TINY, "predictor.steps=10", "train.log_every=1"])
    runs.train(phantom_dir / "ct.csv", [], tmp_path / "run", cfg, method="target_only", quiet=True)
    model = FittedModel.load(tmp_path / "run" / "model.pt")
    assert model.predictor.arch["norm"] == "group"
    assert any(isinstance(m, nn.GroupNorm) for m in model.predictor.modules())
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    lr = metrics[(metrics["stage"] == "predictor") & (metrics["name"] == "lr")]
    factor = lr_factor(cfg.predictor, 10)
    expected = [cfg.predictor.lr * factor(step) for step in lr["step"]]
    np.testing.assert_allclose(lr["value"], expected, rtol=1e-3)
    assert metrics[metrics["name"] == "val_patient_mae"].shape[0] > 0


def test_selection_is_the_patient_level_mae() -> None:
    """A patient's slices are averaged before the error is taken."""
    cohort = noise_cohort("CT", 1, n=4)
    cohort.patient_ids[:] = ["a", "a", "b", "b"]
    cohort.labels[:] = torch.tensor([10.0, 10.0, 30.0, 30.0])
    codec = LabelCodec(mean=20.0, std=10.0)
    rt = Runtime.create("cpu", "fp32")

    class Fixed(nn.Module):  # predicts 5 and 15 for a (mean 10), 30 and 40 for b (mean 35)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (torch.tensor([5.0, 15.0, 30.0, 40.0])[: len(x)] - 20.0) / 10.0

    metrics = predictor_selection(Fixed(), Batches(cohort, codec, rt), codec, rt)
    assert metrics["selection"] == pytest.approx((0 + 5) / 2)
    assert metrics["mae"] == pytest.approx((5 + 5 + 0 + 10) / 4)


# Predictor weights from a file ------------------------------------------------------------


def _imagenet_style(path: Path) -> dict[str, torch.Tensor]:
    """A ResNet-18 state dict as torchvision/timm save ImageNet weights: 3-channel conv1,
    BatchNorm statistics, a 1000-way `fc`, wrapped as DDP saves it (`module.` prefix)."""
    net = resnet18(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, num_classes=1000)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()
    }
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return state


def test_predictor_weights_load_from_an_imagenet_style_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _imagenet_style(tmp_path / "imagenet.pth")
    cfg = load_config(
        overrides=[
            "predictor.network=resnet18",
            "predictor.norm=batch",
            f"predictor.weights={tmp_path / 'imagenet.pth'}",
        ]
    )
    net = build_predictor(cfg, 1)
    mine = net.backbone.state_dict()
    torch.testing.assert_close(mine["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(mine["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    torch.testing.assert_close(mine["bn1.running_var"], state["bn1.running_var"])
    table = capsys.readouterr().err
    assert "3 input channels summed to 1" in table and "fc" in table and "unused" in table


def test_predictor_weights_into_group_norm_take_the_affine_parameters(tmp_path: Path) -> None:
    state = _imagenet_style(tmp_path / "imagenet.pth")
    cfg = load_config(
        overrides=["predictor.network=resnet18", f"predictor.weights={tmp_path / 'imagenet.pth'}"]
    )
    net = build_predictor(cfg, 1, quiet=True)
    torch.testing.assert_close(net.backbone.state_dict()["bn1.weight"], state["bn1.weight"])


def test_a_wrong_weights_file_is_one_clear_error(tmp_path: Path) -> None:
    _imagenet_style(tmp_path / "imagenet.pth")
    torch.save({"encoder.block.weight": torch.zeros(3)}, tmp_path / "other.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cases = {
        tmp_path / "missing.pt": "does not exist",
        tmp_path / "notes.txt": "not a PyTorch checkpoint",
        tmp_path / "other.pt": "nothing in",
        # ResNet-18 weights into a half-width ResNet-18: no shape fits
        tmp_path / "imagenet.pth": "check predictor.network and predictor.width",
    }
    for path, words in cases.items():
        cfg = load_config(
            overrides=[
                "predictor.network=resnet18",
                "predictor.width=0.5",
                f"predictor.weights={path}",
            ]
        )
        with pytest.raises(DuiitError, match=words):
            build_predictor(cfg, 1, quiet=True)


# The classical baseline -------------------------------------------------------------------


@pytest.mark.parametrize("model_cls", [FeatureModel, StackModel])
def test_the_classical_baselines_fit_on_the_training_patients_alone(
    cohorts: tuple[Cohort, list[Cohort]], model_cls: type[FeatureModel]
) -> None:
    """Their feature scaling is the training images' own (a row per slice, or per patient's
    stack): fitted on more than the training patients (validation or test images), the
    centre would move."""
    ct, _ = cohorts
    train = ct.subset(np.arange(0, 120))
    codec = LabelCodec.fit(train)
    model, info = fit_classical(model_cls, train, codec)
    rows = image_features(train.images)
    if model_cls is StackModel:
        rows = stack_features(rows, train.patient_ids)[1]
        assert len(rows) == len(np.unique(train.patient_ids)) < 120
    np.testing.assert_allclose(model.center.numpy(), rows.mean(0), rtol=1e-9, atol=1e-12)
    assert info["train_images"] == 120 and info["train_rows"] == len(rows)


@pytest.mark.parametrize("task", ["regression", "classes"])
def test_the_boosted_trees_as_tensors_are_scikit_learns_fit_to_the_training_patients(
    cohorts: tuple[Cohort, list[Cohort]], task: str
) -> None:
    """`features_boost` stores its trees as tensors: on held-out slices they give what
    scikit-learn's own model, fitted to the training slices alone with the settings the
    search chose, gives (its regression output, or its class probabilities); fitted with the
    held-out slices among its training ones, it would not."""
    ct, _ = cohorts
    train, test = ct.subset(np.arange(0, 120)), ct.subset(np.arange(120, 200))
    classes = task == "classes"
    if classes:  # two age groups
        train.labels, test.labels = (train.labels >= 40).long(), (test.labels >= 40).long()
        codec = LabelCodec(classes=("young", "old"))
    else:
        codec = LabelCodec.fit(train)
    model, info = fit_classical(BoostModel, train, codec)
    settings = {**BOOST_FIXED, **{k: int(v) for k, v in info["chosen"].items()}}
    kind = GradientBoostingClassifier if classes else GradientBoostingRegressor
    x, y = image_features(train.images), codec.encode(train.labels).numpy()
    held_out = image_features(test.images)

    def outputs(est: GradientBoostingRegressor | GradientBoostingClassifier) -> np.ndarray:
        return est.predict_proba(held_out) if classes else est.predict(held_out)

    theirs = outputs(kind(**settings).fit(x, y))
    ours = model.scores(test).double()
    ours = torch.softmax(ours, 1) if classes else ours
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)
    assert info["train_rows"] == 120 and set(info["importance"]) == set(FEATURES)
    both = (np.vstack([x, held_out]), np.r_[y, codec.encode(test.labels).numpy()])
    assert np.abs(outputs(kind(**settings).fit(*both)) - theirs).max() > 1e-3


@pytest.mark.parametrize("model_cls", [FeatureModel, StackModel, BoostModel])
def test_the_classical_baselines_learn_age_from_phantom_heads(
    cohorts: tuple[Cohort, list[Cohort]], model_cls: type[ClassicalModel]
) -> None:
    """Children have smaller heads and darker white matter in the phantom: head-mask
    features carry age, so held-out patients are predicted better than by the mean."""
    ct, _ = cohorts
    order = np.argsort(ct.patient_ids, kind="stable")
    train, test = ct.subset(order[:150]), ct.subset(order[150:])
    codec = LabelCodec.fit(train)
    model, _ = fit_classical(model_cls, train, codec)
    pred = codec.decode(model.scores(test)).numpy()
    y = test.labels.numpy()
    assert ((pred - y) ** 2).mean() < 0.8 * ((y - train.labels.numpy().mean()) ** 2).mean()


@pytest.mark.parametrize("method", ["features_ridge", "features_boost", "stack_ridge"])
def test_the_classical_baselines_are_methods_that_save_resume_and_take_classes(
    phantom_dir: Path, tmp_path: Path, method: str
) -> None:
    cfg = load_config(overrides=TINY)
    out = tmp_path / "ridge"
    result = runs.train(phantom_dir / "ct.csv", [], out, cfg, method=method, quiet=True)
    assert math.isfinite(result["metrics"]["mse"])
    loaded = FittedModel.load(out / "model.pt")
    assert loaded.predictor.arch["network"] == method
    test = pd.read_csv(out / "test_predictions.csv")
    if method == "stack_ridge":  # one prediction a patient, from its stack alone
        assert (test.groupby("patient_id")["prediction"].nunique() == 1).all()
        with pytest.raises(DuiitError, match="patient id"):
            loaded.predict(torch.zeros(2, 1, 32, 32), Runtime.create("cpu", "fp32"))
        # fitted on the training patients of its split alone: the centre of its feature
        # scaling is their stacks' mean
        parts = pd.read_csv(out / "split.csv")
        train = parts[parts["part"] == "train"]
        cohort, _ = load_cohorts(phantom_dir / "ct.csv", [], cfg.data, quiet=True)
        keys = pd.MultiIndex.from_frame(cohort.meta[["path", "slice"]].astype(str))
        rows = keys.isin(pd.MultiIndex.from_frame(train[["path", "slice"]].astype(str)))
        assert 0 < rows.sum() < len(cohort)
        stacks = stack_features(image_features(cohort.images[rows]), cohort.patient_ids[rows])[1]
        np.testing.assert_allclose(loaded.predictor.center.numpy(), stacks.mean(0), rtol=1e-9)
    # resumed from its saved fit (result and model gone): the same predictions
    (out / "result.json").unlink()
    (out / "model.pt").unlink()
    runs.train(phantom_dir / "ct.csv", [], out, cfg, method=method, resume=True, quiet=True)
    resumed = pd.read_csv(out / "test_predictions.csv")
    np.testing.assert_array_equal(resumed["prediction"], test["prediction"])
    # `duiit predict` on the manifest gives the run's test predictions (for stack_ridge: its
    # rows grouped by patient as the run's test did)
    again = runs.predict(out, [phantom_dir / "ct.csv"], tmp_path / "p.csv", quiet=True)
    merged = test.merge(again.images, on=["path", "slice"], suffixes=("", "_again"))
    assert len(merged) == len(test)
    np.testing.assert_allclose(merged["prediction"], merged["prediction_again"], rtol=1e-6)
    metrics = pd.read_csv(out / "metrics.csv")  # as every run folder has
    assert {"cv_score", "val_selection"} <= set(metrics["name"])
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert predictions["prediction"].std() > 0
    # classes: two age groups, logistic regression (or classifying trees) behind the same
    # interface
    df = pd.read_csv(phantom_dir / "ct.csv")
    df["label"] = np.where(df["label"] < 40, "young", "old")
    df.to_csv(phantom_dir / "ct-classes.csv", index=False)
    classes = load_config(overrides=[*TINY, "data.task=classification"])
    res = runs.train(
        phantom_dir / "ct-classes.csv",
        [],
        tmp_path / "cls",
        classes,
        method=method,
        quiet=True,
    )
    # the age groups told apart (measured 0.92 for the ridges; swapped logits would give 0.08)
    assert res["metrics"]["accuracy"] > 0.75
    predicted = pd.read_csv(tmp_path / "cls" / "test_predictions.csv")["prediction"]
    assert set(predicted) <= {0, 1}  # class indices, as for every method


def test_the_stack_model_predicts_each_slice_from_its_own_patients_stack(
    cohorts: tuple[Cohort, list[Cohort]],
) -> None:
    """Slices in any order, patients interleaved: each slice gets what its patient's stack
    alone gives; a patient whose slices carry different labels is refused by name."""
    ct, _ = cohorts
    train, test = ct.subset(np.arange(0, 120)), ct.subset(np.arange(120, 160))
    codec = LabelCodec.fit(train)
    model, _ = fit_classical(StackModel, train, codec)
    order = np.random.default_rng(0).permutation(len(test))
    shuffled = model.predict_stacks(test.images[order], test.patient_ids[order])
    for patient in np.unique(test.patient_ids):
        own = np.flatnonzero(test.patient_ids == patient)
        alone = model.predict_stacks(test.images[own], test.patient_ids[own])
        got = shuffled[np.isin(order, own)]
        torch.testing.assert_close(got, alone[: len(got)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuiitWarning)  # whole stacks: nothing to say
        model.predict_stacks(test.images, test.patient_ids)
    first = np.unique(test.patient_ids, return_index=True)[1]  # one slice a patient
    with pytest.warns(DuiitWarning, match="partial stacks"):
        model.predict_stacks(test.images[first], test.patient_ids[first])
    mixed = ct.subset(np.arange(0, 120))
    mixed.labels[1] = mixed.labels[0] + 5  # slices 0 and 1: one patient, two ages
    assert mixed.patient_ids[0] == mixed.patient_ids[1]
    with pytest.raises(DuiitError, match=f"patient {mixed.patient_ids[0]} has slices"):
        fit_classical(StackModel, mixed, LabelCodec.fit(mixed))


def _mixed_task(overrides: list[str], sources: int = 2, dann: bool = False) -> PredictorTask:
    """A predictor task on a target and `sources` raw sources, grouped as MTL, DANN and
    translate-then-train group them; with `dann`, each its own domain for DANN's domain
    head, over 10 steps."""
    cfg = load_config(
        overrides=[*TINY, "predictor.batch_size=12", "predictor.augment=[]", *overrides]
    )
    target = noise_cohort("CT", 0, n=24)
    others = [noise_cohort(f"S{k}", k + 1, n=24) for k in range(sources)]
    rt = Runtime.create("cpu", "fp32")
    codec = LabelCodec.fit(target)
    groups = modality_groups(target, others, codec, cfg, rt, per_domain=dann)
    domains = len(groups) if dann else 0
    return PredictorTask(
        groups, Batches(target, codec, rt), cfg, rt, codec, domains=domains, total_steps=10
    )


@pytest.mark.parametrize(
    ("share", "sizes"), [(0.5, [12, 6, 6]), (0.25, [12, 2, 2]), (0.2, [12, 2, 1]), (0.0, [12])]
)
def test_sources_take_their_share_of_each_batch(share: float, sizes: list[int]) -> None:
    """Beside batch_size real target images the sources share `source_share` of the whole
    batch (0.5: as many as the real ones), split evenly; at 0 they are left out."""
    task = _mixed_task([f"predictor.source_share={share}"])
    seen: list[int] = []
    task.predictor.backbone.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    task.train_step(0)
    assert [n for n, _ in task.plan] == sizes and seen == [sum(sizes)]


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_a_source_image_weighs_source_weight_in_the_predictors_loss(weight: float) -> None:
    """The predictor's loss is a weighted mean over images (real 1, source `source_weight`):
    at weight 0 the sources' images are scored but teach nothing."""
    task = _mixed_task([f"predictor.source_weight={weight}", "predictor.loss=mse"], sources=1)
    gen_state = task.gen.get_state()
    batches = [task.batch(g, n) for g, (n, _) in zip(task.groups, task.plan, strict=True)]
    task.gen.set_state(gen_state)
    se = [((task.predictor(x).flatten() - y.flatten()) ** 2).detach() for x, y in batches]
    expected = (se[0].sum() + weight * se[1].sum()) / (len(se[0]) + weight * len(se[1]))
    logged = task.train_step(0)["pred"]
    torch.testing.assert_close(logged, expected)


@pytest.mark.parametrize(
    ("override", "loss"),
    [
        ([], F.mse_loss),
        (["predictor.loss=l1"], F.l1_loss),
        (["predictor.loss=huber"], F.huber_loss),
    ],
)
def test_the_predictor_learns_on_the_recipes_loss(override: list[str], loss: Callable) -> None:
    """The loss the predictor steps on is the one `predictor.loss` names, MSE by default
    (the score every report ranks by), on standardised labels."""
    task = _mixed_task(override, sources=0)
    gen_state = task.gen.get_state()
    x, y = task.batch(task.groups[0], task.plan[0][0])
    task.gen.set_state(gen_state)
    expected = loss(task.predictor(x).flatten(), y.flatten()).detach()
    torch.testing.assert_close(task.train_step(0)["pred"], expected)


def test_tl_pretraining_on_sources_alone_gives_each_a_full_batch() -> None:
    """With no target group (TL's pre-training) each source takes batch_size, weight 1."""
    cfg = load_config(overrides=[*TINY, "predictor.batch_size=8", "predictor.source_weight=0"])
    groups = modality_groups(
        None,
        [noise_cohort("A", 1), noise_cohort("B", 2)],
        LabelCodec.fit(noise_cohort("CT", 0)),
        cfg,
        Runtime.create("cpu", "fp32"),
    )
    assert batch_plan(groups, cfg.predictor) == [(8, 1.0), (8, 1.0)]


def _labelled(name: str, labels: list[float]) -> Cohort:
    cohort = noise_cohort(name, 0, n=len(labels), size=8)
    cohort.labels = torch.tensor(labels, dtype=torch.float32)
    return cohort


def test_matched_sources_follow_the_targets_labels_where_they_cover_them() -> None:
    """A source of adults (20-80, uniform) drawn for a target half children (0-18) and half
    adults (30-50): matched draws spread evenly over the 6 target deciles that the source
    reaches (the 5th spans 16-32, the gap between the two), none above 50, and the warning
    says that the source covers 60 % of the target's labels."""
    rng = np.random.default_rng(0)
    target = _labelled("CT", [*rng.uniform(0, 18, 200), *rng.uniform(30, 50, 200)])
    source = _labelled("MRI", list(rng.uniform(20, 80, 2000)))
    cfg = load_config(overrides=[*TINY, "predictor.match_labels=true"])
    rt = Runtime.create("cpu", "fp32")
    codec = LabelCodec.fit(target)
    with pytest.warns(UserWarning, match="cover 60% of the target's"):
        batches = source_batches(source, target, codec, cfg, rt)
    _, labels = batches.sample(torch.Generator().manual_seed(0), 20_000)
    years = codec.decode(labels).numpy()
    edges = np.quantile(target.labels.numpy(), np.linspace(0, 1, 11)[1:-1])
    assert years.min() >= 20 and years.max() <= target.labels.max()  # none beyond its range
    shares = np.bincount(np.digitize(years, edges), minlength=10)[4:] / len(years)
    np.testing.assert_allclose(shares, 1 / 6, atol=0.02)  # the deciles it reaches alike
    unmatched = Batches(source, codec, rt).sample(torch.Generator().manual_seed(0), 20_000)[1]
    assert (codec.decode(unmatched).numpy() > 50.5).mean() > 0.4  # without matching


def test_matched_classes_follow_the_targets_class_shares() -> None:
    """Classes: a source 20 % class 0 drawn for a target 80 % class 0 gives ~80 % class 0."""

    def classes(name: str, labels: list[int]) -> Cohort:
        cohort = noise_cohort(name, 0, n=len(labels), size=8)
        cohort.labels, cohort.classes = torch.tensor(labels), ("a", "b")
        return cohort

    target = classes("CT", [0] * 80 + [1] * 20)
    source = classes("MRI", [0] * 20 + [1] * 80)
    weights, covered = label_match_weights(source, target)
    assert covered == 1.0
    draws = np.random.default_rng(0).choice(len(weights), 20_000, p=weights)
    assert abs((source.labels.numpy()[draws] == 0).mean() - 0.8) < 0.02


def test_an_experiment_says_once_before_its_runs_what_matching_leaves_uncovered(
    tmp_path: Path,
) -> None:
    """The coverage warning comes from the grid's check, once per source, before any run
    (runs in workers are silenced): a source of adults for a target half children."""
    rng = np.random.default_rng(0)
    target = _labelled("CT", [*rng.uniform(0, 18, 12), *rng.uniform(30, 50, 12)])
    source = _labelled("MRI", list(rng.uniform(20, 80, 24)))
    (tmp_path / "e.yaml").write_text(
        "target: ct.csv\nsources: [mri.csv]\nsettings: [[MRI]]\n"
        "methods: ['cyclegan[match_labels=true]']\nours: 'cyclegan[match_labels=true]'\nsplits: 2\n"
    )
    exp, cfg = load_experiment(tmp_path / "e.yaml")
    with pytest.warns(DuiitWarning, match="MRI's labels cover") as seen:
        check_grid(exp, cfg, target, [source], plan(exp, target, [source]))
    assert len(seen) == 1
    (tmp_path / "e.yaml").write_text(
        "target: ct.csv\nsources: [mri.csv]\nsettings: [[MRI]]\n"
        "methods: [cyclegan]\nours: cyclegan\n"
    )
    exp, cfg = load_experiment(tmp_path / "e.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuiitWarning)  # no matching: nothing to say
        check_grid(exp, cfg, target, [source], plan(exp, target, [source]))


def _check_grid(tmp_path: Path, methods: str, run: str) -> tuple[Config, Cohort]:
    """`check_grid` of an experiment of `methods` and `run` settings over 24 CT images (0-70
    y) and 24 MRI (20-80 y), 2 splits; returns its configuration and target."""
    target = _labelled("CT", list(np.linspace(0, 70, 24)))
    source = _labelled("MRI", list(np.linspace(20, 80, 24)))
    (tmp_path / "e.yaml").write_text(
        "target: ct.csv\nsources: [mri.csv]\nsettings: [[], [MRI]]\n"
        f"methods: [{methods}]\nours: duiit\nsplits: 2\nrun: {run}\n"
    )
    exp, cfg = load_experiment(tmp_path / "e.yaml")
    check_grid(exp, cfg, target, [source], plan(exp, target, [source]))
    return cfg, target


def test_a_co_trained_predictor_says_it_trains_without_mixup(cohorts, tmp_path: Path) -> None:
    """predictor.mixup was silently skipped by DUIIT's co-trained predictor while the
    predictor stages of the other methods applied it."""
    methods = "duiit, duiit_detached, target_only, cycada"
    run = "{train: {steps: 12}, predictor: {steps: 12%s}}"
    with pytest.warns(DuiitWarning, match="predictor.mixup=0.2 is applied by") as seen:
        _check_grid(tmp_path, methods, run % ", mixup: 0.2")
    [said] = [str(w.message) for w in seen if "mixup" in str(w.message)]
    assert "the co-trained predictor of duiit, duiit_detached trains without it" in said
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuiitWarning)
        _check_grid(tmp_path, methods, run % "")
    ct, [mri] = cohorts
    run_cfg = load_config(overrides=[*TINY, "predictor.mixup=0.2"])
    with pytest.warns(DuiitWarning, match="the predictor co-trained with the translator"):
        TranslationTask(ct, ct, [mri], run_cfg, Runtime.create("cpu"), LabelCodec.fit(ct), "joint")


def test_an_experiment_says_when_its_predictors_train_for_unequal_lengths(
    tmp_path: Path,
) -> None:
    """DUIIT's co-trained predictor follows the translator's train.steps (300), a predictor
    stage the recipe's 12 passes over split 0's target training images at batch 32 (24
    noise images: 12 steps): the check names both lengths, the methods at each and the
    setting that matches them, once; the ridge has no steps; predictor.steps=300 is quiet."""
    methods = "duiit, target_only, cyclegan, features_ridge"
    with pytest.warns(DuiitWarning, match="unequal lengths") as seen:
        cfg, target = _check_grid(tmp_path, methods, "{train: {steps: 300}}")
    assert len(seen) == 1
    said = str(seen[0].message)
    n_train = len(split_cohort(target, cfg.data.split, seed=0).train)
    stage = 12 * math.ceil(n_train / 32)
    assert f"({stage} steps: target_only, cyclegan; 300 steps: duiit)" in said
    assert f"set run.predictor.steps=300 (or run.train.steps={stage}," in said
    assert "features_ridge" not in said
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuiitWarning)
        _check_grid(tmp_path, methods, "{train: {steps: 300}, predictor: {steps: 300}}")
    # DUIIT the shorter: the advice still names the joint loop's length for the stages
    with pytest.warns(DuiitWarning, match=r"set run.predictor.steps=3 \(or run.train.steps="):
        _check_grid(tmp_path, methods, "{train: {steps: 3}}")


@pytest.mark.parametrize("weight", [1.0, 0.1, 0.0])
def test_danns_reversal_ramps_to_domain_weight(
    weight: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DANN's features get the domain loss's gradient times -domain_weight x Ganin's ramp
    2/(1+exp(-10p))-1 at progress p: 0 at the start, domain_weight x 0.987 halfway."""
    from duiit.methods import predictor_task

    task = _mixed_task([f"predictor.domain_weight={weight}"], sources=1, dann=True)
    factors: list[float] = []
    real = predictor_task.scale_grad
    monkeypatch.setattr(
        predictor_task, "scale_grad", lambda x, f: (factors.append(f), real(x, f))[1]
    )
    for step in (0, 5):
        assert "domain" in task.train_step(step)
    assert factors == pytest.approx([0.0, -weight * (2 / (1 + math.exp(-5)) - 1)])
