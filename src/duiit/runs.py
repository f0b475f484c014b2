"""A run folder and the user-facing jobs on it: train, translate, augment, predict.

A run folder holds `config.yaml` (resolved), `run.json` (inputs, method, split), `env.json`
(versions, git hash, device), `metrics.csv`, `tb/`, `checkpoints/`, `samples/`, `model.pt`
(the fitted model), `split.csv`, `test_predictions.csv`, `input_profile.json` (the training
images in a few numbers, for `predict`) and `result.json` (test metrics; written last, so its
presence means the run finished). Nothing writes elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from duiit import __version__
from duiit.config import Config, DataConfig, load_config, save_config, with_overrides
from duiit.data import Cohort, load_cohorts, load_manifest, split_cohort
from duiit.data.intensity import INTENSITY_COLUMNS
from duiit.data.load import load_files
from duiit.data.manifest import read_manifest
from duiit.data.profile import PROFILE, profile, unlike
from duiit.data.splits import Split, check_parts, part_problems
from duiit.errors import DuiitError, DuiitWarning
from duiit.evaluation.metrics import per_patient, prediction_metrics
from duiit.files import (
    LOCK_NAME,
    folder_lock,
    new_output,
    read_csv,
    read_json,
    staged_dir,
    write_csv,
    write_json,
)
from duiit.methods import FittedModel, get_method
from duiit.methods.base import method_config, translate
from duiit.progress import console
from duiit.training.runtime import (
    Runtime,
    barrier,
    cpu_bf16_units,
    distributed_job,
    seed_everything,
)


def environment(rt: Runtime) -> dict[str, Any]:
    """Versions, commit and device: what someone repeating the run needs to know."""
    try:
        git = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        git = None
    dev = str(rt.device)
    if rt.device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(rt.device)})"
    return {
        "duiit": __version__,
        "git": git,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": dev,
        "bf16": rt.bf16,
        "precision": rt.precision_note,
        "cpu_bf16_units": cpu_bf16_units(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def check_method_fits(method: str, cfg: Config) -> None:
    """Refuse an image size a method's networks cannot take, before any folder is made: the
    70x70 PatchGAN discriminator of the translating methods needs at least 24 px."""
    if get_method(method).translates and cfg.data.image_size < 24:
        raise DuiitError(
            f"data.image_size={cfg.data.image_size} is below 24 px, the smallest image the "
            f"PatchGAN discriminator of {method} can score; use 24 or more"
        )


def execute(
    run_dir: Path,
    method: str,
    cfg: Config,
    target: Cohort,
    sources: list[Cohort],
    split_seed: int,
    quiet: bool = False,
    inputs: dict[str, Any] | None = None,
    lock_wait: float = 0.0,
) -> dict[str, Any]:
    """Fit `method` on one patient-level split of `target` (+ sources) and score it on the
    split's test part. Resumes an interrupted run in `run_dir`; a finished one is returned.

    `inputs` (what `train` was given, kept as run.json for --resume) marks a new run, whose
    folder must not hold one already. The split and the device are settled before the
    folder is created, and the folder is locked while the run writes to it (waiting up to
    `lock_wait` seconds for another holder: `files.folder_lock`).
    """
    result_path = run_dir / "result.json"
    if result_path.exists() and inputs is None:
        return read_json(result_path)
    cls = get_method(method)
    cfg = method_config(method, cfg)
    rt = Runtime.from_config(cfg.train)
    cfg = settled(cfg, rt.bf16)
    split = split_cohort(target, cfg.data.split, seed=split_seed, by=cfg.data.split_by)
    problems = {p: [split_seed] for p in part_problems(split, target)}
    check_parts(problems, cfg.data.split, target, warn=not quiet)
    check_method_fits(method, cfg)
    locked = folder_lock(run_dir, "run folder", lock_wait)
    with locked if rt.is_main else contextlib.nullcontext():
        if rt.is_main:
            if inputs is not None:
                if check_new_run(run_dir):  # a run that stopped before its first checkpoint
                    for p in run_dir.iterdir():
                        if p.name != LOCK_NAME:
                            (shutil.rmtree if p.is_dir() else Path.unlink)(p)
                write_json(inputs, run_dir / "run.json")
            elif result_path.exists():  # finished by another process meanwhile
                return read_json(result_path)
            if not (run_dir / "config.yaml").exists():  # a resumed run keeps its record
                save_config(cfg, run_dir / "config.yaml")
                write_json(environment(rt), run_dir / "env.json")
            if not quiet:
                console(stderr=True).print(f"precision: {rt.precision_note}", highlight=False)
        train, val, test = (target.subset(i) for i in (split.train, split.val, split.test))
        seed_everything(cfg.train.seed)
        held = {str(p) for p in (*val.patient_ids, *test.patient_ids)}
        used = held_out_sources(sources, held, quiet) if cls.uses_sources else []
        resumed = _checkpointed(run_dir)  # result.json is absent here: a checkpoint
        start = time.perf_counter()
        fitted = cls(cfg, rt, quiet).fit(train, val, used, run_dir)
        seconds = time.perf_counter() - start
        pred = fitted.predict(test.images, rt, test.patient_ids)
        true = test.labels.numpy()
        result = {
            "method": method,
            "target": target.modality,
            "sources": [c.modality for c in used],
            "split_seed": split_seed,
            "metrics": prediction_metrics(pred, true, target.classes, test.patient_ids),
            "n": {
                "train": len(train),
                "val": len(val),
                "test": len(test),
                **{c.modality: len(c) for c in used},
            },
            "test_patients": sorted(map(str, np.unique(test.patient_ids))),
            # a resumed run's clock saw only its last sitting: no fit time, rather than a
            # short one that reports and benchmarks would average as a whole run's
            "fit_seconds": None if resumed else seconds,
            "sitting_seconds": seconds,
            # the constant a model that learnt nothing would predict (the report's row)
            "train_label_mean": None if target.classes else float(train.labels.double().mean()),
        }
        if rt.is_main:  # result.json last: its presence means the run finished
            fitted.save(run_dir / "model.pt")
            write_csv(split_table(target, split), run_dir / SPLIT_FILE)
            predictions = pd.DataFrame(
                {
                    "path": test.meta["path"],
                    "slice": test.meta["slice"],
                    "patient_id": test.patient_ids,
                    "label": true,
                    "prediction": pred,
                }
            )
            write_csv(predictions, run_dir / "test_predictions.csv")
            write_json(profile(train), run_dir / PROFILE)  # what `predict` compares inputs with
            write_json(result, result_path)
        barrier()
    return result


SPLIT_FILE = "split.csv"


def split_table(target: Cohort, split: Split) -> pd.DataFrame:
    """Which side of the split each target image was on (the resolved file, path and slice
    as the manifest names them): what `augment` needs to write the run's training images
    and no others."""
    part = np.empty(len(target), dtype=object)
    for name in ("train", "val", "test"):
        part[getattr(split, name)] = name
    return pd.DataFrame(
        {
            "file": list(map(str, target.files())),
            "path": target.meta["path"],
            "slice": target.meta["slice"],
            "patient_id": target.patient_ids,
            "part": part,
        }
    )


def held_out_sources(sources: list[Cohort], held: set[str], quiet: bool = False) -> list[Cohort]:
    """Sources without the images of the target's validation and test patients (`held`).
    Under `data.disjoint_patients=false` a patient may have images in a source modality too;
    kept, they would let training see the held-out patients (through their other scans)."""
    kept = []
    for c in sources:
        keep = np.array([str(p) not in held for p in c.patient_ids], dtype=bool)
        if not keep.all():
            dropped = int((~keep).sum())
            patients = len({str(p) for p in c.patient_ids[~keep]})
            if not quiet:
                warnings.warn(
                    f"{dropped} {c.modality} image(s) of {patients} validation/test "
                    "patient(s) of this split left out (data.disjoint_patients"
                    "=false lets a patient appear in two modalities)",
                    DuiitWarning,
                    stacklevel=2,
                )
            c = c.subset(np.flatnonzero(keep))
        kept.append(c)
    return kept


# What a run writes before its first checkpoint. A folder holding only these, with no
# checkpoint and no result, is a run that stopped before it (a full disk, a kill).
EARLY_FILES = {LOCK_NAME, "run.json", "config.yaml", "env.json", "metrics.csv"}
EARLY_FILES |= {"tb", "samples", "checkpoints"}


def _checkpointed(out: Path) -> bool:
    """Whether a run folder holds something to resume: a result or a checkpoint."""
    return (out / "result.json").exists() or any((out / "checkpoints").glob("*.pt"))


def check_new_run(out: Path) -> bool:
    """A new run needs a new (or empty) folder; an interrupted one is continued with --resume.
    A lock file alone (its process killed before writing anything) counts as empty. True
    when `out` holds a run that stopped before its first checkpoint: nothing there to resume
    or keep, so the new run replaces it."""
    if not out.exists() or all(p.name == LOCK_NAME for p in out.iterdir()):
        return False
    early = all(p.name in EARLY_FILES for p in out.iterdir())
    if early and (out / "run.json").exists() and not _checkpointed(out):
        return True
    raise DuiitError(
        f"run folder {out} already exists; continue it with --resume {out} or choose another --out"
    )


def _resume_inputs(out: Path) -> tuple[Path, list[Path], str, Config]:
    """What an interrupted run was started with; refused when there is nothing to resume."""
    if not (out / "run.json").exists():
        raise DuiitError(f"{out} is not a run folder (no run.json); nothing to resume")
    if not (out / "config.yaml").exists() or not _checkpointed(out):
        raise DuiitError(
            f"{out} holds no checkpoint: the run stopped before its first one, so there is "
            f"nothing to resume; run the command that started it again (--out {out}), which "
            "starts such a run afresh"
        )
    info = read_json(out / "run.json")
    cfg = load_config(out / "config.yaml")
    if cfg.train.precision == "auto" and (out / "env.json").exists():  # an older run folder
        cfg = settled(cfg, bool(read_json(out / "env.json").get("bf16")))
    return Path(info["target"]), [Path(p) for p in info["sources"]], info["method"], cfg


def settled(cfg: Config, bf16: bool) -> Config:
    """`cfg` with train.precision as the run computes (bf16 or fp32), as config.yaml keeps
    it: a run resumed on another machine, where `auto` can mean the other, goes on in the
    precision it began in."""
    train = cfg.train.model_copy(update={"precision": "bf16" if bf16 else "fp32"})
    return cfg.model_copy(update={"train": train})


def train(
    target: Path | None,
    sources: list[Path],
    out: Path,
    cfg: Config | None = None,
    method: str = "duiit",
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """`duiit train`: load the manifests, fit one method, evaluate on the held-out patients.

    Every input is checked (manifests and images loaded) before the run folder is created,
    so a failed start leaves nothing behind. With `resume=True`, `out` is an interrupted
    run: its saved inputs and configuration are used and training continues from the last
    checkpoint with identical results.
    """
    out = Path(out)
    with distributed_job():
        if resume:
            target, sources, method, cfg = _resume_inputs(out)
            inputs = None
        else:
            if target is None:
                raise DuiitError("give --target MANIFEST (or --resume RUN_DIR)")
            get_method(method)  # fail on a typo before loading anything
            if check_new_run(out):  # on every rank, before rank 0 creates it
                warnings.warn(
                    f"run folder {out} holds a run that stopped before its first checkpoint "
                    "(nothing in it to resume or keep); the run starts afresh",
                    DuiitWarning,
                    stacklevel=2,
                )
            barrier()
            cfg = cfg or Config()
            inputs = {
                "target": str(Path(target).resolve()),
                "sources": [str(Path(p).resolve()) for p in sources],
                "method": method,
            }
        tgt, src = load_cohorts(target, sources, cfg.data, quiet=quiet)
        return execute(out, method, cfg, tgt, src, cfg.train.seed, quiet, inputs)


def _run_parts(run_dir: Path) -> tuple[FittedModel, Config, Runtime]:
    if not (run_dir / "config.yaml").exists():
        raise DuiitError(f"{run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    fitted = FittedModel.load(run_dir / "model.pt")
    rt = Runtime.from_config(cfg.train)
    return fitted, cfg, rt


def _denormalise(img: np.ndarray, modality: str, cfg: DataConfig) -> np.ndarray:
    """[-1, 1] -> the target modality's units, so re-reading the file gives the same image."""
    unit = (img.astype(np.float32) + 1.0) / 2.0
    if modality.upper() in {m.upper() for m in cfg.hu_modalities}:
        level, width = cfg.hu_window
        return level - width / 2 + unit * width
    return unit * 1000.0


