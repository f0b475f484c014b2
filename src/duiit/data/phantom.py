"""A procedural cohort of 2-D axial brain slices in CT, T1 MRI and FDG-PET.

No real scans can be shipped or downloaded, yet users need to try the tool first. Each
simulated patient has a random head, skull, CSF, grey and white matter, ventricles and sulci,
an age in 20-90 years and a hidden "biological age" offset (so age is not perfectly
recoverable). Age acts as it does in real brains: ventricles enlarge, sulci widen, the cortex
thins, the subarachnoid space grows, white-matter lesions appear, and PET grey-matter uptake
falls. Children (ages below 18, as in the paper's CT set) have smaller heads, less myelinated
(darker) white matter and lower cortical uptake. Modalities are different patients
(unpaired, as in clinics). The cohort is written as ordinary NIfTI files plus manifests, so
it goes through exactly the path a user's data does.

Two options make the phantom a test bed for the paper's claims. `ages` draws each modality's
ages from a real age table (the paper's label shift: CT-ICH has children, the MRI and PET
sets do not). `subtle_cue` moves most of the age information into the faint contrast of a
few small white-matter spots (their darkening grows with age: a few HU in CT, a detail
unsupervised translation has no reason to keep) and makes the gross anatomy a weaker cue
(it follows a noisier biological age), so an experiment can tell whether a translator
keeps what the task needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from duiit.data.manifest import read_age_column
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
# Unmyelinated white matter at birth: darker than the adult's in CT (HU) and in T1.
INFANT_WM = {"CT": 20.0, "MRI": 0.45}


@dataclass
class PhantomSpec:
    """What to generate. Defaults follow the paper's proportions: few target CT patients."""

    patients: dict[str, int] = field(default_factory=lambda: {"CT": 80, "MRI": 110, "PET": 300})
    size: int = 128
    slices: int = 4
    seed: int = 0
    age_range: tuple[float, float] = (20.0, 90.0)
    bio_age_sd: float = 5.0
    ages: dict[str, list[float]] = field(default_factory=dict)  # per modality, one per patient
    subtle_cue: bool = False


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
    subtle: bool = False  # lesions are the subtle cue's spots (contrast grows with age)


# The subtle cue: gross anatomy follows a biological age this noisy (years), while this
# many small spots (radius in brain units) darken below white matter by so much per year
# after 15, in CT (HU) and in T1 (signal).
SUBTLE_BIO_SD = 15.0
SUBTLE_SPOTS = 8
SUBTLE_RADIUS = (0.05, 0.07)
SUBTLE_DARKENING = {"CT": 0.2, "MRI": 0.005}


def maturity(age: float) -> float:
    """0 at birth, rising quickly and exactly 1 from 18 years (adult anatomy unchanged)."""
    return 1.0 - (1.0 - min(max(age, 0.0), 18.0) / 18.0) ** 3


