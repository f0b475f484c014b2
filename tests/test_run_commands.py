"""translate, augment and predict on a trained run, through the CLI and the library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY as BASE
from helpers import cli
from test_cli import duiit

from duiit import runs
from duiit.config import load_config
from duiit.data import load_manifest
from duiit.errors import DuiitError, DuiitWarning
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


def test_augment_gives_the_runs_training_images_plus_translated_sources(
    run_dir: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """Only the patients the run trained on (never its validation or test patients), each
    image with its slice, plus every translated source image."""
    out = runs.augment(
        run_dir, phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "aug", quiet=True
    )
    df = pd.read_csv(out)
    split = pd.read_csv(run_dir / "split.csv")
    train = split[split["part"] == "train"]
    real = df[df["source_modality"].isna()]
    assert len(real) == len(train) and real["slice"].notna().all()
    files = [str((out.parent / p).resolve()) for p in real["source_path"]]
    assert sorted(zip(files, real["slice"], strict=True)) == sorted(
        zip(train["file"], train["slice"], strict=True)
    )
    held_out = set(split.loc[split["part"] != "train", "patient_id"].astype(str))
    assert held_out and not held_out & set(real["patient_id"].astype(str))
    assert (df["source_modality"] == "MRI").sum() == len(pd.read_csv(phantom_dir / "mri.csv")) * 2
    [cohort] = load_manifest(out, load_config(run_dir / "config.yaml").data, quiet=True)
    assert cohort.modality == "CT" and len(cohort) == len(df)  # one image per row
    with pytest.raises(DuiitError, match="already exists"):
        runs.augment(run_dir, phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "aug")
    # a target manifest's own intensity settings travel with the copied real files; the
    # manifest may name the same files another way (absolute paths here)
    real_csv = pd.read_csv(phantom_dir / "ct.csv").assign(units="hu")
    real_csv["path"] = [str(phantom_dir / p) for p in real_csv["path"]]
    real_csv.to_csv(tmp_path / "ct.csv", index=False)
    out = runs.augment(run_dir, tmp_path / "ct.csv", [], tmp_path / "aug2", quiet=True)
    assert pd.read_csv(out)["units"].tolist() == ["hu"] * len(train)
    pd.read_csv(phantom_dir / "pet.csv").to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(DuiitError, match="lists none of the images run"):
        runs.augment(run_dir, tmp_path / "other.csv", [], tmp_path / "aug3", quiet=True)


@pytest.mark.parametrize("translator", ["cut", "fastcut"])
def test_cut_runs_translate_and_augment(phantom_dir: Path, tmp_path: Path, translator: str) -> None:
    """A run of either one-sided translator leaves its generator in model.pt like a
    CycleGAN run: `duiit translate` writes what that generator makes, `augment` the run's
    training images plus every translated source image."""
    cfg = load_config(
        overrides=[
            *BASE,
            "train.batch_size=4",
            "train.steps=4",
            "train.eval_every=4",
            f"model.translator={translator}",
        ]
    )
    run = tmp_path / "run"
    runs.train(phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], run, cfg, quiet=True)
    manifest = runs.translate_manifest(run, phantom_dir / "mri.csv", tmp_path / "tr", quiet=True)
    [mri] = load_manifest(phantom_dir / "mri.csv", cfg.data, quiet=True)
    [back] = load_manifest(manifest, cfg.data, quiet=True)
    fitted = FittedModel.load(run / "model.pt")
    expected = translate(fitted.translators["MRI"], mri.images, Runtime.create("cpu"))
    np.testing.assert_allclose(back.images.float(), expected.float(), atol=2e-2)
    assert (expected - mri.images).abs().mean() > 0.05  # a translation, not the input
    out = runs.augment(
        run, phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "aug", quiet=True
    )
    df = pd.read_csv(out)
    trained = (pd.read_csv(run / "split.csv")["part"] == "train").sum()
    assert len(df) == trained + len(mri) and (df["source_modality"] == "MRI").sum() == len(mri)


def _mri_of_ct_patients(phantom_dir: Path, path: Path) -> Path:
    """The phantom's MRI manifest with its patients renamed as CT patients (absolute paths):
    data.disjoint_patients=false's case, one patient scanned in both modalities."""
    ct = pd.read_csv(phantom_dir / "ct.csv")
    mri = pd.read_csv(phantom_dir / "mri.csv")
    ids = dict(zip(mri["patient_id"].unique(), ct["patient_id"].unique(), strict=False))
    mri["patient_id"] = mri["patient_id"].map(ids)
    mri["path"] = [str(phantom_dir / p) for p in mri["path"]]
    mri.to_csv(path, index=False)
    return path


