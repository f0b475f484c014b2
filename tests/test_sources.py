"""Reading users' files: every format, intensity conventions, and every bad input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_dicom, write_manifest
from PIL import Image

from duiit.config import DataConfig
from duiit.data import load_cohorts, load_manifest
from duiit.data.intensity import normalise
from duiit.data.manifest import read_age_column
from duiit.errors import DuiitError

CFG = DataConfig(image_size=16)


def test_dicom_rescale_to_hu_and_ct_window(tmp_path: Path) -> None:
    stored = np.full((20, 20), 1024 + 40, dtype=np.uint16)  # 40 HU after intercept -1024
    stored[:, :10] = 0  # -1024 HU: air
    write_dicom(tmp_path / "a.dcm", stored)
    write_manifest(tmp_path / "ct.csv", ["a.dcm,50,p1"])
    [c] = load_manifest(tmp_path / "ct.csv", DataConfig(image_size=20))
    img = c.images[0, 0].float()
    assert c.modality == "CT" and c.labels.tolist() == [50.0]
    assert img[:, 15].abs().max() < 0.01  # brain-window level 40 HU -> 0
    assert (img[:, 2] == -1).all()  # air -> bottom of the window


def test_multiframe_dicom_and_series_folder(tmp_path: Path) -> None:
    def frame(hu: int) -> np.ndarray:
        f = np.full((8, 8), 1024 + hu, dtype=np.uint16)
        f[:, 0] = 0  # a column of air, so no frame is blank
        return f

    write_dicom(tmp_path / "multi.dcm", np.stack([frame(v) for v in (0, 40, 80)]))
    series = tmp_path / "series"
    series.mkdir()
    for k, z in enumerate((30.0, 10.0, 20.0)):  # written out of order: sorted by position
        write_dicom(series / f"s{k}", frame(int(z)), position=z)
    write_manifest(tmp_path / "ct.csv", ["multi.dcm,1,p1", "series,2,p2"])
    [c] = load_manifest(tmp_path / "ct.csv", DataConfig(image_size=8))
    assert len(c) == 6
    centre = c.images[:, 0, 4, 4].float().tolist()
    np.testing.assert_allclose(centre, [-1.0, 0.0, 1.0, -0.75, -0.5, -0.25], atol=0.01)
    assert c.patient_ids.tolist() == ["p1"] * 3 + ["p2"] * 3


def test_nifti_volume_drops_empty_slices_and_picks_one(tmp_path: Path) -> None:
    vol = np.zeros((12, 12, 4), dtype=np.float32)
    vol[2:10, 2:10, 1] = 5.0
    vol[2:10, 2:10, 2] = 9.0  # slice 0 and 3 are empty
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    write_manifest(
        tmp_path / "mri.csv",
        ["v.nii.gz,30,p1", "v.nii.gz,31,p2,2"],
        header="path,label,patient_id,slice",
    )
    [c] = load_manifest(tmp_path / "mri.csv", DataConfig(image_size=12))
    assert c.modality == "MRI" and len(c) == 3
    assert c.meta["slice"].tolist() == [1, 2, 2]


def test_png_8_and_16_bit_rgb_and_npy_stack(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 32), (32, 1)).astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    Image.fromarray(np.stack([ramp] * 3, -1)).save(tmp_path / "b.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "c.png")  # 0..65535
    np.save(tmp_path / "d.npy", np.stack([ramp, ramp[::-1]]).astype(np.float32))
    write_manifest(tmp_path / "pet.csv", ["a.png,1,p1", "b.png,2,p2", "c.png,3,p3", "d.npy,4,p4"])
    [c] = load_manifest(tmp_path / "pet.csv", DataConfig(image_size=32))
    assert len(c) == 5
    for i in range(4):  # same full-range ramp, whatever the format: same normalised image
        np.testing.assert_allclose(c.images[i].float(), c.images[0].float(), atol=0.02)
    assert c.images[0, 0, 0, 0] == -1 and c.images[0, 0, 0, -1] == 1


def test_resize_pads_non_square_images(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.ones((10, 40), dtype=np.float32) * np.arange(40))
    write_manifest(tmp_path / "mri.csv", ["wide.npy,1,p1"])
    [c] = load_manifest(tmp_path / "mri.csv", DataConfig(image_size=20))
    assert c.images.shape == (1, 1, 20, 20)
    assert (c.images[0, 0, 0] == -1).all()  # padded background rows above the image


def test_percentile_normalisation_is_robust_to_outliers() -> None:
    arr = np.linspace(0, 100, 10_000).astype(np.float32)
    arr[0] = 1e6  # one hot pixel must not squash the rest
    out = normalise(arr, "raw", DataConfig())
    assert out.min() == -1 and out.max() == 1
    assert abs(float(np.median(out))) < 0.05


def test_classification_labels_share_indices_across_manifests(tmp_path: Path) -> None:
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", np.eye(8, dtype=np.float32))
    write_manifest(tmp_path / "ct.csv", ["a.npy,young,p1", "b.npy,old,p2"])
    write_manifest(tmp_path / "mri.csv", ["a.npy,middle,q1"])
    cfg = DataConfig(image_size=8, task="classification")
    t, [s] = load_cohorts(tmp_path / "ct.csv", [tmp_path / "mri.csv"], cfg)
    assert t.classes == s.classes == ("middle", "old", "young")
    assert t.labels.tolist() == [2, 1] and s.labels.tolist() == [0]


def test_near_empty_source_slices_are_left_out_and_the_target_never(tmp_path: Path) -> None:
    """`data.source_min_foreground` drops source slices holding less head than it (a disk
    of 3 % of the image) and keeps larger ones (44 %); the target keeps its small one; a
    threshold no source slice reaches is one clear error."""
    yy, xx = np.mgrid[:32, :32]
    for name, r in (("small", 3), ("large", 12), ("large2", 12)):
        disk = ((yy - 16) ** 2 + (xx - 16) ** 2 <= r * r).astype(np.float32) * 100
        np.save(tmp_path / f"{name}.npy", disk)
    write_manifest(tmp_path / "ct.csv", ["small.npy,1,c1", "large.npy,2,c2"])
    write_manifest(tmp_path / "mri.csv", ["small.npy,3,m1", "large.npy,4,m2", "large2.npy,5,m3"])
    t, [s] = load_cohorts(
        tmp_path / "ct.csv",
        [tmp_path / "mri.csv"],
        DataConfig(image_size=32, source_min_foreground=0.1),
    )
    assert len(t) == 2 and s.labels.tolist() == [4, 5]
    np.testing.assert_allclose(t.foreground(), [29 / 1024, 441 / 1024], atol=0.01)
    with pytest.raises(DuiitError, match=r"mri.csv: no MRI slice has a head covering 50%"):
        load_cohorts(
            tmp_path / "ct.csv",
            [tmp_path / "mri.csv"],
            DataConfig(image_size=32, source_min_foreground=0.5),
        )


# ------------------------------------------------------------------ bad input


def _npy(tmp_path: Path, name: str = "ok.npy") -> None:
    np.save(tmp_path / name, np.eye(8, dtype=np.float32))


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        (
            ["missing.npy,1,p1"],
            "path,label,patient_id",
            r"line 2: file .*missing.npy does not exist",
        ),
        (
            ["ok.npy,1,p1", "two.npy,abc,p2"],
            "path,label,patient_id",
            r"line 3: label 'abc' is not a finite number; set data.task=classification",
        ),
        (["ok.npy,nan,p1"], "path,label,patient_id", r"line 2: label 'nan' is not a finite"),
        (["ok.npy,,p1"], "path,label,patient_id", r"line 2: empty 'label'"),
        (["ok.npy,1"], "path,label", r"lacks column\(s\) patient_id; found path, label"),
        ([], "path,label,patient_id", r"has a header but no rows"),
        (["ok.npy,1,p1,9"], "path,label,patient_id,slice", r"line 2: slice 9 is out of range"),
    ],
)
def test_manifest_errors_name_file_line_and_fix(
    tmp_path: Path, rows: list[str], header: str, match: str
) -> None:
    _npy(tmp_path)
    _npy(tmp_path, "two.npy")
    write_manifest(tmp_path / "ct.csv", rows, header)
    with pytest.raises(DuiitError, match=match) as err:
        load_manifest(tmp_path / "ct.csv", CFG)
    assert "ct.csv" in str(err.value)


def test_empty_file_and_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "ct.csv").write_text("")
    with pytest.raises(DuiitError, match=r"ct.csv is empty; it needs a header"):
        load_manifest(tmp_path / "ct.csv", CFG)
    with pytest.raises(DuiitError, match=r"manifest .*nope.csv does not exist"):
        load_manifest(tmp_path / "nope.csv", CFG)


def test_manifests_and_label_tables_share_one_csv_reader(tmp_path: Path) -> None:
    """Both take Excel's "CSV UTF-8" (a byte-order mark first) and headers in any case,
    spacing and line breaks, and both refuse a row longer than its header instead of
    shifting its cells."""
    np.save(tmp_path / "a.npy", np.arange(64, dtype=np.float32).reshape(8, 8))
    (tmp_path / "ct.csv").write_text("\ufeffPath, Label ,patient_id\na.npy,50,p1\n")
    (tmp_path / "ages.csv").write_text('\ufeffid,"Age\n(years)"\n1,40\n2,\n')
    assert load_manifest(tmp_path / "ct.csv", CFG)[0].labels.tolist() == [50.0]
    assert read_age_column(tmp_path / "ages.csv", "Age (years)") == [40.0]
    (tmp_path / "ages.csv").write_text("id,age\n1,40,41\n")
    with pytest.raises(DuiitError, match=r"table .*ages.csv has rows with more fields than its"):
        read_age_column(tmp_path / "ages.csv")


def test_corrupt_image_and_truncated_nifti(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    vol = np.random.default_rng(0).random((16, 16, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii")
    data = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    for name in ("bad.png", "cut.nii"):
        write_manifest(tmp_path / "mri.csv", [f"{name},1,p1"])
        with pytest.raises(DuiitError, match=rf"mri.csv, line 2: cannot read .*{name}.*complete"):
            load_manifest(tmp_path / "mri.csv", CFG)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    write_dicom(tmp_path / "x.dcm", np.zeros((4, 4)), pixels=False)
    write_manifest(tmp_path / "ct.csv", ["x.dcm,1,p1"])
    with pytest.raises(DuiitError, match=r"line 2: .*x.dcm has no pixel data"):
        load_manifest(tmp_path / "ct.csv", CFG)


def test_patient_shared_across_modalities_declared_disjoint(tmp_path: Path) -> None:
    _npy(tmp_path)
    _npy(tmp_path, "two.npy")
    write_manifest(tmp_path / "ct.csv", ["ok.npy,1,p1", "two.npy,2,p2"])
    write_manifest(tmp_path / "mri.csv", ["ok.npy,3,p2"])
    with pytest.raises(
        DuiitError,
        match=r"patient 'p2' appears in CT .* and in MRI .*"
        r"data.disjoint_patients=false",
    ):
        load_cohorts(tmp_path / "ct.csv", [tmp_path / "mri.csv"], CFG)
    cfg = DataConfig(image_size=16, disjoint_patients=False)
    _, [s] = load_cohorts(tmp_path / "ct.csv", [tmp_path / "mri.csv"], cfg)
    assert s.patient_ids.tolist() == ["p2"]


def test_target_with_two_modalities_is_refused(tmp_path: Path) -> None:
    _npy(tmp_path)
    write_manifest(
        tmp_path / "all.csv",
        ["ok.npy,1,p1,CT", "ok.npy,2,p2,MRI"],
        header="path,label,patient_id,modality",
    )
    with pytest.raises(DuiitError, match="lists 2 modalities"):
        load_cohorts(tmp_path / "all.csv", [], CFG)