def _write_image(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vol = np.flipud(img).T[:, :, None].astype(np.float32)  # the reader's axial convention
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)


def relative_to(file: Path, folder: Path) -> str:
    """`file` as a path relative to the folder of a manifest being written (a staged folder,
    whose final place is a sibling: the same relative path), as manifests hold paths."""
    return Path(os.path.relpath(file, folder)).as_posix()


def _translated_rows(
    fitted: FittedModel,
    cfg: Config,
    rt: Runtime,
    target_modality: str,
    cohorts: list[Cohort],
    folder: Path,
    prefix: str,
) -> list[dict[str, Any]]:
    """Translate every image, write it under `folder/prefix` in the target's units, and
    return its manifest rows (labels and origin kept)."""
    rows = []
    for c in cohorts:
        if c.modality not in fitted.translators:
            raise DuiitError(
                f"this run has no translator for {c.modality}; it translates "
                f"{', '.join(fitted.translators) or 'nothing (not a translating method)'}"
            )
        fake = translate(fitted.translators[c.modality].to(rt.device), c.images, rt)
        files = c.files()
        for i in range(len(c)):
            stem = Path(c.meta["path"].iloc[i]).name.split(".")[0]
            rel = f"{prefix}{c.modality}/{i:05d}_{stem}_s{int(c.meta['slice'].iloc[i])}.nii.gz"
            _write_image(folder / rel, _denormalise(fake[i, 0].numpy(), target_modality, cfg.data))
            label = c.classes[int(c.labels[i])] if c.classes else float(c.labels[i])
            rows.append(
                {
                    "path": rel,
                    "label": label,
                    "patient_id": c.patient_ids[i],
                    "modality": target_modality,
                    "source_modality": c.modality,
                    "source_path": relative_to(files[i], folder),
                    "source_slice": int(c.meta["slice"].iloc[i]),
                }
            )
    return rows