def test_sources_of_held_out_patients_are_left_out_of_training(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.disjoint_patients=false: MRI scans of CT patients. Those of the split's
    validation and test patients never reach training; those of training patients do."""
    from duiit.data import load_cohorts, split_cohort
    from duiit.methods.transfer import Transfer

    _mri_of_ct_patients(phantom_dir, tmp_path / "mri.csv")
    cfg = load_config(overrides=[*TINY, "data.disjoint_patients=false"])
    seen: list = []

    def record(self, train, val, sources, run_dir):
        seen.extend(sources)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(Transfer, "fit", record)
    with pytest.raises(KeyboardInterrupt):
        runs.train(
            phantom_dir / "ct.csv",
            [tmp_path / "mri.csv"],
            tmp_path / "r",
            cfg,
            "transfer",
            quiet=True,
        )
    target, [all_mri] = load_cohorts(phantom_dir / "ct.csv", [tmp_path / "mri.csv"], cfg.data)
    split = split_cohort(target, cfg.data.split, seed=cfg.train.seed)
    held = set(target.patient_ids[split.val]) | set(target.patient_ids[split.test])
    [used] = seen
    assert held & set(all_mri.patient_ids)  # the case arises in this split
    assert not held & set(used.patient_ids)
    assert set(used.patient_ids) == set(all_mri.patient_ids) - held


def test_augment_leaves_out_the_source_scans_of_held_out_patients(
    phantom_dir: Path, tmp_path: Path
) -> None:
    """`augment` wrote the translated MRI of the run's validation and test patients into the
    augmented training set (training left them out; a pipeline trained on the manifest and
    tested on the run's test patients would have seen them)."""
    mri = _mri_of_ct_patients(phantom_dir, tmp_path / "mri.csv")
    cfg = load_config(overrides=[*BASE, "train.steps=2", "data.disjoint_patients=false"])
    run = tmp_path / "run"
    runs.train(phantom_dir / "ct.csv", [mri], run, cfg, quiet=True)
    split = pd.read_csv(run / "split.csv")
    held = set(split[split["part"] != "train"]["patient_id"])
    with pytest.warns(DuiitWarning, match=r"validation/test patient\(s\) of this split left out"):
        out = runs.augment(run, phantom_dir / "ct.csv", [mri], tmp_path / "aug")
    df = pd.read_csv(out)
    translated = df[df["source_modality"] == "MRI"]
    all_mri = pd.read_csv(mri)
    assert held & set(all_mri["patient_id"])  # the case arises in this split
    assert not held & set(df["patient_id"])
    [slices] = load_manifest(mri, cfg.data, quiet=True)
    kept = [str(p) for p in slices.patient_ids if str(p) not in held]
    assert sorted(translated["patient_id"].astype(str)) == sorted(kept)


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
    assert list(df.columns) == [
        "path", "slice", "patient_id", "label", "prediction", "unlike_training"
    ]  # fmt: skip
    assert df["prediction"].notna().all() and df["prediction"].std() > 0
    files = sorted((phantom_dir / "CT").glob("*.nii.gz"))[:2]
    by_file = runs.predict(run_dir, files, tmp_path / "q.csv", quiet=True).images
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
    done = runs.predict(tmp_path / "run", [tmp_path / "ct.csv"], tmp_path / "p.csv", quiet=True)
    pred = done.images
    assert set(pred["prediction"]) <= {"young", "old"} and set(pred["label"]) == {"young", "old"}
    # per patient: the most frequent class and the share of its slices that predict it
    patients = done.patients.set_index("patient_id")
    for pid, slices in pred.groupby("patient_id"):
        votes = slices["prediction"].value_counts()
        assert votes[patients.loc[pid, "prediction"]] == votes.max()
        assert patients.loc[pid, "agreement"] == pytest.approx(votes.max() / len(slices))
    assert set(patients["label"]) == {"young", "old"}


def test_class_codec_decodes_the_most_likely_class_by_its_name(tmp_path: Path) -> None:
    """Logits -> the index of the largest (what the loss is lowest for)."""
    import torch

    from duiit.methods.base import LabelCodec

    codec = LabelCodec(classes=("old", "young", "newborn"))
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0], [-2.0, -1.0, -0.5]])
    assert codec.decode(logits).tolist() == [1, 0, 2]
    labels = torch.tensor([2, 0, 1])
    assert codec.decode(torch.nn.functional.one_hot(labels, 3).float()).tolist() == [2, 0, 1]
    assert float(codec.loss(logits, codec.decode(logits))) < float(codec.loss(logits, labels))