def sample_anatomy(
    rng: np.random.Generator, spec: PhantomSpec, age: float | None = None
) -> Anatomy:
    """One patient; `age` fixed (from an age table) or drawn from `spec.age_range`."""
    age = float(rng.uniform(*spec.age_range)) if age is None else age
    bio_sd = SUBTLE_BIO_SD if spec.subtle_cue else spec.bio_age_sd
    bio = age + float(rng.normal(0.0, bio_sd))
    a = float(rng.uniform(0.70, 0.82)) * (0.7 + 0.3 * maturity(age))
    if spec.subtle_cue:  # the spots' contrast follows the true age; the anatomy does not
        n_lesions, radius = SUBTLE_SPOTS, SUBTLE_RADIUS
    else:
        n_lesions = int(rng.poisson(max(0.0, (bio - 45.0) / 8.0)))
        radius = (0.025, 0.045)
    r = np.sqrt(rng.uniform(0.0, 0.3, n_lesions))
    t = rng.uniform(0, 2 * np.pi, n_lesions)
    lesions = (
        np.stack([r * np.cos(t) * 1.6, r * np.sin(t), rng.uniform(*radius, n_lesions)], axis=1)
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
        uptake=(1.0 - 0.0055 * max(bio - 20.0, 0.0))
        * float(rng.uniform(0.92, 1.08))
        * (0.7 + 0.3 * maturity(age)),
        subtle=spec.subtle_cue,
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
    years = max(anat.bio_age - 20.0, 0.0)  # atrophy starts in adulthood
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


def tissue_values(modality: str, anat: Anatomy) -> np.ndarray:
    """Each tissue's value in one patient: white matter darkens towards birth (myelination),
    and the subtle cue's spots darken below white matter with age."""
    values = {"CT": CT_HU, "MRI": MRI_T1, "PET": PET_UPTAKE}[modality].copy()
    if modality in INFANT_WM:
        immature = 1.0 - maturity(anat.age)
        values[5] -= (values[5] - INFANT_WM[modality]) * immature
    if anat.subtle and modality in SUBTLE_DARKENING:
        values[6] = values[5] - SUBTLE_DARKENING[modality] * max(anat.age - 15.0, 0.0)
    if modality == "PET":
        values[4] = anat.uptake
    return values


def render(frac: np.ndarray, modality: str, anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Turn tissue fractions into one modality's image in that modality's units."""
    if modality not in MODALITIES:
        raise DuiitError(
            f"phantom modality {modality!r} unknown; choose from {', '.join(MODALITIES)}"
        )
    size = frac.shape[-1]
    img = np.tensordot(tissue_values(modality, anat), frac, axes=1)
    if modality == "CT":
        img = gaussian_filter(img, 0.4) + rng.normal(0, 6.0, img.shape)
        return np.clip(img, -1024, 3071).round().astype(np.int16)
    if modality == "MRI":
        lin = np.linspace(-1, 1, size)
        yy, xx = np.meshgrid(lin, lin, indexing="ij")
        k = rng.normal(0, 0.12, 3)
        bias = 1.0 + k[0] * xx + k[1] * yy + k[2] * xx * yy  # smooth coil bias field
        img = img * bias
        sigma = 0.025
        img = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
        return (img * 1000).astype(np.float32)  # Rician noise, as magnitude images have
    # PET
    img = gaussian_filter(img, size / 64.0)  # scanner resolution
    low = zoom(img, 0.5, order=1)  # coarse reconstruction grid
    counts = rng.poisson(np.clip(low, 0, None) * 150.0) / 150.0  # count noise
    img = zoom(counts, size / low.shape[0], order=1)
    return (np.clip(img, 0, None) * 10).astype(np.float32)


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


def read_age_option(option: str) -> tuple[str, list[float]]:
    """`CT=table.csv[:column]` -> ("CT", the ages in that column). Rows without a number
    are dropped (a patient without an age); the column defaults to the one named age*."""
    modality, sep, rest = option.partition("=")
    modality = modality.strip().upper()
    if not sep or modality not in MODALITIES:
        raise DuiitError(
            f"--ages {option!r}: expected MODALITY=CSV[:COLUMN] with MODALITY one of "
            f"{', '.join(MODALITIES)}"
        )
    path, _, column = rest.partition(":")
    ages = read_age_column(Path(path), column or None)
    return modality, ages


def synthesise(
    out: Path, spec: PhantomSpec | None = None, force: bool = False, quiet: bool = False
) -> dict[str, Path]:
    """Write the phantom cohort under `out`: one NIfTI per patient and one manifest per modality.

    Written into a temporary folder first and moved into place at the end, so a failure or
    interruption never leaves a half-written cohort. Returns the manifest path per modality.
    """
    spec = spec or PhantomSpec()
    for modality, ages in spec.ages.items():  # an age table sets the patient count
        if not ages or not np.all(np.isfinite(ages)) or min(ages) < 0:
            raise DuiitError(f"phantom ages for {modality} must be finite numbers >= 0")
        spec.patients[modality] = len(ages)
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
            table = spec.ages.get(modality)
            ages = rng.permutation(table).tolist() if table else [None] * count
            for i in track(range(count), f"phantom {modality} ({count} patients)", count, quiet):
                anat = sample_anatomy(rng, spec, ages[i])
                pid = f"{modality}-{spec.seed:03d}-{i:04d}"
                rel = f"{modality}/{pid}.nii.gz"
                _write_nifti(tmp / rel, patient_volume(anat, modality, spec, rng))
                rows.append(f"{rel},{anat.age:.2f},{pid},{modality}")
            (tmp / f"{modality.lower()}.csv").write_text("\n".join(rows) + "\n")
            manifests[modality] = out / f"{modality.lower()}.csv"
        (tmp / "phantom.json").write_text(json.dumps(asdict(spec), indent=2))
    return manifests
