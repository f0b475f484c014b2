"""Manifest rows -> normalised cohorts: read each row's file, map its values to [-1, 1], keep
its slices, stack one `Cohort` per modality, and check that modalities share no patient.

`load_cohorts` is what training uses: the target manifest (one modality) and every source.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from duiit.config import DataConfig
from duiit.data.cohort import Cohort
from duiit.data.intensity import file_intensities, to_square, warn_mixed_units
from duiit.data.manifest import class_names, parse_labels, read_manifest
from duiit.data.readers import image_files, read_image
from duiit.errors import DuiitError, DuiitWarning, explain
from duiit.progress import track


def _check_pixels(slices: np.ndarray, where: str, path: Path, size: int) -> None:
    """Refuse NaN/Inf pixels (they would surface only as a diverged training) and warn about
    an image so small that resizing it to `size` px invents nearly all of it."""
    bad = int(np.size(slices) - np.count_nonzero(np.isfinite(slices)))
    if bad:
        raise DuiitError(
            f"{where}: {path} has {bad} non-finite pixel value(s) (NaN or Inf); "
            "fix or remove the file"
        )
    h, w = slices.shape[-2:]
    if min(h, w) * 4 < size:
        warnings.warn(
            f"{where}: {path} is only {h}x{w} px and is enlarged to {size}x{size}; "
            "is it a thumbnail or the wrong file?",
            DuiitWarning,
            stacklevel=2,
        )


def _chosen_slices(wanted: object, n: int, where: str, name: str) -> range | list[int]:
    """The slice a row's `slice` cell names (from 0), or every slice when it is blank."""
    if not (isinstance(wanted, str) and wanted.strip()):
        return range(n)
    try:
        k = int(wanted)
    except ValueError:
        raise DuiitError(f"{where}: slice {wanted!r} is not an integer") from None
    if not 0 <= k < n:
        raise DuiitError(
            f"{where}: slice {k} is out of range; {name} has {n} slice(s), numbered from 0"
        )
    return [k]


def _expand_rows(
    df: pd.DataFrame, base: Path, origin: str, cfg: DataConfig, quiet: bool
) -> Iterator[tuple[pd.Series, int, np.ndarray, dict[str, object]]]:
    """Yield (row, slice index, normalised slice, facts for the cohort's meta) for every
    usable slice."""
    what = f"reading {Path(origin).name} ({len(df)} rows)"
    for _, row in track(df.iterrows(), what, len(df), quiet):
        path = (base / row["path"].strip()).resolve()
        where = f"{origin}, line {row['line']}"
        if not path.exists():
            raise DuiitError(
                f"{where}: file {path} does not exist; paths are relative to the manifest's folder"
            )
        try:
            image = read_image(path)
        except DuiitError as exc:
            raise DuiitError(f"{where}: {path} {exc}") from None
        except Exception as exc:  # any reader failure is the file's fault: say which file
            raise DuiitError(
                f"{where}: cannot read {path} ({explain(exc)}); "
                "is the file complete and in a supported format "
                "(DICOM, NIfTI, PNG/JPEG/TIFF, NPY)?"
            ) from None
        try:
            slices, norm, units, window = file_intensities(image, row, cfg)
        except DuiitError as exc:
            raise DuiitError(f"{where}: {path} {exc}") from None
        _check_pixels(slices, where, path, cfg.image_size)
        colour = bool(image.pixels.shape[-1] > 1 and np.ptp(image.pixels, axis=-1).max() > 0)
        chosen = _chosen_slices(row.get("slice", ""), len(slices), where, path.name)
        for k in chosen:
            if len(chosen) > 1 and np.ptp(slices[k]) == 0:
                continue  # empty slice of a volume: nothing to learn from
            h, w = slices[k].shape
            facts = {"raw_h": h, "raw_w": w, "units": units, "window": window, "colour": colour}
            yield row, k, norm[k], facts


def _cohorts(
    df: pd.DataFrame,
    base: Path,
    origin: str,
    cfg: DataConfig,
    quiet: bool,
    classes: tuple[str, ...] | None,
) -> list[Cohort]:
    """Rows with parsed labels -> one cohort per modality."""
    cohorts = []
    for modality, part in df.groupby("modality", sort=True):
        images, labels, pids, meta = [], [], [], []
        for row, k, img, facts in _expand_rows(part, base, origin, cfg, quiet):
            images.append(
                to_square(torch.from_numpy(np.ascontiguousarray(img))[None], cfg.image_size)
            )
            labels.append(row["label"])
            pids.append(row["patient_id"].strip())
            meta.append(
                {
                    "path": row["path"].strip(),
                    "slice": k,
                    "line": row["line"],
                    "manifest": origin,
                    **facts,
                }
            )
        if not images:
            raise DuiitError(f"{origin}: no usable (non-empty) slices for modality {modality}")
        warn_mixed_units(pd.DataFrame(meta), origin, str(modality))
        if classes is not None:
            lab = torch.tensor(class_indices(labels, classes, meta, origin), dtype=torch.int64)
        else:
            lab = torch.tensor(np.asarray(labels, dtype=np.float32))
        cohort = Cohort(
            str(modality),
            torch.cat(images).to(torch.float16),
            lab,
            np.asarray(pids, dtype=object),
            pd.DataFrame(meta),
            classes,
        )
        cohorts.append(cohort.central_slices(cfg.slices_per_patient))
    return cohorts


