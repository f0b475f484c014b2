"""The phantom is deterministic and age really shapes its anatomy in every modality."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from duiit.config import DataConfig
from duiit.data import load_manifest
from duiit.data.phantom import (
    PhantomSpec,
    read_age_option,
    sample_anatomy,
    synthesise,
    tissue_values,
)
from duiit.errors import DuiitError


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_files_other_seed_other_patients(tmp_path: Path) -> None:
    spec = PhantomSpec(patients={"CT": 3, "PET": 2}, size=32, slices=2, seed=7)
    a, b = (
        synthesise(tmp_path / "a", spec, quiet=True),
        synthesise(tmp_path / "b", spec, quiet=True),
    )
    assert set(a) == {"CT", "PET"} and set(b) == set(a)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    spec.seed = 8
    synthesise(tmp_path / "c", spec, quiet=True)
    ages_a = (tmp_path / "a" / "ct.csv").read_text().splitlines()[1:]
    ages_c = (tmp_path / "c" / "ct.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in ages_a] != [r.split(",")[1] for r in ages_c]


def _ventricle_feature(images: np.ndarray) -> np.ndarray:
    """Fraction of dark pixels in the central third: ventricles and CSF, a classic age marker."""
    n = images.shape[-1]
    centre = images[:, 0, n // 3 : 2 * n // 3, n // 3 : 2 * n // 3]
    thr = np.median(centre.reshape(len(centre), -1), axis=1)[:, None, None]
    return (centre < thr - 0.25).mean(axis=(1, 2))


@pytest.mark.parametrize("modality", ["CT", "MRI", "PET"])
def test_age_is_visible_through_a_handmade_feature(tmp_path: Path, modality: str) -> None:
    synthesise(
        tmp_path / "p", PhantomSpec(patients={modality: 60}, size=48, slices=1, seed=3), quiet=True
    )
    [cohort] = load_manifest(
        tmp_path / "p" / f"{modality.lower()}.csv", DataConfig(image_size=48), quiet=True
    )
    feat = _ventricle_feature(cohort.images.float().numpy())
    age = cohort.labels.numpy()
    r = np.corrcoef(feat, age)[0, 1]
    # A one-feature linear regressor tracks age, but not perfectly (biological-age noise).
    assert 0.5 < r < 0.995, f"{modality}: corr(ventricle feature, age) = {r:.2f}"


def test_pet_grey_matter_uptake_falls_with_age(tmp_path: Path) -> None:
    from duiit.data.phantom import sample_anatomy

    rng = np.random.default_rng(0)
    anats = [sample_anatomy(rng, PhantomSpec()) for _ in range(200)]
    r = np.corrcoef([a.age for a in anats], [a.uptake for a in anats])[0, 1]
    assert r < -0.8


def test_refuses_existing_folder_and_unknown_modality(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DuiitError, match="already exists.*--force"):
        synthesise(tmp_path / "x", PhantomSpec(patients={"CT": 1}, size=16, slices=1))
    with pytest.raises(DuiitError, match="unknown"):
        synthesise(tmp_path / "y", PhantomSpec(patients={"XR": 1}, size=16, slices=1))
    assert not (tmp_path / "y").exists()
    synthesise(tmp_path / "x", PhantomSpec(patients={"CT": 1}, size=16, slices=1), force=True)
    assert (tmp_path / "x" / "ct.csv").is_file()


def test_ages_from_a_real_table_set_counts_and_labels(tmp_path: Path) -> None:
    """CT-ICH's demographics header has a line break inside a quoted name, and a patient
    without an age: both as the real file has them."""
    table = tmp_path / "demo.csv"
    table.write_text('"Patient Number","Age\n(years)"\n49,35\n50,0.583333333\n51,\n52,72\n')
    modality, ages = read_age_option(f"ct={table}")
    assert modality == "CT" and ages == [35.0, 0.583333333, 72.0]
    spec = PhantomSpec(patients={"CT": 99}, size=32, slices=1, ages={"CT": ages})
    synthesise(tmp_path / "p", spec, quiet=True)
    rows = (tmp_path / "p" / "ct.csv").read_text().splitlines()[1:]
    assert sorted(float(r.split(",")[1]) for r in rows) == [0.58, 35.0, 72.0]
    with pytest.raises(DuiitError, match="no column 'age'"):
        read_age_option(f"CT={table}:age")
    with pytest.raises(DuiitError, match="MODALITY=CSV"):
        read_age_option(f"XR={table}")


def test_children_have_smaller_heads_and_darker_white_matter() -> None:
    rng = np.random.default_rng(0)
    spec = PhantomSpec()
    infant, adult = sample_anatomy(rng, spec, 0.5), sample_anatomy(rng, spec, 40.0)
    assert infant.axes[0] < 0.8 * adult.axes[0]
    assert tissue_values("CT", infant)[5] < tissue_values("CT", adult)[5] - 5
    assert tissue_values("MRI", infant)[5] < tissue_values("MRI", infant)[4]  # WM below GM
    assert tissue_values("CT", adult)[5] == 28.0  # adults as before


def test_subtle_cue_moves_age_information_into_small_faint_spots() -> None:
    rng = np.random.default_rng(1)
    plain, subtle = PhantomSpec(), PhantomSpec(subtle_cue=True)
    ages = rng.uniform(20, 90, 300)
    a = [sample_anatomy(rng, plain, float(x)) for x in ages]
    b = [sample_anatomy(rng, subtle, float(x)) for x in ages]
    gross = lambda anats: np.corrcoef(ages, [x.bio_age for x in anats])[0, 1]  # noqa: E731
    assert gross(b) < gross(a) - 0.1, (gross(a), gross(b))
    assert all(len(x.lesions) == 8 and (x.lesions[:, 2] < 0.07).all() for x in b)
    drop = [np.subtract(*tissue_values("CT", x)[[5, 6]]) for x in b]
    assert np.corrcoef(ages, drop)[0, 1] > 0.999 and max(drop) < 16  # a few HU, exactly age
    child = sample_anatomy(rng, subtle, 8.0)
    assert tissue_values("CT", child)[6] == tissue_values("CT", child)[5]
