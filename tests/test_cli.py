"""The command line as a user meets it: help everywhere, clear errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def duiit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duiit", *args], capture_output=True, text=True, timeout=300
    )


def test_synth_then_inspect_then_refuse_existing(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    res = duiit(
        "data",
        "synth",
        "--out",
        str(out),
        "--ct",
        "3",
        "--mri",
        "2",
        "--pet",
        "0",
        "--size",
        "32",
        "--slices",
        "2",
        "-q",
    )
    assert res.returncode == 0, res.stderr
    assert (out / "ct.csv").is_file() and not (out / "pet.csv").exists()
    sheet = tmp_path / "sheet.png"
    res = duiit(
        "data",
        "inspect",
        str(out / "ct.csv"),
        str(out / "mri.csv"),
        "--size",
        "32",
        "--out",
        str(sheet),
    )
    assert res.returncode == 0, res.stderr
    assert "CT" in res.stdout and "MRI" in res.stdout and sheet.stat().st_size
    res = duiit("data", "synth", "--out", str(out))
    assert res.returncode == 2
    assert "already exists" in res.stderr and "Traceback" not in res.stderr


def test_bad_manifest_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "ct.csv").write_text("path,label\nx.png,3\n")
    res = duiit("data", "inspect", str(tmp_path / "ct.csv"))
    assert res.returncode == 2
    assert "lacks column(s) patient_id" in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["data", "--help"],
        ["data", "synth", "--help"],
        ["data", "inspect", "--help"],
    ):
        res = duiit(*args)
        assert res.returncode == 0 and "Usage" in res.stdout, args