def class_indices(
    labels: list[str], classes: tuple[str, ...], meta: list[dict[str, object]], origin: str
) -> list[int]:
    """Class names -> their indices in `classes`, -1 for a blank label (an image to predict);
    a name outside them is refused with its line (a run knows only the classes it learnt)."""
    for name, facts in zip(labels, meta, strict=True):
        if name and name not in classes:
            raise DuiitError(
                f"{origin}, line {facts['line']}: class {name!r} is not one of "
                f"{', '.join(classes)}; fix the label or leave it blank"
            )
    return [classes.index(name) if name else -1 for name in labels]


def load_manifest(
    csv_path: Path,
    cfg: DataConfig,
    quiet: bool = False,
    classes: tuple[str, ...] | None = None,
    predicting: str | None = None,
) -> list[Cohort]:
    """Load every image of a manifest, one cohort per modality it lists. Class labels are
    indexed into `classes`, or into this manifest's own sorted class names.

    `predicting` names the modality a run predicts from (its target) when the images are to
    be predicted: rows naming no modality are of it (not of the file's name, which would
    read a CT's HU as raw values), rows of another modality are refused, and labels may be
    missing or blank."""
    csv_path = Path(csv_path)
    df = read_manifest(csv_path, predicting, labelled=predicting is None)
    if predicting is not None:
        other = df[df["modality"].str.upper() != predicting.upper()]
        if not other.empty:
            row = other.iloc[0]
            raise DuiitError(
                f"{csv_path}, line {row['line']}: modality {row['modality']} is not "
                f"{predicting}, the modality the run predicts from; give {predicting} images "
                f"only (remove the {row['modality']} rows, or correct their modality column)"
            )
        df["modality"] = predicting
    task = "classification" if classes is not None else cfg.task
    df["label"] = parse_labels(df, csv_path, task, blank=predicting is not None)
    if task == "classification" and classes is None:
        classes = class_names([csv_path], cfg)
    return _cohorts(df, csv_path.parent, str(csv_path), cfg, quiet, classes)


def patient_names(paths: list[Path]) -> list[str]:
    """Each input's patient id: its name, or as many of its last path parts as tell the
    inputs apart (`049/brain` and `050/brain` for CT-ICH's layout, not one patient `brain`).

    Raises DuiitError for a file or folder given twice."""
    full = [p.resolve().parts for p in paths]
    seen: dict[tuple[str, ...], Path] = {}
    for p, parts in zip(paths, full, strict=True):
        if parts in seen:
            raise DuiitError(f"{p} is given twice (also as {seen[parts]}); give each input once")
        seen[parts] = p
    for k in range(1, max(map(len, full), default=0) + 1):
        names = ["/".join(parts[-k:]) for parts in full]
        if len(set(names)) == len(names):
            return names
    return []  # no inputs


def load_files(
    paths: list[Path],
    modality: str,
    cfg: DataConfig,
    quiet: bool = False,
    classes: tuple[str, ...] | None = None,
) -> Cohort:
    """Unlabelled images (for prediction) as one cohort: files, DICOM series folders, and
    folders of image files (PNG, JPEG, TIFF, NPY, NIfTI: each file an image). A file is its
    own patient; a folder's images are one patient, named by the folder (`patient_names`)."""
    paths = list(map(Path, paths))
    files: list[tuple[Path, str]] = []
    for p, name in zip(paths, patient_names(paths), strict=True):
        listed = image_files(p) if p.is_dir() else []
        files += [(f, name) for f in listed] or [(p, name)]
    df = pd.DataFrame(
        {
            "path": [str(f.resolve()) for f, _ in files],
            "label": "" if classes is not None else np.nan,
            "patient_id": [patient for _, patient in files],
            "modality": modality,
            "line": np.arange(len(files)) + 1,
        }
    )
    [cohort] = _cohorts(df, Path.cwd(), "command-line file", cfg, quiet, classes)
    return cohort


def check_disjoint(cohorts: list[Cohort]) -> None:
    """Refuse a patient id that appears in two modalities' cohorts (unpaired by design)."""
    seen: dict[str, Cohort] = {}
    for c in cohorts:
        for pid in np.unique(c.patient_ids):
            other = seen.get(pid)
            if other is not None and other.modality != c.modality:
                raise DuiitError(
                    f"patient {pid!r} appears in {other.modality} "
                    f"({other.meta['manifest'].iloc[0]}) and in {c.modality} "
                    f"({c.meta['manifest'].iloc[0]}); the modalities were declared disjoint. "
                    "Rename the ids if they are different people, or set "
                    "data.disjoint_patients=false if they are the same patients"
                )
            seen[pid] = c


def load_cohorts(
    target: Path, sources: list[Path], cfg: DataConfig, quiet: bool = False
) -> tuple[Cohort, list[Cohort]]:
    """Load the target cohort (exactly one modality) and every source modality."""
    classes = class_names([Path(target), *map(Path, sources)], cfg)
    targets = load_manifest(target, cfg, quiet, classes)
    if len(targets) != 1:
        raise DuiitError(
            f"target manifest {target} lists {len(targets)} modalities "
            f"({', '.join(c.modality for c in targets)}); give exactly one"
        )
    src: list[Cohort] = []
    for path in sources:
        for cohort in load_manifest(path, cfg, quiet, classes):
            kept = cohort.with_foreground(cfg.source_min_foreground)
            if len(kept) == 0:
                raise DuiitError(
                    f"{path}: no {cohort.modality} slice has a head covering "
                    f"{cfg.source_min_foreground:.0%} of the image "
                    "(data.source_min_foreground); lower it"
                )
            src.append(kept)
    names = [c.modality for c in [targets[0], *src]]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DuiitError(
            f"modality {sorted(dup)[0]} is given twice (target and sources must "
            "be different modalities); set the `modality` column to tell them apart"
        )
    if cfg.disjoint_patients:
        check_disjoint([targets[0], *src])
    return targets[0], src
