"""`duiit data import`: each dataset's download layout (generated here in miniature, and the
real shared files laid out as published, by symlinks) -> a manifest that loads end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import TINY, write_dicom
from PIL import Image

from duiit import runs
from duiit.config import DataConfig, load_config
from duiit.data import load_manifest
from duiit.data.importers import Options, import_dataset
from duiit.errors import DuiitError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CFG = DataConfig(image_size=8)


def _rgb(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[2:6, 2:6] = (value // 2, value, value // 3)  # pre-contrast, FLAIR, post-contrast
    Image.fromarray(img).save(path)
    return path


def _garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image at all")
    return path


def _import(name: str, src: Path, out: Path, **options) -> tuple[pd.DataFrame, object]:
    report = import_dataset(name, src, out, Options(**options))
    return pd.read_csv(out, dtype=str, keep_default_na=False), report


# ------------------------------------------------------------------ lgg-kaggle3m


@pytest.fixture
def lgg(tmp_path: Path) -> Path:
    """kaggle_3m with: a good case (3 tif slices, 1 png, masks), a case without age, one
    unreadable, one holding only masks, one missing from data.csv; inside a download folder."""
    root = tmp_path / "lgg-mri-segmentation" / "kaggle_3m"
    for case, n in [("TCGA_AA_0001_20000101", (1, 2, 10)), ("TCGA_AA_0002_20010101", (1,))]:
        for k in n:
            _rgb(root / case / f"{case}_{k}.tif")
            _rgb(root / case / f"{case}_{k}_mask.tif", 255)
    _rgb(root / "TCGA_AA_0001_20000101" / "TCGA_AA_0001_20000101_3.png")
    _garbage(root / "TCGA_AA_0003_20020101" / "TCGA_AA_0003_20020101_1.tif")
    _rgb(root / "TCGA_AA_0004_20030101" / "TCGA_AA_0004_20030101_1_mask.tif")
    _rgb(root / "TCGA_AA_0005_20040101" / "TCGA_AA_0005_20040101_1.tif")
    (root / "data.csv").write_text(
        "Patient,gender,age_at_initial_pathologic\n"
        "TCGA_AA_0001,1,50\nTCGA_AA_0002,2,\nTCGA_AA_0003,1,60\nTCGA_AA_0004,2,70\n"
    )
    return tmp_path / "lgg-mri-segmentation"


def test_lgg_rows_per_slice_masks_skipped_patients_named(lgg: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "deep" / "mri.csv"  # paths must work from any folder
    rows, report = _import("lgg-kaggle3m", lgg, out)
    case = "TCGA_AA_0001_20000101"
    assert rows["path"].tolist() == [
        f"../../lgg-mri-segmentation/kaggle_3m/{case}/{case}_{k}.{ext}"
        for k, ext in [(1, "tif"), (2, "tif"), (3, "png"), (10, "tif")]
    ]
    assert set(rows["patient_id"]) == {"TCGA_AA_0001"} and set(rows["label"]) == {"50.0"}
    assert set(rows["channel"]) == {"1"} and set(rows["units"]) == {"display"}
    assert (report.patients, report.rows, report.label_range) == (1, 4, (50.0, 50.0))
    assert dict(report.skipped) == {
        "TCGA_AA_0002": "blank age in data.csv",
        "TCGA_AA_0003": "unreadable: TCGA_AA_0003_20020101_1.tif: UnidentifiedImageError: "
        f"cannot identify image file '{lgg}/kaggle_3m/TCGA_AA_0003_20020101/"
        "TCGA_AA_0003_20020101_1.tif'",
        "TCGA_AA_0004": "no images",
        "TCGA_AA_0005": "not listed in data.csv",
    }
    [c] = load_manifest(out, CFG)
    assert c.modality == "MRI" and len(c) == 4
    assert float(c.images[0, 0, 4, 4]) == pytest.approx(100 / 127.5 - 1, abs=0.01)  # FLAIR


def test_lgg_evenly_spaced_slices_and_refusals(lgg: Path, tmp_path: Path) -> None:
    rows, _ = _import("lgg-kaggle3m", lgg, tmp_path / "mri.csv", slices=2)  # of 1, 2, 3, 10
    assert [p.rsplit("_", 1)[1] for p in rows["path"]] == ["2.tif", "3.png"]  # ends excluded
    with pytest.raises(DuiitError, match=r"mri.csv already exists; .* --force"):
        import_dataset("lgg-kaggle3m", lgg, tmp_path / "mri.csv")
    (tmp_path / "not-lgg" / "TCGA_no_case").mkdir(parents=True)
    with pytest.raises(DuiitError, match=r"does not look like this dataset: expected case folders"):
        import_dataset("lgg-kaggle3m", tmp_path / "not-lgg", tmp_path / "x.csv")
    (lgg / "kaggle_3m" / "data.csv").unlink()
    with pytest.raises(DuiitError, match=r"no data.csv in .*kaggle_3m; give the age table"):
        import_dataset("lgg-kaggle3m", lgg, tmp_path / "x.csv")


# ------------------------------------------------------------------ ct-ich


def _demographics(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Patient_demographics.csv").write_text(
        '"Patient Number","Age\n(years)","Gender"\n49,35,"Male"\n50,,"Female"\n'
        '51,5,"Male"\n52,0.583333333,"Female"\n'
    )


@pytest.fixture
def ct_ich(tmp_path: Path) -> Path:
    """Both releases in one versioned folder: JPG stacks (brain, bone, masks) and NIfTI."""
    root = tmp_path / "download" / "ct-ich-1.3.1"
    _demographics(root)
    jpg = root / "Patients_CT"
    for k in (1, 2, 3):
        Image.fromarray(np.full((8, 8), 85, np.uint8)).save(_rgb(jpg / "049/brain" / f"{k}.jpg"))
    _rgb(jpg / "049/brain/2_HGE_Seg.jpg", 255)
    _rgb(jpg / "049/bone/1.jpg", 255)
    _rgb(jpg / "050/brain/1.jpg")  # no age
    _garbage(jpg / "051/brain/1.jpg")
    (jpg / "052/brain").mkdir(parents=True)  # no images
    vol = np.full((8, 8, 4), 20, dtype=np.int16)  # 20 HU inside, 4 axial slices
    vol[0] = -1000  # a strip of air: no slice is blank
    (root / "ct_scans").mkdir()
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "ct_scans" / "049.nii")
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "ct_scans" / "052.nii.gz")
    _garbage(root / "ct_scans" / "051.nii")
    return tmp_path / "download"


def test_ct_ich_jpg_layout(ct_ich: Path, tmp_path: Path) -> None:
    rows, report = _import("ct-ich", ct_ich, tmp_path / "ct.csv", layout="jpg")
    assert [p.split("Patients_CT/")[1] for p in rows["path"]] == [
        "049/brain/1.jpg",
        "049/brain/2.jpg",
        "049/brain/3.jpg",
    ]
    assert set(rows["units"]) == {"display"} and set(rows["display_window"]) == {"40/120"}
    assert report.patients == 1 and report.label_range == (35.0, 35.0)
    skipped = dict(report.skipped)
    assert skipped["050"] == "blank age in Patient_demographics.csv"
    assert skipped["051"].startswith("unreadable: 1.jpg") and skipped["052"] == "no images"
    [c] = load_manifest(tmp_path / "ct.csv", CFG)
    # pixel 85 of the 40/120 window = 20 HU -> -0.5 in the run's 40/80 window, as NIfTI below
    assert c.modality == "CT" and float(c.images[0, 0, 4, 4]) == pytest.approx(-0.5, abs=0.02)


def test_ct_ich_nifti_layout_is_the_default_when_both_are_there(
    ct_ich: Path, tmp_path: Path
) -> None:
    rows, report = _import("ct-ich", ct_ich, tmp_path / "ct.csv")
    assert rows["path"].str.rsplit("/", n=1).str[1].tolist() == ["049.nii", "052.nii.gz"]
    assert set(rows["units"]) == {"hu"} and report.label_range == (0.583333333, 35.0)
    assert report.notes == ["both layouts present: read the NIfTI volumes (--layout jpg for JPGs)"]
    assert dict(report.skipped)["051"].startswith("unreadable: 051.nii")
    [c] = load_manifest(tmp_path / "ct.csv", CFG)
    assert len(c) == 8 and float(c.images[:, 0, 4, 4].float().mean()) == pytest.approx(-0.5)
    rows, _ = _import("ct-ich", ct_ich, tmp_path / "ct2.csv", slices=2)
    assert rows["slice"].tolist() == ["1", "2", "1", "2"]  # of 0..3, ends excluded
    assert len(load_manifest(tmp_path / "ct2.csv", CFG)[0]) == 4


def test_ct_ich_not_that_dataset(tmp_path: Path) -> None:
    _demographics(tmp_path / "only-a-table")
    with pytest.raises(
        DuiitError, match=r"expected Patients_CT/<nnn>/brain/<k>.jpg .* or ct_scans"
    ):
        import_dataset("ct-ich", tmp_path / "only-a-table", tmp_path / "x.csv")
    (tmp_path / "only-a-table" / "Patients_CT").mkdir()
    with pytest.raises(DuiitError, match=r"has no ct_scans/ folder for --layout nifti"):
        import_dataset(
            "ct-ich", tmp_path / "only-a-table", tmp_path / "x.csv", Options(layout="nifti")
        )
    with pytest.raises(
        DuiitError, match=r"head-neck-pet-ct has no layout 'jpg'; choose one of: auto"
    ):
        import_dataset("head-neck-pet-ct", tmp_path, tmp_path / "x.csv", Options(layout="jpg"))


# ------------------------------------------------------------------ head-neck-pet-ct


def _series(folder: Path, modality: str, patient: str, z: list[float], **attributes) -> None:
    folder.mkdir(parents=True)
    for k, pos in enumerate(z):
        stored = np.full((8, 8), 100 * (k + 1), dtype=np.uint16)
        stored[0, 0] = 0
        write_dicom(
            folder / f"1-{k + 1:03d}.dcm",
            stored,
            intercept=0,
            position=pos,
            modality=modality,
            PatientID=patient,
            **attributes,
        )


@pytest.fixture
def hn(tmp_path: Path) -> Path:
    """TCIA layout: patient 001 with CT, an attenuation-corrected PET series written out of
    order and a longer uncorrected one; 002 without age; 003 unreadable; 004 CT only."""
    root = tmp_path / "Head-Neck-PET-CT"
    _series(root / "HN-AA-001/study/2.000-CT", "CT", "HN-AA-001", [0, 1])
    _series(root / "HN-AA-001/study/3.000-PET AC", "PT", "HN-AA-001", [30, 10, 20, 40],
            CorrectedImage=["DECY", "ATTN"])  # fmt: skip
    _series(root / "HN-AA-001/study/4.000-PET NAC", "PT", "HN-AA-001", [1, 2, 3, 4, 5, 6])
    _series(root / "HN-AA-002/study/3.000-PET AC", "PT", "HN-AA-002", [1, 2])
    _garbage(root / "HN-AA-003/study/3.000-PET AC/1-001.dcm")
    _series(root / "HN-AA-004/study/2.000-CT", "CT", "HN-AA-004", [0])
    pd.DataFrame(
        {"Patient #": ["HN-AA-001", "HN-AA-003", "HN-AA-004"], "Age": [63, 70, 80]}
    ).to_csv(tmp_path / "ages.csv", index=False)
    return root


def test_head_neck_pet_series_chosen_ordered_and_spaced(hn: Path, tmp_path: Path) -> None:
    rows, report = _import(
        "head-neck-pet-ct", hn, tmp_path / "pet.csv", labels=tmp_path / "ages.csv"
    )
    assert rows["path"].str.split("/").str[-2:].str.join("/").tolist() == [
        "3.000-PET AC/1-002.dcm",  # z 10, 20, 30, 40
        "3.000-PET AC/1-003.dcm",
        "3.000-PET AC/1-001.dcm",
        "3.000-PET AC/1-004.dcm",
    ]
    assert set(rows["modality"]) == {"PET"} and set(rows["units"]) == {"raw"}
    assert (report.patients, report.label_range) == (1, (63.0, 63.0))
    skipped = dict(report.skipped)
    assert skipped["HN-AA-002"] == "not listed in ages.csv"
    assert skipped["HN-AA-003"].startswith("unreadable: 1-001.dcm: InvalidDicomError")
    assert skipped["HN-AA-004"] == "no PET series (found CT)"
    [c] = load_manifest(tmp_path / "pet.csv", CFG)
    assert c.modality == "PET" and len(c) == 4
    rows, _ = _import("head-neck-pet-ct", hn, tmp_path / "pet2.csv", labels=tmp_path / "ages.csv",
                      slices=2)  # fmt: skip
    files = rows["path"].str.rsplit("/", n=1).str[1]
    assert files.tolist() == ["1-003.dcm", "1-001.dcm"]  # z 20 and 30 of 10..40: ends excluded


def test_head_neck_ages_from_excel_sheets(hn: Path, tmp_path: Path) -> None:
    """TCIA ships the clinical table as Excel, one sheet per centre."""
    with pd.ExcelWriter(tmp_path / "clinical.xlsx") as writer:
        pd.DataFrame({"Patient #": ["HN-AA-001"], "Age": [63]}).to_excel(writer, sheet_name="A")
        pd.DataFrame({"note": ["no ages here"]}).to_excel(writer, sheet_name="readme")
        pd.DataFrame({"Patient #": ["HN-AA-002"], "Age": [41]}).to_excel(writer, sheet_name="B")
    _, report = _import(
        "head-neck-pet-ct", hn, tmp_path / "pet.csv", labels=tmp_path / "clinical.xlsx"
    )
    assert (report.patients, report.label_range) == (2, (41.0, 63.0))


def test_pet_in_suv_or_stored_units_loads_the_same(tmp_path: Path) -> None:
    """SUV = activity x (weight / dose), one factor per patient: per-file percentile scaling
    cancels it, so a series whose rescale slope carries that factor gives the same images."""
    stored = np.random.default_rng(0).integers(0, 30000, (2, 16, 16)).astype(np.uint16)
    for name, slope in (("bqml.dcm", 1.0), ("suv.dcm", 0.000314)):
        write_dicom(tmp_path / name, stored, slope=slope, intercept=0, modality="PT")
    (tmp_path / "pet.csv").write_text("path,label,patient_id\nbqml.dcm,60,a\nsuv.dcm,60,b\n")
    [c] = load_manifest(tmp_path / "pet.csv", DataConfig(image_size=16))
    np.testing.assert_allclose(c.images[:2].float(), c.images[2:].float(), atol=1e-3)


def test_head_neck_needs_labels_and_dicom(hn: Path, tmp_path: Path) -> None:
    with pytest.raises(DuiitError, match=r"give the age table with --labels \(TCIA's clinical"):
        import_dataset("head-neck-pet-ct", hn, tmp_path / "x.csv")
    ages = Options(labels=tmp_path / "ages.csv")
    with pytest.raises(DuiitError, match=r"expected TCIA's download layout <PatientID>/<study>"):
        import_dataset("head-neck-pet-ct", tmp_path / "nothing", tmp_path / "x.csv", ages)
    ct_only = hn / "HN-AA-004"
    with pytest.raises(DuiitError, match=r"holds DICOM series of CT but none of modality PT"):
        import_dataset("head-neck-pet-ct", ct_only, tmp_path / "x.csv", ages)
    (tmp_path / "other.csv").write_text("id,age\nHN-AA-001,63\n")
    wrong = Options(labels=tmp_path / "other.csv")
    with pytest.raises(DuiitError, match=r"other.csv has no columns 'Patient #' and 'Age' \(found"):
        import_dataset("head-neck-pet-ct", hn, tmp_path / "x.csv", wrong)


# ------------------------------------------------------------------ the command line


def test_cli_summary_and_one_line_failure(lgg: Path, tmp_path: Path) -> None:
    def duiit(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "duiit", "data", "import", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    res = duiit("lgg-kaggle3m", str(lgg), "--out", str(tmp_path / "mri.csv"))
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "lgg-kaggle3m: 1 patients, 4 rows, age 50 y ->" in text  # one age: not "50-50"
    assert "skipped 4:" in text and "TCGA_AA_0004: no images" in text
    res = duiit("ct-ich", str(lgg), "--out", str(tmp_path / "ct.csv"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "does not look like this dataset: expected Patients_CT" in " ".join(res.stderr.split())


# ------------------------------------------------------------------ the real files, as published


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"shared real data not found at {path} (only on the project machine)")


def test_lgg_real_files_in_the_kaggle_layout(tmp_path: Path) -> None:
    """The shared LGG copy is flat (images/<case>_<n>.png); link it into kaggle_3m/<case>/."""
    shared = SHARED / "lgg_mri_kaggle_3m"
    _need(shared)
    root = tmp_path / "kaggle_3m"
    for png in (shared / "images").glob("*.png"):
        case = png.stem.rsplit("_", 1)[0]
        (root / case).mkdir(parents=True, exist_ok=True)
        (root / case / png.name).symlink_to(png)
    (root / "data.csv").symlink_to(shared / "data.csv")
    rows, report = _import("lgg-kaggle3m", tmp_path, tmp_path / "mri.csv")
    assert (report.patients, report.rows, report.label_range) == (109, 545, (20.0, 75.0))
    assert report.skipped == []  # the shared copy left out TCGA_HT_A61B, whose age is missing
    expected = pd.read_csv(shared / "manifest.csv", dtype=str)
    assert sorted(zip(rows["patient_id"], rows["label"].astype(float), strict=True)) == sorted(
        zip(expected["patient_id"], expected["label"].astype(float), strict=True)
    )
    [c] = load_manifest(tmp_path / "mri.csv", DataConfig(image_size=16), quiet=True)
    assert len(c) == 545 and c.n_patients == 109


def test_ct_ich_real_jpgs_in_the_physionet_layout(tmp_path: Path) -> None:
    shared = SHARED / "ct_ich_subset"
    _need(shared)
    for jpg in (shared / "jpg_brain_window").glob("*.jpg"):
        patient, k = jpg.stem.split("_")
        brain = tmp_path / "Patients_CT" / patient / "brain"
        brain.mkdir(parents=True, exist_ok=True)
        (brain / f"{k}.jpg").symlink_to(jpg)
    (tmp_path / "Patient_demographics.csv").symlink_to(shared / "patient_demographics.csv")
    rows, report = _import("ct-ich", tmp_path, tmp_path / "ct.csv")
    assert (report.patients, report.rows, report.skipped) == (2, 54, [])
    ages = pd.read_csv(shared / "manifest.csv", dtype=str).groupby("patient_id")["label"].first()
    assert report.label_range == tuple(sorted(float(ages[p]) for p in ("054", "079")))
    [c] = load_manifest(tmp_path / "ct.csv", DataConfig(image_size=16), quiet=True)
    assert len(c) == 54 and set(c.meta["window"]) == {"40/120"}


def test_ct_ich_complete_release_where_it_lies(tmp_path: Path) -> None:
    """The paper's CT set, all 82 patients in the release's own layout, imported in place;
    only a manifest is written (a few seconds), and one middle slice each is loaded."""
    shared = SHARED / "ct_ich"
    _need(shared)
    rows, report = _import("ct-ich", shared, tmp_path / "ct.csv")
    assert (report.patients, report.rows, report.skipped, report.notes) == (82, 2501, [], [])
    assert report.summary("ct-ich").startswith("ct-ich: 82 patients, 2501 rows, age 0.003–72 y")
    ages = rows.groupby("patient_id")["label"].agg(set)
    assert (ages.map(len) == 1).all()  # one age per patient
    # Patient_demographics.csv: a newborn, two infants, an adult, the oldest
    listed = {"085": 0.002747253, "050": 0.583333333, "066": 0.6, "049": 35, "071": 72}
    assert {p: float(next(iter(ages[p]))) for p in listed} == listed
    # Every slice the release's per-slice table lists, in slice order, brain window only.
    slices = pd.read_csv(shared / "hemorrhage_diagnosis.csv", encoding="utf-8-sig")
    per_patient = slices.groupby(slices["PatientNumber"].map("{:03d}".format)).size()
    assert rows.groupby("patient_id").size().to_dict() == per_patient.to_dict()
    first = rows[rows["patient_id"] == "049"]["path"].str.split("Patients_CT/").str[1]
    assert first.tolist() == [f"049/brain/{k}.jpg" for k in range(1, per_patient["049"] + 1)]
    assert set(rows["display_window"]) == {"40/120"}

    rows, _ = _import("ct-ich", shared, tmp_path / "middle.csv", slices=1)
    assert rows["path"].str.endswith("/049/brain/17.jpg").sum() == 1  # of 33 slices
    [c] = load_manifest(tmp_path / "middle.csv", DataConfig(image_size=16), quiet=True)
    assert (len(c), c.n_patients) == (82, 82) and set(c.meta["window"]) == {"40/120"}


def test_every_lgg_flair_slice_reads_as_it_lies() -> None:
    """The full LGG FLAIR set (issue 26's source) loads from its own manifest, unchanged:
    3841 slices of 109 patients with their ages; `data.source_min_foreground=0.1` (the real
    grid's choice, docs/results-real.md) leaves out the 190 near-empty stack ends at 64 px
    and no patient, and what it leaves out holds almost no head."""
    manifest = SHARED / "lgg_mri_flair128" / "manifest.csv"
    _need(manifest)
    [mri] = load_manifest(manifest, DataConfig(image_size=64), quiet=True)
    assert (len(mri), mri.n_patients, mri.modality) == (3841, 109, "MRI")
    ages = pd.read_csv(manifest).groupby("patient_id")["label"].first()
    got = pd.Series(mri.labels.numpy(), index=mri.patient_ids).groupby(level=0).first()
    assert np.allclose(got.sort_index(), ages.sort_index())
    kept = mri.with_foreground(0.1)
    assert (len(kept), kept.n_patients) == (3651, 109)
    dropped = np.setdiff1d(np.arange(len(mri)), np.flatnonzero(mri.foreground() >= 0.1))
    assert np.median(mri.foreground()[dropped]) < 0.03 < np.median(kept.foreground())


def test_short_real_ct_from_mri_run(tmp_path: Path) -> None:
    """The paper's pair of real datasets end to end at toy size: CT-ICH imported from its
    release layout (the middle slice of each of the 82 patients) as the target, the middle
    slice of each patient of the full LGG FLAIR set as the source (referenced in place), a
    short DUIIT run with the predictor recipe's network and a quarter of P's batch in
    translations, scored on held-out CT patients."""
    ct, lgg = SHARED / "ct_ich", SHARED / "lgg_mri_flair128"
    _need(ct)
    _need(lgg)
    import_dataset("ct-ich", ct, tmp_path / "ct.csv", Options(slices=1))
    rows = pd.read_csv(lgg / "manifest.csv", dtype=str)
    middle = rows["slice_number"].astype(int) == (rows["n_slices_in_case"].astype(int) + 1) // 2
    mri = rows[middle]
    mri.assign(path=[str(lgg / p) for p in mri["path"]]).to_csv(tmp_path / "mri.csv", index=False)
    cfg = load_config(
        overrides=[
            *TINY,
            "predictor.network=cnn",
            "predictor.width=0.25",
            "predictor.source_share=0.25",
            "data.source_min_foreground=0.1",
            "train.steps=6",
            "train.eval_every=3",
        ]
    )
    result = runs.train(
        tmp_path / "ct.csv", [tmp_path / "mri.csv"], tmp_path / "run", cfg, quiet=True
    )
    n = result["n"]
    assert (result["target"], result["sources"]) == ("CT", ["MRI"])
    assert (n["train"] + n["val"] + n["test"], n["MRI"]) == (82, 109)
    assert len(result["test_patients"]) >= 1 and np.isfinite(list(result["metrics"].values())).all()
