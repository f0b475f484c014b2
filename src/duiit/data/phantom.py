"""A procedural cohort of 2-D axial brain slices in CT, T1 MRI and FDG-PET.

No real scans can be shipped or downloaded, yet users need to try the tool first. Each
simulated patient has a random head, skull, CSF, grey and white matter, ventricles and sulci,
an age in 20-90 years and a hidden "biological age" offset (so age is not perfectly
recoverable). Age acts as it does in real brains: ventricles enlarge, sulci widen, the cortex
thins, the subarachnoid space grows, white-matter lesions appear, and PET grey-matter uptake
falls. Modalities are different patients (unpaired, as in clinics). The cohort is written as
ordinary NIfTI files plus manifests, so it goes through exactly the path a user's data does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from duiit.errors import DuiitError
from duiit.files import staged_dir
from duiit.progress import track

MODALITIES = ("CT", "MRI", "PET")
TISSUES = ("air", "scalp", "bone", "csf", "gm", "wm", "lesion")

# Hounsfield units of each tissue (air, scalp, bone, CSF, GM, WM, lesion).
CT_HU = np.array([-1000.0, 30.0, 1000.0, 5.0, 40.0, 28.0, 15.0])
# T1: white matter brighter than grey, CSF dark, cortical bone dark, scalp fat bright.
MRI_T1 = np.array([0.0, 0.9, 0.08, 0.18, 0.55, 0.82, 0.42])
# FDG uptake relative to young grey matter; the GM entry is replaced per patient.
PET_UPTAKE = np.array([0.0, 0.1, 0.08, 0.05, 1.0, 0.32, 0.25])


@dataclass
class PhantomSpec:
    """What to generate. Defaults follow the paper's proportions: few target CT patients."""

    patients: dict[str, int] = field(default_factory=lambda: {"CT": 80, "MRI": 110, "PET": 300})
    size: int = 128
    slices: int = 4
    seed: int = 0
    age_range: tuple[float, float] = (20.0, 90.0)
    bio_age_sd: float = 5.0


@dataclass
class Anatomy:
    """One patient's shape parameters (all that is random about the head)."""

    age: float
    bio_age: float
    axes: tuple[float, float]
    angle: float
    centre: tuple[float, float]
    ventricle_scale: float
    sulci_angles: np.ndarray
    lesions: np.ndarray  # (K, 3): x, y, radius in brain units
    uptake: float


def sample_anatomy(rng: np.random.Generator, spec: PhantomSpec) -> Anatomy:
    age = float(rng.uniform(*spec.age_range))
    bio = age + float(rng.normal(0.0, spec.bio_age_sd))
    a = float(rng.uniform(0.70, 0.82))
    n_lesions = int(rng.poisson(max(0.0, (bio - 45.0) / 8.0)))
    r = np.sqrt(rng.uniform(0.0, 0.3, n_lesions))
    t = rng.uniform(0, 2 * np.pi, n_lesions)
    lesions = (
        np.stack([r * np.cos(t) * 1.6, r * np.sin(t), rng.uniform(0.025, 0.045, n_lesions)], axis=1)
        if n_lesions
        else np.zeros((0, 3))
    )
    return Anatomy(
        age=age,
        bio_age=bio,
        axes=(a, a * float(rng.uniform(1.12, 1.25))),
        angle=float(rng.uniform(-0.15, 0.15)),
        centre=(float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03))),
        ventricle_scale=float(rng.uniform(0.85, 1.15)),
        sulci_angles=rng.uniform(-np.pi, np.pi, int(rng.integers(14, 22))),
        lesions=lesions,
        uptake=(1.0 - 0.0055 * (bio - 20.0)) * float(rng.uniform(0.92, 1.08)),
    )


def tissue_fractions(anat: Anatomy, z: float, size: int) -> np.ndarray:
    """Partial-volume fractions (7, size, size) of each tissue in one axial slice at height z."""
    n = size * 2  # render at twice the resolution, then average: partial volume at edges
    lin = (np.arange(n) + 0.5) / n * 2 - 1
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    c, s = np.cos(anat.angle), np.sin(anat.angle)
    x = c * (xx - anat.centre[0]) + s * (yy - anat.centre[1])
    y = -s * (xx - anat.centre[0]) + c * (yy - anat.centre[1])
    shrink = np.sqrt(max(1.0 - (z / 0.9) ** 2, 0.2))
    rho = np.sqrt((x / (anat.axes[0] * shrink)) ** 2 + (y / (anat.axes[1] * shrink)) ** 2)
    years = anat.bio_age - 20.0
    csf_gap = 0.012 + 0.0009 * years  # subarachnoid space widens with atrophy
    brain_edge = 1.0 - 0.03 - 0.065 - csf_gap
    q = rho / brain_edge  # 1 at the brain surface
    phi = np.arctan2(y, x)
    label = np.zeros((n, n), dtype=np.int64)
    label[rho < 1.0] = 1
    label[rho < 0.97] = 2
    label[rho < 0.97 - 0.065] = 3
    label[q < 1.0] = 4
    cortex = 0.15 - 0.0009 * years  # cortex thins
    label[q < 1.0 - cortex] = 5
    width = 0.03 + 0.0009 * years  # sulci widen
    band = (q > 1.0 - 1.5 * cortex) & (q < 1.0)
    gap = (phi[band][:, None] - anat.sulci_angles[None] + np.pi) % (2 * np.pi) - np.pi
    sulcus = np.abs(gap).min(axis=1) < width * (1.1 - q[band])
    label[band] = np.where(sulcus, 3, label[band])
    vz = np.exp(-((z / 0.35) ** 2)) * anat.ventricle_scale
    vw, vh = (0.06 + 0.0014 * years) * vz, (0.18 + 0.0028 * years) * vz
    bx, by = x / (anat.axes[0] * shrink * brain_edge), y / (anat.axes[1] * shrink * brain_edge)
    for side in (-1.0, 1.0):  # two lateral ventricles beside the midline
        inside = ((bx - side * (0.07 + vw)) / max(vw, 1e-3)) ** 2 + (
            (by + 0.05) / max(vh, 1e-3)
        ) ** 2
        label[(inside < 1.0) & (q < 1.0 - cortex)] = 3
    for lx, ly, lr in anat.lesions:
        spot = (bx - lx * 0.5) ** 2 + (by - ly * 0.6) ** 2 < lr**2
        label[spot & (label == 5)] = 6
    onehot = np.eye(len(TISSUES), dtype=np.float32)[label]
    return onehot.reshape(size, 2, size, 2, -1).mean(axis=(1, 3)).transpose(2, 0, 1)


