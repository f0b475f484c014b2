"""`duiit predict` as a new user meets it (issue 25, item 1; issue 23, item 5): the modality
comes from the run, unlabelled scans are predicted, the data settings it needs are taken,
inputs unlike the training images are warned about, folders of PNGs are read, and a
patient's slice predictions are combined into a per-patient table."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, assert_one_line_error, cli, snapshot, write_dicom
from PIL import Image

from duiit import runs
from duiit.config import DataConfig, load_config
from duiit.data import load_manifest
from duiit.data.profile import profile, unlike
from duiit.data.readers import image_files, read_image
from duiit.evaluation.metrics import prediction_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def run(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A target-only run on the phantom's CT."""
    out = tmp_path_factory.mktemp("predict") / "run"
    cfg = load_config(overrides=[*TINY, "train.steps=20", "train.eval_every=10"])
    runs.train(phantom_dir / "ct.csv", [], out, cfg, method="target_only", quiet=True)
    return out


def _manifest(phantom_dir: Path, path: Path, drop: tuple[str, ...] = (), **cols: object) -> Path:
    """The phantom's CT manifest with absolute paths, some columns dropped or set."""
    df = pd.read_csv(phantom_dir / "ct.csv", dtype=str).drop(columns=list(drop))
    df["path"] = [str(phantom_dir / p) for p in df["path"]]
    df.assign(**cols).to_csv(path, index=False)
    return path


def _ct_png(
    phantom_dir: Path, folder: Path, window: tuple[float, float] = (40, 120), volume: int = 0
) -> Path:
    """A phantom CT volume's slices as 8-bit PNGs windowed at `window` (level, width), as a
    viewer saves them (CT-ICH's JPGs are 40/120)."""
    folder.mkdir(parents=True)
    stored = read_image(sorted((phantom_dir / "CT").glob("*.nii.gz"))[volume]).pixels[..., 0]
    level, width = window
    unit = np.clip((stored - (level - width / 2)) / width, 0, 1)
    for k, img in enumerate(np.round(unit * 255).astype(np.uint8)):
        Image.fromarray(img).save(folder / f"slice{k}.png")
    return folder


