"""Reliability corpus, part 1: bad inputs (generated fixtures), run through the CLI in-process.

Every failing case must exit with status 2, print exactly one line naming the file, line or
key, print no traceback, and leave the folder exactly as it was: no run or experiment folder,
no temporary file. docs/reliability.md lists the cases.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from helpers import (
    TINY,
    assert_one_line_error,
    cli,
    make_cohort,
    snapshot,
    write_dicom,
    write_manifest,
)

from duiit.config import DataConfig
from duiit.data import load_manifest
from duiit.errors import DuiitWarning


def ct(root: Path, *rows: str, header: str = "path,label,patient_id") -> None:
    """Replace the CT manifest's rows."""
    write_manifest(root / "ct.csv", list(rows), header)


def nifti(path: Path, vol: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), path)


def truncated_nifti(root: Path) -> None:
    nifti(root / "v.nii", np.random.default_rng(0).random((16, 16, 4)))
    data = (root / "v.nii").read_bytes()
    (root / "v.nii").unlink()
    (root / "cut.nii").write_bytes(data[: len(data) // 2])


@dataclass
class Case:
    """One bad input: how to spoil the valid cohort, the arguments that differ from a good
    command, and what its one error line must say."""

    name: str
    expect: tuple[str, ...]
    spoil: Callable[[Path], object] = lambda root: None
    args: dict[str, list[str]] = field(default_factory=dict)


def _rows(*rows: str, header: str = "path,label,patient_id") -> Callable[[Path], None]:
    return lambda root: ct(root, *rows, header=header)


def _with(prepare: Callable[[Path], object], *rows: str) -> Callable[[Path], None]:
    def spoil(root: Path) -> None:
        prepare(root)
        ct(root, *rows)

    return spoil


def _file(name: str, text: str) -> Callable[[Path], object]:
    return lambda root: (root / name).write_text(text)


GOOD = ["ct0.npy,20,a", "ct1.npy,21,b", "ct2.npy,22,c"]


def _empty_volume_source(root: Path) -> None:
    nifti(root / "zero.nii.gz", np.zeros((8, 8, 3)))
    write_manifest(root / "mri.csv", ["zero.nii.gz,30,m1"])


MANIFEST_CASES = [
    Case("manifest missing", ("nope.csv does not exist",), args={"target": ["nope.csv"]}),
    Case("manifest empty", ("ct.csv is empty",), _file("ct.csv", "")),
    Case("header only", ("ct.csv has a header but no rows",), _rows()),
    Case(
        "column missing", ("lacks column(s) patient_id",), _rows("ct0.npy,1", header="path,label")
    ),
    Case(
        "binary manifest",
        ("ct.csv is not a readable CSV",),
        lambda r: (r / "ct.csv").write_bytes(b"\x00\xff\xfe\x80\x81"),
    ),
    Case("row longer than header", ("more fields than its header",), _rows("ct0.npy,1,a,x,y")),
    Case("empty path", ("ct.csv, line 5: empty 'path'",), _rows(*GOOD, ",23,d")),
    Case("empty label", ("ct.csv, line 5: empty 'label'",), _rows(*GOOD, "ct3.npy,,d")),
    Case("empty patient", ("ct.csv, line 5: empty 'patient_id'",), _rows(*GOOD, "ct3.npy,23,")),
    Case(
        "label not a number",
        ("line 5: label 'old' is not a finite number", "data.task=classification"),
        _rows(*GOOD, "ct3.npy,old,d"),
    ),
    Case("label infinite", ("line 5: label 'inf' is not a finite",), _rows(*GOOD, "ct3.npy,inf,d")),
    Case(
        "image file missing",
        ("ct.csv, line 5: file", "gone.npy does not exist"),
        _rows(*GOOD, "gone.npy,23,d"),
    ),
    Case(
        "truncated NIfTI",
        ("ct.csv, line 5: cannot read", "cut.nii"),
        _with(truncated_nifti, *GOOD, "cut.nii,23,d"),
    ),
    Case(
        "not a PNG",
        ("ct.csv, line 5: cannot read", "bad.png"),
        _with(lambda r: (r / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nno"), *GOOD, "bad.png,1,d"),
    ),
    Case(
        "all-NaN NIfTI",
        ("ct.csv, line 5:", "nan.nii.gz has 128 non-finite pixel value(s)"),
        _with(
            lambda r: nifti(r / "nan.nii.gz", np.full((8, 8, 2), np.nan)), *GOOD, "nan.nii.gz,1,d"
        ),
    ),
    Case(
        "Inf pixel in NPY",
        ("ct.csv, line 5:", "inf.npy has 2 non-finite pixel value(s)"),
        _with(
            lambda r: np.save(r / "inf.npy", np.array([[1.0, np.inf]] * 2)), *GOOD, "inf.npy,1,d"
        ),
    ),
    Case(
        "4-D NPY",
        ("line 5:", "holds an array of shape (2, 2, 8, 8)"),
        _with(lambda r: np.save(r / "4d.npy", np.zeros((2, 2, 8, 8))), *GOOD, "4d.npy,1,d"),
    ),
    Case(
        "NPY of Python objects",
        ("line 5: cannot read", "obj.npy"),
        _with(lambda r: np.save(r / "obj.npy", np.array([{}], dtype=object)), *GOOD, "obj.npy,1,d"),
    ),
    Case(
        "DICOM without pixels",
        ("line 5:", "x.dcm has no pixel data"),
        _with(
            lambda r: write_dicom(r / "x.dcm", np.zeros((4, 4)), pixels=False), *GOOD, "x.dcm,1,d"
        ),
    ),
    Case(
        "empty DICOM folder",
        ("line 5:", "series is an empty folder"),
        _with(lambda r: (r / "series").mkdir(), *GOOD, "series,1,d"),
    ),
    Case(
        "slice not an integer",
        ("line 5: slice 'x' is not an integer",),
        _rows(*[g + "," for g in GOOD], "ct3.npy,23,d,x", header="path,label,patient_id,slice"),
    ),
    Case(
        "slice out of range",
        ("line 5: slice 3 is out of range; ct3.npy has 1 slice(s)",),
        _rows(*[g + "," for g in GOOD], "ct3.npy,23,d,3", header="path,label,patient_id,slice"),
    ),
    Case(
        "same image, other label",
        ("ct.csv, lines 2 and 5 list the same image (ct0.npy)", "'20'/'a' vs '99'/'a'"),
        _rows(*GOOD, "ct0.npy,99,a"),
    ),
    Case(
        "same image, other patient",
        ("ct.csv, lines 2 and 5 list the same image",),
        _rows(*GOOD, "./ct0.npy,20,z"),
    ),
    Case(
        "two modalities in the target",
        ("lists 2 modalities (CT, PET); give exactly one",),
        _rows(
            *[g + ",CT" for g in GOOD], "ct3.npy,1,d,PET", header="path,label,patient_id,modality"
        ),
    ),
    Case(
        "target modality again as a source",
        ("modality CT is given twice",),
        args={"source": ["ct.csv"]},
    ),
    Case(
        "patient in two modalities",
        ("patient 'ct-p0' appears in CT", "data.disjoint_patients=false"),
        lambda r: write_manifest(r / "mri.csv", ["mri0.npy,30,ct-p0"]),
    ),
    Case(
        "only empty slices",
        ("mri.csv: no usable (non-empty) slices for modality MRI",),
        _empty_volume_source,
    ),
    Case("too few patients", ("CT cohort has 2 patients", "needs at least 3"), _rows(*GOOD[:2])),
]


def _overrides(*items: str) -> dict[str, list[str]]:
    return {"extra": list(items)}


CONFIG_CASES = [
    Case(
        "unknown config key",
        ("train.stepz: unknown key; allowed here: batch_size",),
        args=_overrides("train.stepz=3"),
    ),
    Case("value of the wrong type", ("train.steps:",), args=_overrides("train.steps=many")),
    Case(
        "negative steps",
        ("train.steps: Input should be greater",),
        args=_overrides("train.steps=-1"),
    ),
    Case(
        "image size 30",
        ("data.image_size: 30 is not a multiple of 4", "use 28 or 32"),
        args=_overrides("data.image_size=30"),
    ),
    Case("image size 33", ("33 is not a multiple of 4",), args=_overrides("data.image_size=33")),
    Case(
        "image size too small for PatchGAN",
        ("data.image_size=16 is below 24 px",),
        args=_overrides("data.image_size=16"),
    ),
    Case(
        "split fractions",
        ("data.split=[0.0, 0.0, 0.0] must be three non-negative",),
        args=_overrides("data.split=[0,0,0]"),
    ),
    Case(
        "split counts beyond the cohort",
        ("data.split=[5, 2, 1] asks for 8 images but the CT cohort has 6; give counts",),
        args=_overrides("data.split=[5,2,1]"),
    ),
    Case(
        "split without test images",
        ("data.split=[1.0, 0.0, 0.0] leaves the test part empty in split 0 of the CT cohort",),
        args=_overrides("data.split=[1,0,0]"),
    ),
    Case(
        "split neither fractions nor counts",
        ("data.split=[1.5, 1.0, 1.0] mixes fractions and counts",),
        args=_overrides("data.split=[1.5,1,1]"),
    ),
    Case("unknown preset", ("unknown preset 'huge'",), args={"preset": ["--preset", "huge"]}),
    Case(
        "config file missing",
        ("config file nope.yaml does not exist",),
        args={"config": ["--config", "nope.yaml"]},
    ),
    Case(
        "config file not YAML",
        (
            "config file bad.yaml is not valid YAML at line 3, column 2: expected <block end>",
            "(while parsing a block mapping begun on line 1)",
            "check the brackets, quotes and indentation there",
        ),
        _file("bad.yaml", "train:\n  steps: 2\n model: {ngf: 8}\n"),
        {"config": ["--config", "bad.yaml"]},
    ),
    Case(
        "config file not a mapping",
        ("list.yaml must hold a mapping",),
        _file("list.yaml", "- 1\n- 2\n"),
        {"config": ["--config", "list.yaml"]},
    ),
    Case(
        "key given twice in a config file",
        ("config file twice.yaml: 'train' is given twice (lines 1 and 3); keep one",),
        _file("twice.yaml", "train: {steps: 2}\nmodel: {ngf: 8}\ntrain: {steps: 3}\n"),
        {"config": ["--config", "twice.yaml"]},
    ),
    Case(
        "unknown key in config file",
        ("configuration in c.yaml: model.widht: unknown key",),
        _file("c.yaml", "model: {widht: 2}\n"),
        {"config": ["--config", "c.yaml"]},
    ),
    Case(
        "override without '='",
        ("override 'train.steps' is not of the form section.key=value",),
        args=_overrides("train.steps"),
    ),
    Case("unknown method", ("unknown method 'magic'",), args={"method": ["--method", "magic"]}),
    Case("device that is not one", ("is not a device",), args=_overrides("train.device=tpu7")),
    Case("no --out", ("give --out RUN_DIR",), args={"out": []}),
    Case(
        "--resume with overrides",
        ("--resume continues with the run's saved configuration",),
        args={"out": ["--resume", "run"]},
    ),
]
if not torch.cuda.is_available():
    CONFIG_CASES.append(
        Case("CUDA without a GPU", ("no GPU is visible",), args=_overrides("train.device=cuda"))
    )


@pytest.fixture
def cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_cohort(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths in the cases; nothing may land elsewhere
    return tmp_path


def _train_args(changes: dict[str, list[str]]) -> list[str]:
    parts = {
        "target": changes.get("target", ["ct.csv"]),
        "source": changes.get("source", ["mri.csv"]),
        "out": changes.get("out", ["--out", "run"]),
    }
    return [
        "train",
        "-q",
        *(a for t in parts["target"] for a in ("--target", t)),
        *(a for s in parts["source"] for a in ("--source", s)),
        *parts["out"],
        *changes.get("config", []),
        *changes.get("preset", []),
        *changes.get("method", []),
        *TINY,
        "train.steps=2",
        *changes.get("extra", []),
    ]


@pytest.mark.parametrize("case", MANIFEST_CASES + CONFIG_CASES, ids=lambda c: c.name)
def test_bad_train_input_is_one_line_and_writes_nothing(case: Case, cohort: Path) -> None:
    case.spoil(cohort)
    args = _train_args(case.args)
    before = snapshot(cohort)
    assert_one_line_error(cli(*args), *case.expect)
    assert snapshot(cohort) == before  # no run folder, no temporary file, nothing touched


def _experiment(root: Path, **fields: object) -> Path:
    spec = {
        "target": "ct.csv",
        "sources": ["mri.csv"],
        "methods": ["target_only"],
        "ours": "target_only",
        "splits": 1,
    }
    (root / "e.yaml").write_text(yaml.safe_dump({**spec, **fields}))
    return root / "e.yaml"


def _exp(**fields: object) -> Callable[[Path], object]:
    return lambda root: _experiment(root, **fields)


def _exp_on_broken_manifest(root: Path) -> None:
    _experiment(root)
    ct(root, *GOOD, "gone.npy,1,d")


EXPERIMENT_CASES = [
    Case("experiment file missing", ("experiment file nope.yaml does not exist",)),
    Case(
        "experiment file not YAML",
        (
            "experiment file nope.yaml is not valid YAML at line 2, column 1: expected ',' or ']'",
            "(while parsing a flow sequence begun on line 1)",
        ),
        _file("nope.yaml", "methods: [duiit\n"),
    ),
    Case(
        "experiment file not a mapping",
        ("nope.yaml must hold a mapping",),
        _file("nope.yaml", "- duiit\n"),
    ),
    Case(
        "key given twice in an experiment file (a nested one too)",
        ("experiment file nope.yaml: 'steps' is given twice (lines 3 and 4); keep one",),
        _file("nope.yaml", "methods: [duiit]\nrun:\n  train: {steps: 2,\n    steps: 3}\n"),
    ),
    Case(
        "experiment unknown key",
        ("e.yaml: splitz: unknown key; allowed here: alpha",),
        _exp(splitz=3),
    ),
    Case(
        "experiment unknown method",
        ("unknown method 'magic'",),
        _exp(methods=["duiit", "magic"]),
    ),
    Case(
        "ours not among the methods",
        ("ours='duiit' is not among methods ['target_only']",),
        _exp(ours="duiit"),
    ),
    Case(
        "setting naming an unknown source",
        ("setting ['PET'] names ['PET']",),
        _exp(methods=["duiit", "target_only"], ours="duiit", settings=[["PET"]]),
    ),
    Case(
        "run section not a mapping",
        ("run.train: Input should be a valid dictionary",),
        _exp(run={"train": 5}),
    ),
    Case(
        "unknown run key in experiment",
        ("train.stepz: unknown key",),
        _exp(run={"train": {"stepz": 1}}),
    ),
    Case(
        "experiment image size 30",
        ("data.image_size: 30 is not a multiple of 4",),
        _exp(run={"data": {"image_size": 30}}),
    ),
    Case(
        "experiment on a broken manifest",
        ("ct.csv, line 5: file", "gone.npy does not exist"),
        _exp_on_broken_manifest,
    ),
    Case(
        "workers below 1", ("--workers 0: give 1 or more",), _exp(), {"options": ["--workers", "0"]}
    ),
    Case(
        "repeated method",
        ("methods name target_only twice",),
        _exp(methods=["target_only", "duiit", "target_only"]),
    ),
    Case(
        "repeated setting",
        ("settings list ['MRI'] twice",),
        _exp(methods=["duiit", "target_only"], ours="duiit", settings=[[], ["MRI"], ["MRI"]]),
    ),
    Case(
        "a method without runs",
        ("method target_only gets no run", "add [] to settings"),
        _exp(methods=["duiit", "target_only"], ours="duiit", settings=[["MRI"]]),
    ),
    Case(
        "experiment split without test images",
        ("leaves the test part empty in split 0",),
        _exp(run={"data": {"split": [1, 0, 0]}}),
    ),
    Case(
        "experiment split neither fractions nor counts",
        ("data.split=[1.5, 1.0, 1.0] mixes fractions and counts",),
        _exp(run={"data": {"split": [1.5, 1, 1]}}),
    ),
    Case(
        "unknown key in run",
        ("run: unknown key 'colour'; allowed here: data, model, predictor, train",),
        _exp(run={"colour": "red"}),
    ),
    Case(
        "unknown backend",
        ("--backend 'spark': choose local or ray",),
        _exp(),
        {"options": ["--backend", "spark"]},
    ),
    Case(
        "Ray option on the local backend",
        ("--address: only with --backend ray",),
        _exp(),
        {"options": ["--address", "auto"]},
    ),
    Case(
        "--workers on Ray",
        ("--workers is for --backend local", "--cpus-per-run, --gpus-per-run"),
        _exp(),
        {"options": ["--backend", "ray", "--workers", "2"]},
    ),
    Case(
        "no CPU per run",
        ("--cpus-per-run 0.0 and --gpus-per-run 0.0: a run needs more than 0 CPUs",),
        _exp(),
        {"options": ["--backend", "ray", "--cpus-per-run", "0"]},
    ),
]


@pytest.mark.parametrize("case", EXPERIMENT_CASES, ids=lambda c: c.name)
def test_bad_experiment_input_is_one_line_and_writes_nothing(case: Case, cohort: Path) -> None:
    case.spoil(cohort)
    name = "e.yaml" if (cohort / "e.yaml").exists() else "nope.yaml"
    before = snapshot(cohort)
    options = case.args.get("options", [])
    assert_one_line_error(cli("experiment", name, "--out", "exp", "-q", *options), *case.expect)
    assert snapshot(cohort) == before  # no experiment folder


def test_ray_backend_without_ray_is_one_line(cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _experiment(cohort)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is absent
    before = snapshot(cohort)
    res = cli("experiment", "e.yaml", "--out", "exp", "-q", "--backend", "ray")
    assert_one_line_error(res, "--backend ray needs Ray", "pip install 'duiit[ray]'")
    assert snapshot(cohort) == before


@pytest.mark.parametrize(
    ("rows", "expect", "images"),
    [
        ([*GOOD, "ct0.npy,20,a"], ("ct.csv, line 5 repeats line 2 (ct0.npy)", "used once"), 3),
        (
            [*GOOD, "tiny.npy,23,d"],
            ("ct.csv, line 5:", "tiny.npy is only 1x1 px and is enlarged to 32x32"),
            4,
        ),
    ],
    ids=["repeated manifest row", "1x1 image"],
)
def test_oddities_are_one_line_warnings(
    cohort: Path, rows: list[str], expect: tuple[str, ...], images: int
) -> None:
    np.save(cohort / "tiny.npy", np.ones((1, 1), dtype=np.float32))
    ct(cohort, *rows)
    res = cli("data", "inspect", "ct.csv", "--size", "32", "-q")
    assert res.code == 0, res.err
    [line] = res.err.strip().splitlines()
    assert line.startswith("warning: ") and all(e in line for e in expect), line
    with pytest.warns(DuiitWarning):
        [c] = load_manifest(cohort / "ct.csv", DataConfig(image_size=32), quiet=True)
    assert len(c) == images


def test_inspect_never_writes_beside_read_only_data(cohort: Path, tmp_path_factory) -> None:
    """The contact sheet goes to the working folder (or --out), never next to the data, and an
    existing sheet is only replaced with --force."""
    data = cohort
    for p in [*data.iterdir(), data]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    work = tmp_path_factory.mktemp("work")
    try:
        before = snapshot(data)
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(work)
            res = cli("data", "inspect", data / "ct.csv", data / "mri.csv", "--size", "32", "-q")
            assert res.code == 0, res.err
            assert (work / "ct_contact.png").stat().st_size > 0
            again = cli("data", "inspect", data / "ct.csv", "--size", "32", "-q")
            assert_one_line_error(again, "ct_contact.png already exists", "--force")
            forced = cli("data", "inspect", data / "ct.csv", "--size", "32", "-q", "--force")
            assert forced.code == 0, forced.err
            res = cli("data", "inspect", data / "ct.csv", "--size", "32", "-q", "--out", "s.png")
            assert res.code == 0 and (work / "s.png").exists()
            (work / "sheets").mkdir()
            res = cli("data", "inspect", data / "ct.csv", "--size", "32", "-q", "--out", "sheets")
            assert res.code == 0 and (work / "sheets" / "ct_contact.png").exists()
            bad = cli("data", "inspect", data / "ct.csv", "-q", "--out", "new-folder")
            assert_one_line_error(
                bad, "--out new-folder is neither a folder nor a .png", "new-folder.png"
            )
        assert snapshot(data) == before
    finally:
        for p in [data, *data.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_inspect_with_class_labels(cohort: Path) -> None:
    """Text labels with --task classification were a ValueError traceback (data/load.py):
    each manifest's classes are counted, the same class names shared across manifests."""
    ct(cohort, "ct0.npy,young,a", "ct1.npy,old,b", "ct2.npy,young,c")
    write_manifest(cohort / "mri.csv", ["mri0.npy,old,m0", "mri1.npy,middle,m1"])
    res = cli("data", "inspect", "ct.csv", "mri.csv", "--size", "32", "--task", "classification")
    assert res.code == 0, res.err
    assert "young:2" in res.out and "middle:1" in res.out  # CT's count, MRI's count
    [c] = load_manifest(cohort / "ct.csv", DataConfig(image_size=32, task="classification"))
    assert c.classes == ("old", "young") and c.labels.tolist() == [1, 0, 1]


def test_weak_splits_are_warned_about_once_before_the_grid_runs(cohort: Path) -> None:
    """No validation image, or one test patient, gives runs whose selection or statistics
    mean little: said once for the grid (naming its splits) before any run, not per run."""
    _experiment(cohort, splits=2, run={"data": {"split": [0.8, 0, 0.2], "image_size": 32}})
    res = cli("experiment", "e.yaml", "--out", "exp", *(f"run.{o}" for o in TINY[1:]),
              "run.train.steps=2")  # fmt: skip
    assert res.code == 0, res.err
    [line] = [w for w in res.err.splitlines() if "validation part empty" in w]
    assert line.startswith("warning: data.split=[0.8, 0.0, 0.2] leaves the validation part empty")
    assert "in splits 0, 1" in line
    train = cli("train", "--target", "ct.csv", "--out", "run", "--method", "target_only",
                *TINY, "train.steps=2")  # fmt: skip
    assert train.code == 0, train.err
    assert "puts 1 patient in the test part of split 0" in train.err
