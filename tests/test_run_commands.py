"""translate, augment and predict on a trained run, through the CLI and the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY as BASE
from test_cli import duiit

from duiit import runs
from duiit.config import load_config
from duiit.data import load_manifest
from duiit.errors import DuiitError
from duiit.methods import FittedModel
from duiit.methods.base import translate
from duiit.training.runtime import Runtime

TINY = [*BASE, "train.batch_size=4", "train.steps=20", "train.eval_every=10"]


@pytest.fixture(scope="module")
def run_dir(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "duiit"
    runs.train(
        phantom_dir / "ct.csv",
        [phantom_dir / "mri.csv"],
        out,
        load_config(overrides=TINY),
        quiet=True,
    )
    return out


def test_translate_writes_ct_files_that_read_back_as_the_translation(
    run_dir: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    res = duiit(
        "translate",
        str(run_dir),
        "--source",
        str(phantom_dir / "mri.csv"),
        "--out",
        str(tmp_path / "tr"),
        "-q",
    )
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(tmp_path / "tr" / "manifest.csv")
    cfg = load_config(run_dir / "config.yaml")
    [mri] = load_manifest(phantom_dir / "mri.csv", cfg.data, quiet=True)
    assert len(df) == len(mri) and set(df["modality"]) == {"CT"}
    np.testing.assert_allclose(df["label"], mri.labels.numpy(), atol=1e-4)
    [back] = load_manifest(tmp_path / "tr" / "manifest.csv", cfg.data, quiet=True)
    fitted = FittedModel.load(run_dir / "model.pt")
    expected = translate(fitted.translators["MRI"], mri.images, Runtime.create("cpu"))
    np.testing.assert_allclose(back.images.float(), expected.float(), atol=2e-2)
    res = duiit(
        "translate",
        str(run_dir),
        "--source",
        str(phantom_dir / "pet.csv"),
        "--out",
        str(tmp_path / "tr2"),
    )
    assert res.returncode == 2 and "no translator for PET" in res.stderr
    assert not (tmp_path / "tr2").exists()


def test_augment_gives_real_plus_translated_training_set(
    run_dir: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    out = runs.augment(
        run_dir, phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "aug", quiet=True
    )
    df = pd.read_csv(out)
    n_ct = len(pd.read_csv(phantom_dir / "ct.csv"))
    assert (df["source_modality"].isna()).sum() == n_ct
    assert (df["source_modality"] == "MRI").sum() > 0
    [cohort] = load_manifest(out, load_config(run_dir / "config.yaml").data, quiet=True)
    assert cohort.modality == "CT" and len(cohort) == len(df) + n_ct  # 2 slices per real file
    with pytest.raises(DuiitError, match="already exists"):
        runs.augment(run_dir, phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "aug")
    # a target manifest's own intensity settings travel with the copied real files
    real = pd.read_csv(phantom_dir / "ct.csv").assign(units="hu")
    real["path"] = [str(phantom_dir / p) for p in real["path"]]
    real.to_csv(tmp_path / "ct.csv", index=False)
    out = runs.augment(run_dir, tmp_path / "ct.csv", [], tmp_path / "aug2", quiet=True)
    assert pd.read_csv(out)["units"].tolist() == ["hu"] * n_ct


def test_predict_from_manifest_and_from_files(
    run_dir: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    res = duiit(
        "predict",
        str(run_dir),
        "--input",
        str(phantom_dir / "ct.csv"),
        "--out",
        str(tmp_path / "p.csv"),
        "-q",
    )
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(tmp_path / "p.csv")
    assert list(df.columns) == ["path", "slice", "patient_id", "label", "prediction"]
    assert df["prediction"].notna().all() and df["prediction"].std() > 0
    files = sorted((phantom_dir / "CT").glob("*.nii.gz"))[:2]
    by_file = runs.predict(run_dir, files, tmp_path / "q.csv", quiet=True)
    assert len(by_file) == 4  # two slices each
    first = df[df["path"] == f"CT/{files[0].name}"]["prediction"].to_numpy()
    np.testing.assert_allclose(by_file["prediction"].to_numpy()[:2], first, rtol=1e-5)


def test_train_refuses_existing_run_and_resume_of_non_run(
    run_dir: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    res = duiit("train", "--target", str(phantom_dir / "ct.csv"), "--out", str(run_dir))
    assert res.returncode == 2 and f"--resume {run_dir}" in res.stderr
    res = duiit("train", "--resume", str(tmp_path))
    assert res.returncode == 2 and "not a run folder" in res.stderr
    res = duiit(
        "train",
        "--target",
        str(phantom_dir / "ct.csv"),
        "--out",
        str(tmp_path / "x"),
        "--method",
        "magic",
    )
    assert res.returncode == 2 and "unknown method 'magic'" in res.stderr
    res = duiit(
        "train",
        "--target",
        str(phantom_dir / "ct.csv"),
        "--out",
        str(tmp_path / "y"),
        "train.stepz=3",
    )
    assert res.returncode == 2 and "train.stepz: unknown key" in res.stderr


def test_class_labels_end_to_end(phantom_dir: Path, tmp_path: Path) -> None:
    df = pd.read_csv(phantom_dir / "ct.csv")
    df["path"] = [str(phantom_dir / p) for p in df["path"]]
    df["label"] = np.where(df["label"] < 55, "young", "old")
    df.to_csv(tmp_path / "ct.csv", index=False)
    cfg = load_config(overrides=[*TINY, "data.task=classification", "train.steps=30"])
    result = runs.train(
        tmp_path / "ct.csv", [], tmp_path / "run", cfg, method="target_only", quiet=True
    )
    assert set(result["metrics"]) == {"accuracy", "macro_f1"}
    assert 0 <= result["metrics"]["accuracy"] <= 1
    pred = runs.predict(tmp_path / "run", [tmp_path / "ct.csv"], tmp_path / "p.csv", quiet=True)
    assert set(pred["prediction"]) <= {"young", "old"} and set(pred["label"]) == {"young", "old"}
