"""`make setup` picks the torch build that fits the machine (checked with `make -n`, which
prints the commands without running them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def torch_install(tmp_path: Path, nvidia_smi: str | None) -> str:
    """The command that installs torch into a fresh venv, on a PATH whose `nvidia-smi` is
    the given shell script (or absent)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvidia_smi is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{nvidia_smi}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    make = shutil.which("make")
    assert make is not None
    res = subprocess.run(  # PATH holds that nvidia-smi alone, not the machine's own
        [make, "-n", "-B", "setup", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        check=True,
    )
    (line,) = [line for line in res.stdout.splitlines() if "install -q torch" in line]
    return line


@pytest.mark.parametrize(
    ("nvidia_smi", "expected"),
    [
        (None, "torch==2.13.0"),
        ('echo "NVIDIA-SMI has failed: no driver"; exit 9', "torch==2.13.0"),
        ('echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"', "torch"),
    ],
    ids=["no nvidia-smi", "nvidia-smi failing", "a GPU"],
)
def test_setup_installs_the_cpu_build_unless_a_gpu_answers(
    tmp_path: Path, nvidia_smi: str | None, expected: str
) -> None:
    line = torch_install(tmp_path, nvidia_smi)
    assert line.endswith(f"pip install -q {expected}")
    assert "-c 'import torch' 2>/dev/null ||" in line  # a torch already in the venv is kept


def test_make_test_installs_the_ray_extra(tmp_path: Path) -> None:
    """CI runs `make test`; the Ray backend's tests need the optional extra, so it is
    installed there (and `make demo` does without it)."""
    make = shutil.which("make")
    assert make is not None
    plans = {
        target: subprocess.run(
            [make, "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for target in ("test", "demo")
    }
    assert "pip install -q -e '.[dev,ray]'" in plans["test"]
    assert "ray]" not in plans["demo"]