def _target_modality(run_dir: Path) -> str:
    info = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    result = run_dir / "result.json"
    if result.exists():
        return read_json(result)["target"]
    if info:
        return str(read_manifest(Path(info["target"]))["modality"].iloc[0])
    raise DuiitError(f"{run_dir} does not say which modality is the target (no result.json)")


def translate_manifest(
    run_dir: Path, source: Path, out: Path, force: bool = False, quiet: bool = False
) -> Path:
    """`duiit translate`: source images -> target-modality NIfTI files + manifest (labels kept)."""
    fitted, cfg, rt = _run_parts(run_dir)
    target_modality = _target_modality(run_dir)
    cohorts = load_manifest(source, cfg.data, quiet=quiet, classes=fitted.codec.classes)
    with staged_dir(out, force) as tmp:
        rows = _translated_rows(fitted, cfg, rt, target_modality, cohorts, tmp, "")
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    return out / "manifest.csv"


def augment(
    run_dir: Path,
    target: Path,
    sources: list[Path],
    out: Path,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """`duiit augment`: the run's augmented training set — the real target images it trained
    on (files copied; its validation and test patients left out) plus translated sources
    (without those patients' source scans either, where `data.disjoint_patients=false` lets
    them have some: as in training) — as files and one manifest, usable by any training
    pipeline."""
    fitted, cfg, rt = _run_parts(run_dir)
    real = read_manifest(target)
    target_modality = str(real["modality"].iloc[0])
    trained = _training_slices(run_dir, target, real)
    cohorts = [
        c
        for s in sources
        for c in load_manifest(s, cfg.data, quiet=quiet, classes=fitted.codec.classes)
    ]
    split = read_csv(run_dir / SPLIT_FILE)
    held = split[split["part"] != "train"]["patient_id"].astype(str)
    cohorts = held_out_sources(cohorts, set(held), quiet)
    with staged_dir(out, force) as tmp:
        rows = []
        for _, r in real.iterrows():
            src = (Path(target).parent / r["path"].strip()).resolve()
            slices = trained.get(str(src), [])
            if str(r.get("slice", "")).strip():
                slices = [k for k in slices if k == int(r["slice"])]
            if not slices:
                continue  # a validation or test image, or one the run did not use
            rel = Path("real") / f"{r['line']:05d}_{src.name}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / rel)
            rows += [
                {
                    "path": rel.as_posix(),
                    "label": r["label"],
                    "patient_id": r["patient_id"],
                    "modality": target_modality,
                    "slice": k,
                    "source_modality": "",
                    "source_path": relative_to(src, tmp),
                    "source_slice": k,
                    **{c: r[c] for c in INTENSITY_COLUMNS if c in r},  # read as in training
                }
                for k in slices
            ]
        rows += _translated_rows(fitted, cfg, rt, target_modality, cohorts, tmp, "translated/")
        frame = pd.DataFrame(rows)
        frame["slice"] = frame["slice"].astype("Int64")  # blank for translated files, not 0.0
        frame.to_csv(tmp / "manifest.csv", index=False)
    return out / "manifest.csv"


def _training_slices(run_dir: Path, target: Path, real: pd.DataFrame) -> dict[str, list[int]]:
    """The run's training images as {resolved file: slices}, from its split.csv; refused when
    the run has none or `target` lists none of them."""
    path = run_dir / SPLIT_FILE
    if not path.exists():
        raise DuiitError(
            f"{run_dir} has no {SPLIT_FILE} (the run is unfinished or older than duiit's "
            "split records), so its training images are not known; train the run again"
        )
    split = read_csv(path)
    train = split[split["part"] == "train"]
    slices: dict[str, list[int]] = {}
    for file, k in zip(train["file"], train["slice"], strict=True):
        slices.setdefault(str(file), []).append(int(k))
    files = {str((Path(target).parent / p.strip()).resolve()) for p in real["path"]}
    if not files & set(slices):
        raise DuiitError(
            f"{target} lists none of the images run {run_dir} trained on; give the run's "
            "target manifest (see its run.json)"
        )
    return slices


#: The data settings `duiit predict --set` takes: how the user's files are stored, which a
#: manifest row may say too. The others (image size, HU window, ...) are the run's own.
INPUT_SETTINGS = tuple(f"data.{c}" for c in INTENSITY_COLUMNS)


def input_settings(cfg: Config, settings: list[str]) -> Config:
    """The run's configuration with `--set data.KEY=VALUE` for the settings that describe
    the input files; any other key is refused (the run normalises as it was trained)."""
    for item in settings:
        key = item.partition("=")[0].strip()
        if key not in INPUT_SETTINGS:
            raise DuiitError(
                f"--set {item}: predict takes only {', '.join(INPUT_SETTINGS)}, which say how "
                "your files are stored; the run's other settings stay as it was trained"
            )
    return with_overrides(cfg, settings, "--set")


@dataclass
class Predictions:
    """What `duiit predict` wrote: one row per image and one per patient (with class names
    for classes), the scores on the labelled images (None without labels), how many
    images were unlike the run's training images, and what it assumed about the inputs."""

    images: pd.DataFrame
    patients: pd.DataFrame
    scores: dict[str, float] | None
    labelled: int
    unlike: int
    notes: list[str]


def patients_csv(out_csv: Path) -> Path:
    """Where `predict` writes its per-patient table: beside the per-image one."""
    return out_csv.with_name(f"{out_csv.stem}_patients.csv")


def _training_profile(run_dir: Path) -> dict[str, Any] | None:
    """The run's training images' profile; a run from before duiit kept one is said to have
    none, once."""
    path = run_dir / PROFILE
    if path.exists():
        return read_json(path)
    warnings.warn(
        f"{run_dir} has no {PROFILE} (trained before duiit kept one), so inputs are not "
        "compared with its training images",
        DuiitWarning,
        stacklevel=2,
    )
    return None


def _training_window(cfg: Config, trained: dict[str, Any] | None) -> tuple[Config, str]:
    """Display images without a window of their own are read with the CT window the run's
    training images were saved with, when there was one (CT-ICH's JPGs: 40/120): read as
    plain display values they would be compared with HU-read training images and called
    unlike them. Returns the configuration and the window ('' when none was taken)."""
    windows = (trained or {}).get("display_windows", [])
    if cfg.data.display_window is not None or len(windows) != 1:
        return cfg, ""
    level, width = windows[0].split("/")
    return with_overrides(cfg, [f"data.display_window=[{level},{width}]"], "the run"), windows[0]


def predict(
    run_dir: Path,
    inputs: list[Path],
    out_csv: Path,
    quiet: bool = False,
    force: bool = False,
    settings: list[str] | None = None,
) -> Predictions:
    """`duiit predict`: images of the run's target modality -> a CSV of predictions per
    image and one per patient (a patient's slice predictions combined, with their spread).

    The input is one manifest (labels optional: with them the scores are computed too) or
    image files and folders. Rows take the run's target modality and are read as its
    training images were (`settings` may say how the files are stored). Images unlike the
    training images are named in a warning and in the `unlike_training` column. Existing
    outputs are refused unless `force`, like every output."""
    out_csv = Path(out_csv)
    for path in (out_csv, patients_csv(out_csv)):
        new_output(path, force)
    fitted, cfg, rt = _run_parts(run_dir)
    trained = _training_profile(run_dir)
    cfg, window = _training_window(input_settings(cfg, settings or []), trained)
    target = _target_modality(run_dir)
    classes = fitted.codec.classes
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() == ".csv":
        [cohort] = load_manifest(inputs[0], cfg.data, quiet, classes, predicting=target)
    else:
        cohort = load_files(inputs, target, cfg.data, quiet, classes)
    pred = fitted.predict(cohort.images, rt, cohort.patient_ids)
    labels = cohort.labels.numpy()
    known = labels >= 0 if classes else np.isfinite(labels)

    def named(values: Any) -> Any:
        return [classes[int(k)] if k >= 0 else "" for k in values] if classes else values

    images = pd.DataFrame(
        {
            "path": cohort.meta["path"],
            "slice": cohort.meta["slice"],
            "patient_id": cohort.patient_ids,
        }
    )
    if known.any():
        images["label"] = named(labels)
    images["prediction"] = named(pred)
    images["unlike_training"] = unlike(trained, cohort) if trained else [""] * len(cohort)
    windowed = int((cohort.meta["window"] == window).sum()) if window else 0
    notes = []
    if windowed:
        notes.append(
            f"{windowed} display image(s) read as saved with the CT window {window} (level/"
            "width) of the run's training images; if yours were saved with another, give it: "
            "--set data.display_window=[LEVEL,WIDTH]"
        )
    patients = per_patient(pred, cohort.patient_ids, classes, labels if known.all() else None)
    for col in ("prediction", "label") if classes else ():
        if col in patients:
            patients[col] = named(patients[col])
    scores = None
    if known.any():
        scores = prediction_metrics(pred[known], labels[known], classes, cohort.patient_ids[known])
    unlike_n = int((images["unlike_training"] != "").sum())
    if unlike_n:
        first = images[images["unlike_training"] != ""].iloc[0]
        warnings.warn(
            f"{unlike_n} of {len(images)} image(s) are unlike the run's training images, so "
            f"their predictions are unreliable (e.g. {first['path']} slice {first['slice']}: "
            f"{first['unlike_training']}); the unlike_training column of {out_csv} says why "
            "for each",
            DuiitWarning,
            stacklevel=2,
        )
    write_csv(images, out_csv)
    write_csv(patients, patients_csv(out_csv))
    return Predictions(images, patients, scores, int(known.sum()), unlike_n, notes)