def test_the_modality_comes_from_the_run_not_the_file_name(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """`new_ct.csv` without a modality column made the rows NEW_CT, read as raw values
    rather than HU: the same scans predicted otherwise than from `ct.csv` or as files."""
    reference = runs.predict(run, [phantom_dir / "ct.csv"], tmp_path / "a.csv", quiet=True)
    new = _manifest(phantom_dir, tmp_path / "new_ct.csv", drop=("modality",))
    named = runs.predict(run, [new], tmp_path / "b.csv", quiet=True)
    np.testing.assert_allclose(named.images["prediction"], reference.images["prediction"])
    first = sorted((phantom_dir / "CT").glob("*.nii.gz"))[0]
    as_file = runs.predict(run, [first], tmp_path / "c.csv", quiet=True)
    np.testing.assert_allclose(as_file.images["prediction"], reference.images["prediction"][:2])


def test_rows_of_another_modality_are_refused(run: Path, phantom_dir: Path, tmp_path: Path) -> None:
    """MRI rows through a CT model were predicted without a word."""
    new = _manifest(phantom_dir, tmp_path / "new.csv")
    new.write_text(new.read_text() + f"{phantom_dir / 'MRI' / 'MRI-000-0000.nii.gz'},50,m,MRI\n")
    before = snapshot(tmp_path)
    res = cli("predict", run, "--input", new, "--out", tmp_path / "p.csv", "-q")
    assert_one_line_error(res, "new.csv, line 102: modality MRI is not CT", "remove the MRI rows")
    assert snapshot(tmp_path) == before


def test_unlabelled_scans_are_predicted_and_labels_give_scores(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """`label` was required, so new scans could not be predicted; with labels, the scores
    are printed."""
    for name, kwargs in (("nolabel.csv", {"drop": ("label",)}), ("blank.csv", {"label": ""})):
        res = cli("predict", run, "--input", _manifest(phantom_dir, tmp_path / name, **kwargs),
                  "--out", tmp_path / f"{name}.out.csv", "-q")  # fmt: skip
        assert res.code == 0, res.err
        df = pd.read_csv(tmp_path / f"{name}.out.csv")
        assert "label" not in df and df["prediction"].notna().all() and len(df) == 200
        assert "scores on" not in res.out
    res = cli("predict", run, "--input", phantom_dir / "ct.csv", "--out", tmp_path / "l.csv")
    assert res.code == 0, res.err
    df = pd.read_csv(tmp_path / "l.csv")
    scores = prediction_metrics(df["prediction"], df["label"], None, df["patient_id"])
    expect = "  ".join(f"{k} {v:.4g}" for k, v in scores.items())
    assert f"scores on the 200 labelled images: {expect}" in res.out


def test_data_settings_for_the_files_are_taken_the_others_refused(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """A warning advised data.display_window=[40,120], but predict took no settings, and a
    display_window column was refused (the rows were of modality PNGS)."""
    pngs = _ct_png(phantom_dir, tmp_path / "pngs")
    rows = [f"pngs/slice{k}.png,,p" for k in range(2)]
    (tmp_path / "pngs.csv").write_text("path,label,patient_id\n" + "\n".join(rows) + "\n")
    (tmp_path / "window.csv").write_text(
        "path,patient_id,display_window\n" + "\n".join(f"{r[:-3]},p,40/120" for r in rows) + "\n"
    )
    by_column = runs.predict(run, [tmp_path / "window.csv"], tmp_path / "a.csv", quiet=True)
    res = cli("predict", run, "--input", tmp_path / "pngs.csv", "--out", tmp_path / "b.csv",
              "--set", "data.display_window=[40,120]", "-q")  # fmt: skip
    assert res.code == 0 and "warning" not in res.err, res.err
    by_setting = pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(by_setting["prediction"], by_column.images["prediction"])
    assert by_column.unlike == 0
    for bad in ("data.image_size=64", "train.steps=3"):
        res = cli("predict", run, "--input", pngs, "--out", tmp_path / "c.csv", "--set", bad)
        assert_one_line_error(
            res, f"--set {bad}: predict takes only data.units, data.display_window, data.channel"
        )
    res = cli("predict", run, "--input", pngs, "--out", tmp_path / "c.csv", "--set", "data.units=x")
    assert_one_line_error(res, "invalid --set: data.units:")


def test_inputs_unlike_the_training_images_are_warned_about(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """Noise, colour and wrongly shaped images got confident ages without a word; scans like
    the training ones (the phantom's own) are never warned about."""
    res = cli("predict", run, "--input", phantom_dir / "ct.csv", "--out", tmp_path / "ok.csv")
    assert res.code == 0 and "warning" not in res.err, res.err
    assert pd.read_csv(tmp_path / "ok.csv")["unlike_training"].isna().all()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.uniform(-1000, 1000, (32, 32)).astype(np.float32))
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "colour.png")
    slice0 = read_image(sorted((phantom_dir / "CT").glob("*.nii.gz"))[0]).pixels[0, ..., 0]
    np.save(tmp_path / "thin.npy", slice0[12:20])  # 8 x 32 px
    odd = [tmp_path / n for n in ("noise.npy", "colour.png", "thin.npy")]
    res = cli(
        "predict", run, *(a for p in odd for a in ("--input", p)), "--out", tmp_path / "p.csv"
    )
    assert res.code == 0, res.err
    [warning] = [line for line in res.err.splitlines() if "training images" in line]
    assert warning.startswith("warning: 3 of 3 image(s) are unlike the run's training images")
    why = pd.read_csv(tmp_path / "p.csv").set_index("patient_id")["unlike_training"]
    assert "mean intensity" in why["noise.npy"] or "share of pixels" in why["noise.npy"]
    assert "a colour image" in why["colour.png"] and "read as display units" in why["colour.png"]
    assert "width/height 4" in why["thin.npy"]


@pytest.mark.skipif(
    not (SHARED / "ct_ich_subset" / "manifest.csv").exists(),
    reason="the real CT-ICH subset is not in ../shared/data on this machine",
)
def test_real_ct_like_the_training_scans_is_not_warned_about() -> None:
    """Real CT-ICH slices (HU DICOMs of 16 patients, and brain-window JPGs of 2 more): the
    profile of some patients' slices passes every slice of the others."""
    [ct] = load_manifest(
        SHARED / "ct_ich_subset" / "manifest.csv",
        DataConfig(image_size=64, display_window=(40, 120)),
        quiet=True,
    )
    patients = np.unique(ct.patient_ids)
    train = np.isin(ct.patient_ids, patients[::2])
    trained = profile(ct.subset(np.flatnonzero(train)))
    assert unlike(trained, ct.subset(np.flatnonzero(~train))) == [""] * int((~train).sum())


def test_a_folder_of_pngs_is_one_patient_and_a_mixed_folder_is_named(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """A folder of PNGs ended in pydicom's "InvalidDicomError ... force=True"."""
    pngs = _ct_png(phantom_dir, tmp_path / "patient7")
    res = cli("predict", run, "--input", pngs, "--out", tmp_path / "p.csv",
              "--set", "data.display_window=[40,120]", "-q")  # fmt: skip
    assert res.code == 0, res.err
    df = pd.read_csv(tmp_path / "p.csv")
    assert list(df["patient_id"]) == ["patient7", "patient7"] and len(df) == 2
    series = tmp_path / "series"
    series.mkdir()
    write_dicom(series / "1.dcm", np.full((32, 32), 1064), position=0.0)
    (series / "note.png").write_bytes((pngs / "slice0.png").read_bytes())
    res = cli("predict", run, "--input", series, "--out", tmp_path / "q.csv")
    assert_one_line_error(res, "series holds note.png, which is not a DICOM file")


def test_per_patient_predictions_with_their_spread(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """Issue 23, item 5: the report's patient-level view is a first-class output: one row per
    patient (the mean of its slice predictions, their sd and count, its label), written
    beside the per-image CSV, printed, and the same numbers the patient-level scores use."""
    res = cli("predict", run, "--input", phantom_dir / "ct.csv", "--out", tmp_path / "p.csv")
    assert res.code == 0, res.err
    images = pd.read_csv(tmp_path / "p.csv")
    patients = pd.read_csv(tmp_path / "p_patients.csv")
    assert list(patients.columns) == [
        "patient_id",
        "slices",
        "prediction",
        "prediction_sd",
        "label",
    ]
    by_hand = images.groupby("patient_id", sort=False)["prediction"].agg(["mean", "std", "size"])
    np.testing.assert_allclose(patients["prediction"], by_hand["mean"], rtol=1e-6)
    np.testing.assert_allclose(patients["prediction_sd"], by_hand["std"], rtol=1e-5)
    assert (patients["slices"] == 2).all() and len(patients) == 100
    scores = prediction_metrics(images["prediction"], images["label"], None, images["patient_id"])
    mse = float(((patients["prediction"] - patients["label"]) ** 2).mean())
    assert scores["patient_mse"] == pytest.approx(mse)
    first = patients.iloc[0]
    assert f"{first['prediction']:.4g}" in res.out and first["patient_id"] in res.out
    assert f"100 patients -> {tmp_path / 'p_patients.csv'}" in res.out


def test_patients_in_folders_of_one_name_stay_apart_and_display_images_take_the_runs_window(
    phantom_dir: Path, tmp_path: Path
) -> None:
    """CT-ICH's layout (`Patients_CT/049/brain/*.jpg`): two patients' `brain` folders were
    predicted as one patient `brain`, and a run trained on its 40/120 JPGs called every JPG
    given to predict "unlike the training images" (read as display values, not HU) though
    it read them exactly as in training."""
    ct = pd.read_csv(phantom_dir / "ct.csv")
    rows = []
    for k, (label, pid) in enumerate(zip(ct["label"][::2], ct["patient_id"][::2], strict=True)):
        folder = _ct_png(phantom_dir, tmp_path / "Patients" / pid / "brain", volume=k)
        rows += [(f"Patients/{pid}/brain/{f.name}", label, pid) for f in sorted(folder.iterdir())]
    manifest = pd.DataFrame(rows, columns=["path", "label", "patient_id"])
    manifest = manifest.assign(modality="CT", display_window="40/120")
    manifest.to_csv(tmp_path / "train.csv", index=False)
    run = tmp_path / "run"
    cfg = load_config(overrides=TINY)
    runs.train(tmp_path / "train.csv", [], run, cfg, method="features_ridge", quiet=True)
    new = [tmp_path / "Patients" / pid / "brain" for pid in ct["patient_id"][:4:2]]
    res = cli("predict", run, "--input", new[0], "--input", new[1], "--out", tmp_path / "p.csv")
    assert res.code == 0 and "warning" not in res.err, res.err
    assert "note: 4 display image(s) read as saved with the CT window 40/120" in res.out
    got = pd.read_csv(tmp_path / "p.csv")
    assert list(got["patient_id"]) == [f"{p}/brain" for p in ct["patient_id"][:4:2] for _ in "ab"]
    assert got["unlike_training"].isna().all()
    manifest[:4].to_csv(tmp_path / "new.csv", index=False)
    stated = runs.predict(run, [tmp_path / "new.csv"], tmp_path / "q.csv", quiet=True)
    np.testing.assert_allclose(got["prediction"], stated.images["prediction"])
    other = cli("predict", run, "--input", new[0], "--out", tmp_path / "r.csv",
                "--set", "data.display_window=[40,400]")  # fmt: skip
    assert "note:" not in other.out and "mean intensity" in other.err  # the user's window wins
    assert not np.allclose(pd.read_csv(tmp_path / "r.csv")["prediction"], got["prediction"][:2])
    twice = cli("predict", run, "--input", new[0], "--input", new[0], "--out", tmp_path / "s.csv")
    assert_one_line_error(twice, f"{new[0]} is given twice", "give each input once")


def test_display_images_into_a_run_trained_on_hu_are_told_how_to_give_their_window(
    run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """The warning said "read as display units, the training images as hu" and no more."""
    pngs = _ct_png(phantom_dir, tmp_path / "pngs")
    res = cli("predict", run, "--input", pngs, "--out", tmp_path / "p.csv")
    assert res.code == 0, res.err
    why = pd.read_csv(tmp_path / "p.csv")["unlike_training"]
    assert why.str.contains("give the window it was saved with: --set data.display_window").all()


def test_a_folders_images_are_listed_with_numbers_as_numbers(tmp_path: Path) -> None:
    """CT-ICH's slices 1.jpg ... 33.jpg were listed 1, 10, 11, ..., 2, 20: a predictions CSV
    out of the stack's order."""
    names = ["10.png", "2.png", "1.png", "b2.png", "b10.png"]
    for name in names:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name)
    listed = [p.name for p in image_files(tmp_path)]
    assert listed == ["1.png", "2.png", "10.png", "b2.png", "b10.png"]


def test_a_record_without_weights_is_named_as_such(run: Path, tmp_path: Path) -> None:
    """A committed record (results/, made by scripts/keep_runs.py) was told "model.pt does
    not exist: is this a finished run folder?", though it is one."""
    record = tmp_path / "record"
    shutil.copytree(run, record)
    (record / "model.pt").unlink()
    res = cli("predict", record, "--input", run / "split.csv", "--out", tmp_path / "p.csv")
    assert_one_line_error(res, f"{record} is a finished run without its weights (model.pt)")
    res = cli("predict", tmp_path / "nothing", "--input", run, "--out", tmp_path / "p.csv")
    assert_one_line_error(res, "nothing is not a run folder (no config.yaml)")