# ------------------------------------------------------------------ output as a user reads it


def test_piped_output_is_not_wrapped_and_says_where_outputs_went(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output that is not a terminal (CI logs, `| tee`) was hard-wrapped at 80 columns,
    cutting the metric line; cohorts loaded silently; train, translate and augment did not
    say where their outputs went. Here stdout and stderr are not terminals, as in a pipe."""
    monkeypatch.delenv("COLUMNS", raising=False)
    run = tmp_path / "a-run-folder-with-a-name-long-enough-to-need-a-wide-line"
    res = cli(
        "train", "--target", phantom_dir / "ct.csv", "--source", phantom_dir / "mri.csv",
        "--out", run, *TINY, "train.steps=2",
    )  # fmt: skip
    assert res.code == 0, res.err
    [metrics] = [line for line in res.out.splitlines() if "test patients" in line]
    assert metrics.endswith(
        f"patient_r2 {json.loads((run / 'result.json').read_text())['metrics']['patient_r2']:.4g}"
    )
    [where] = [line for line in res.out.splitlines() if line.startswith("outputs ->")]
    assert f"-> {run}:" in where and "test_predictions.csv (" in where and "model.pt" in where
    assert (
        "reading ct.csv (100 rows) ..." in res.err and "reading ct.csv (100 rows): done" in res.err
    )
    res = cli("translate", run, "--source", phantom_dir / "mri.csv", "--out", tmp_path / "tr")
    assert res.code == 0, res.err
    assert f"60 translated (MRI 60) -> {tmp_path / 'tr'} (manifest.csv)" in res.out
    res = cli(
        "augment", run, "--target", phantom_dir / "ct.csv", "--source", phantom_dir / "mri.csv",
        "--out", tmp_path / "aug",
    )  # fmt: skip
    assert res.code == 0, res.err
    trained = (pd.read_csv(run / "split.csv")["part"] == "train").sum()
    assert (
        f"{trained} real training images + 60 translated (MRI 60) -> {tmp_path / 'aug'} "
        "(manifest.csv)" in res.out
    )


def test_written_source_paths_and_folders_are_usable(
    run_dir: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """augment's (and translate's) source_path pointed nowhere (relative to each input
    manifest, not to the manifest written); their folders were private (0700) where run
    folders are not."""
    aug = runs.augment(
        run_dir, phantom_dir / "ct.csv", [phantom_dir / "mri.csv"], tmp_path / "aug", quiet=True
    )
    tr = runs.translate_manifest(run_dir, phantom_dir / "mri.csv", tmp_path / "tr", quiet=True)
    for manifest in (aug, tr):
        df = pd.read_csv(manifest)
        assert all((manifest.parent / p).is_file() for p in df["source_path"]), manifest
        assert manifest.parent.stat().st_mode & 0o777 == run_dir.stat().st_mode & 0o777
