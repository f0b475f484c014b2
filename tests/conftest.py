"""Shared fixtures: a small phantom cohort written once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fake_device
import pytest
import torch

from duiit.config import load_config
from duiit.data import Cohort, load_cohorts
from duiit.data.phantom import PhantomSpec, synthesise

# The suite runs on the CPU everywhere: its bit-exact checks assume CPU kernels and its
# torchrun tests gloo. tests/test_cuda.py is the GPU suite; DUIIT_TEST_GPU=1 (set by
# benchmarks/gpu-check.sh) leaves the GPUs visible for it. Set before CUDA initialises.
if os.environ.get("DUIIT_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
# Under pytest-xdist (`make test` runs two workers) each worker takes its share of the
# cores, and so do the processes the tests start (they inherit OMP_NUM_THREADS): two
# workers of two threads each on two cores would mostly wait on each other.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
torch.set_num_threads(_THREADS)
fake_device.register()  # before any test's backward pass (fake_device.register says why)


@pytest.fixture(autouse=True)
def _no_inherited_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """duiit wraps its output at COLUMNS when set (progress.fit_width); the tests that
    depend on it set it themselves. A value from the caller's shell, or the 80 that
    pytest-xdist's workers get, would otherwise wrap the lines other tests read."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CT 100, MRI 30, PET 30 patients of 2 slices at 32 px: enough CT patients that a tiny
    predictor generalises to held-out ones (with 30 it memorises its 46 images)."""
    out = tmp_path_factory.mktemp("phantom") / "cohort"
    synthesise(
        out, PhantomSpec(patients={"CT": 100, "MRI": 30, "PET": 30}, size=32, slices=2), quiet=True
    )
    return out


@pytest.fixture(scope="session")
def cohorts(phantom_dir: Path) -> tuple[Cohort, list[Cohort]]:
    """The phantom's CT (target) and MRI (source) at the tests' 32 px."""
    return load_cohorts(
        phantom_dir / "ct.csv",
        [phantom_dir / "mri.csv"],
        load_config(overrides=["data.image_size=32"]).data,
        quiet=True,
    )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One CPU thread for a test: bitwise comparisons within one process (as the resume
    tests use), and tiny networks whose operations are too small to split, where on a busy
    machine the second thread mostly waits (measured: the CUT learning test took 62 s on
    one thread, 419 s on two, load average 6 on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