def render(frac: np.ndarray, modality: str, anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Turn tissue fractions into one modality's image in that modality's units."""
    size = frac.shape[-1]
    if modality == "CT":
        img = np.tensordot(CT_HU, frac, axes=1)
        img = gaussian_filter(img, 0.4) + rng.normal(0, 6.0, img.shape)
        return np.clip(img, -1024, 3071).round().astype(np.int16)
    if modality == "MRI":
        lin = np.linspace(-1, 1, size)
        yy, xx = np.meshgrid(lin, lin, indexing="ij")
        k = rng.normal(0, 0.12, 3)
        bias = 1.0 + k[0] * xx + k[1] * yy + k[2] * xx * yy  # smooth coil bias field
        img = np.tensordot(MRI_T1, frac, axes=1) * bias
        sigma = 0.025
        img = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
        return (img * 1000).astype(np.float32)  # Rician noise, as magnitude images have
    if modality == "PET":
        uptake = PET_UPTAKE.copy()
        uptake[4] = anat.uptake
        img = np.tensordot(uptake, frac, axes=1)
        img = gaussian_filter(img, size / 64.0)  # scanner resolution
        low = zoom(img, 0.5, order=1)  # coarse reconstruction grid
        counts = rng.poisson(np.clip(low, 0, None) * 150.0) / 150.0  # count noise
        img = zoom(counts, size / low.shape[0], order=1)
        return (np.clip(img, 0, None) * 10).astype(np.float32)
    raise DuiitError(f"phantom modality {modality!r} unknown; choose from {', '.join(MODALITIES)}")


def patient_volume(
    anat: Anatomy, modality: str, spec: PhantomSpec, rng: np.random.Generator
) -> np.ndarray:
    """(slices, H, W) axial slices around the level of the lateral ventricles."""
    zs = np.linspace(-0.22, 0.22, spec.slices) + rng.normal(0, 0.03, spec.slices)
    if spec.slices == 1:
        zs = rng.normal(0, 0.05, 1)
    return np.stack(
        [render(tissue_fractions(anat, float(z), spec.size), modality, anat, rng) for z in zs]
    )


def _write_nifti(path: Path, slices: np.ndarray) -> None:
    # Inverse of the reader's axial convention: slice k = flipud(vol[:, :, k].T).
    vol = np.stack([np.flipud(s).T for s in slices], axis=-1)
    img = nib.Nifti1Image(vol, np.diag([1.0, 1.0, 5.0, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def synthesise(
    out: Path, spec: PhantomSpec | None = None, force: bool = False, quiet: bool = False
) -> dict[str, Path]:
    """Write the phantom cohort under `out`: one NIfTI per patient and one manifest per modality.

    Written into a temporary folder first and moved into place at the end, so a failure or
    interruption never leaves a half-written cohort. Returns the manifest path per modality.
    """
    spec = spec or PhantomSpec()
    unknown = set(spec.patients) - set(MODALITIES)
    if unknown:
        raise DuiitError(
            f"phantom modality {sorted(unknown)[0]!r} unknown; choose from {', '.join(MODALITIES)}"
        )
    if spec.size < 16 or spec.slices < 1 or min(spec.patients.values(), default=0) < 1:
        raise DuiitError("phantom needs size >= 16, slices >= 1 and >= 1 patient per modality")
    out = Path(out)
    manifests = {}
    with staged_dir(out, force) as tmp:
        for m_index, modality in enumerate(MODALITIES):
            count = spec.patients.get(modality, 0)
            if not count:
                continue
            (tmp / modality).mkdir()
            # One independent stream per modality: changing PET counts leaves CT identical.
            rng = np.random.default_rng([spec.seed, m_index])
            rows = ["path,label,patient_id,modality"]
            for i in track(range(count), f"phantom {modality}", count, quiet):
                anat = sample_anatomy(rng, spec)
                pid = f"{modality}-{spec.seed:03d}-{i:04d}"
                rel = f"{modality}/{pid}.nii.gz"
                _write_nifti(tmp / rel, patient_volume(anat, modality, spec, rng))
                rows.append(f"{rel},{anat.age:.1f},{pid},{modality}")
            (tmp / f"{modality.lower()}.csv").write_text("\n".join(rows) + "\n")
            manifests[modality] = out / f"{modality.lower()}.csv"
        (tmp / "phantom.json").write_text(json.dumps(asdict(spec), indent=2))
    return manifests
