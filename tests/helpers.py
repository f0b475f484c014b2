"""Small writers of test files in the formats users bring."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

from duiit.cli import main
from duiit.data.cohort import Cohort


def write_dicom(
    path: Path,
    stored: np.ndarray,
    slope: float = 1.0,
    intercept: float = -1024.0,
    position: float | None = None,
    pixels: bool = True,
    modality: str = "CT",
    **attributes: object,
) -> Path:
    """A CT (or PET: modality PT) DICOM file of unsigned 16-bit stored values; (F, H, W) makes
    it multi-frame; `attributes` are further DICOM keywords (PatientID, ...)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = (
        PositronEmissionTomographyImageStorage if modality == "PT" else CTImageStorage
    )
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if position is not None:
        ds.ImagePositionPatient = [0.0, 0.0, position]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    if pixels:
        ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_manifest(path: Path, rows: list[str], header: str = "path,label,patient_id") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def make_cohort(root: Path) -> None:
    """A valid tiny cohort that loads in milliseconds: 6 CT and 4 MRI patients, one 32 px
    NPY image each, manifests ct.csv and mri.csv."""
    rng = np.random.default_rng(0)
    for modality, n in (("ct", 6), ("mri", 4)):
        rows = []
        for i in range(n):
            np.save(root / f"{modality}{i}.npy", rng.random((32, 32), dtype=np.float32) * 100)
            rows.append(f"{modality}{i}.npy,{20 + i},{modality}-p{i}")
        write_manifest(root / f"{modality}.csv", rows)


def noise_cohort(name: str, seed: int, n: int = 16, size: int = 32) -> Cohort:
    """A cohort of n random images in [-1, 1] with random labels, its `meta` holding the
    columns a loaded manifest gives: for steps whose mechanics, not learning, are tested."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, size, size, generator=g) * 2 - 1).to(torch.float16)
    return Cohort(
        name,
        images,
        torch.rand(n, generator=g),
        np.array([f"p{i}" for i in range(n)], dtype=object),
        pd.DataFrame(
            {
                "manifest": ["x.csv"] * n,
                "path": ["x"] * n,
                "slice": [0] * n,
                "line": range(2, n + 2),
                "raw_h": [size] * n,
                "raw_w": [size] * n,
                "units": ["hu"] * n,
                "window": [""] * n,
                "colour": [False] * n,
            }
        ),
    )


# On PYTHONPATH, this folder makes every Python process started with it fail a run whose
# folder holds a file named FAULT, with its text (tests/faults/sitecustomize.py; not imported
# here, which would install it in the test process too).
FAULTS = Path(__file__).with_name("faults")
FAULT = "FAULT"
KILL = "KILL"  # holding N: the process running that run SIGKILLs itself its first N starts
HANG = "HANG"  # the process running that run writes its pid there and sleeps until killed


# The smallest networks that still learn on 32 px phantoms: keeps the suite in minutes.
TINY = [
    "data.image_size=32",
    "model.ngf=8",
    "model.ndf=8",
    "model.n_blocks=2",
    "predictor.network=resnet10",
    "predictor.width=0.5",
    "predictor.batch_size=4",
    "predictor.steps=8",
]


# The run settings of the tiny experiments: one residual block, a quarter-width ResNet-10.
TINY_RUN = {
    "data": {"image_size": 32},
    "model": {"ngf": 8, "ndf": 8, "n_blocks": 1},
    "predictor": {"network": "resnet10", "width": 0.25, "batch_size": 4, "steps": 6},
    "train": {
        "steps": 6,
        "batch_size": 4,
        "eval_every": 3,
        "log_every": 3,
        "ckpt_every": 6,
        "sample_every": 6,
    },
}


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli(*args: str | Path) -> CliResult:
    """`duiit ARGS` in this process (a subprocess costs seconds of imports): exit status,
    stdout, stderr. An exception escaping `main` is what a user would see as a traceback, so
    it is left to fail the test."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["duiit", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(res: CliResult, *fragments: str) -> str:
    """Exit status 2 and exactly one line on stderr, the error, holding every fragment."""
    lines = res.err.strip().splitlines()
    assert res.code == 2, (res.code, res.err, res.out[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` with its size and modification time: equal
    snapshots before and after a command mean it wrote nothing there."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        if p.is_file()
        else (-1, 0)
        for p in sorted(root.rglob("*"))
    }


def temp_files(root: Path) -> list[Path]:
    """Temporary files of duiit's writers (`.NAME.PID-RANDOM.tmp.SUFFIX`) left under `root`."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc-per-node 2 ARGS` on a free local port."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def identical_ranks(monkeypatch: pytest.MonkeyPatch, device: torch.device, world: int) -> None:
    """`dist.all_reduce` as `world` processes holding the same tensors see it (the sum is
    world times the tensor). Like NCCL, it reduces only tensors on the process's device."""

    def all_reduce(t: torch.Tensor, *args: object, **kwargs: object) -> None:
        if t.device != device:
            raise RuntimeError(f"all_reduce of a {t.device} tensor; this group reduces {device}")
        t.mul_(world)

    monkeypatch.setattr(dist, "all_reduce", all_reduce)


HOLD = """
import sys
from pathlib import Path
from duiit.files import folder_lock
with folder_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold(folder: Path, what: str) -> subprocess.Popen:
    """Another process holding `folder`'s lock until killed (returns once it holds it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), what],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def script_module(name: str) -> ModuleType:
    """A module of scripts/, loaded from its file (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kill_at_first_checkpoint(proc: subprocess.Popen, run_dir: Path) -> Path:
    """SIGKILL a `duiit train` process as soon as it has written its first checkpoint (a
    crash between two checkpoints, nothing flushed); the checkpoint it left."""
    last = run_dir / "checkpoints" / "duiit-last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return last
