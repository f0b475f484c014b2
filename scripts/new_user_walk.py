"""A new user's walk through duiit, as the README leads it, on a tiny phantom: import a
dataset, inspect it, train, translate, augment, predict new unlabelled scans, run a
2-method grid and report it. Every command's output goes to a file, not a terminal (as in
a pipe, a CI log or `| tee`), and the walk checks that each output a command names exists
and that no line was wrapped.

    python scripts/new_user_walk.py [FOLDER]     # default: a temporary folder

Exits 0 and prints the time taken, or 1 naming what went wrong. `tests/test_walk.py` runs
it. Commands run in this process (`duiit.cli.main`), so the walk costs one start-up.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import yaml

from duiit.cli import main

# The README's CPU preset made smaller still, so that the whole walk takes seconds: 32 px,
# the smallest translator, 4 steps.
PRESET = "cpu-demo"
TINY = {
    "data": {"image_size": 32},
    "model": {"ngf": 8, "ndf": 8, "n_blocks": 1},
    "predictor": {"network": "resnet10", "width": 0.25, "batch_size": 4, "steps": 4},
    "train": {"steps": 4, "batch_size": 4, "eval_every": 2, "log_every": 2, "ckpt_every": 4},
}
OVERRIDES = [f"{s}.{k}={v}" for s, d in TINY.items() for k, v in d.items()]


class Walk:
    """Runs commands in `folder` with their output in files, and collects what is wrong."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems: list[str] = []

    def run(self, *args: str) -> str:
        """`duiit ARGS` with stdout and stderr in files (not terminals); returns stdout."""
        out, err = self.folder / "walk.stdout", self.folder / "walk.stderr"
        argv, sys.argv, code = sys.argv, ["duiit", *args], 0
        with out.open("w") as o, err.open("w") as e, redirect_stdout(o), redirect_stderr(e):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            finally:
                sys.argv = argv
        text, errors = out.read_text(), err.read_text()
        print(f"$ duiit {' '.join(args)}\n{text}{errors}", end="", flush=True)
        if code != 0:
            self.problems.append(f"duiit {args[0]} exited {code}: {errors.strip()}")
        self.check(args[0], text + errors)
        return text

    def check(self, command: str, text: str) -> None:
        """Every `-> PATH` names something that exists (a wrapped path would not), and every
        table row is whole."""
        for path in re.findall(r"-> (\S+)", text):
            if not (self.folder / path.rstrip(":;,")).exists():
                self.problems.append(f"duiit {command} names {path}, which does not exist")
        for line in text.splitlines():
            whole = line.startswith("|") == line.endswith("|") and (
                line.startswith("┃") == line.endswith("┃")
                and line.startswith("│") == line.endswith("│")
            )
            if not whole:
                self.problems.append(f"duiit {command} printed a broken line: {line!r}")

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(what)


def ct_ich_layout(cohort: Path, root: Path) -> None:
    """The phantom's CT as PhysioNet's CT-ICH NIfTI release lays it out: ct_scans/NNN.nii.gz
    and Patient_demographics.csv."""
    (root / "ct_scans").mkdir(parents=True)
    ct = pd.read_csv(cohort / "ct.csv")
    for k, path in enumerate(ct["path"], 1):
        shutil.copy(cohort / path, root / "ct_scans" / f"{k:03d}.nii.gz")
    numbers = range(1, len(ct) + 1)
    table = pd.DataFrame({"Patient Number": numbers, "Age (years)": ct["label"]})
    table.to_csv(root / "Patient_demographics.csv", index=False)


def walk(folder: Path) -> list[str]:
    """The walk in `folder` (made if missing); returns what went wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    os.environ.pop("COLUMNS", None)  # a terminal's width, which output to a file must not take
    w = Walk(folder)
    w.run("data", "synth", "--out", "cohort", "--ct", "24", "--mri", "12", "--pet", "0",
          "--size", "32", "--slices", "2", "-q")  # fmt: skip
    ct_ich_layout(folder / "cohort", folder / "ct-ich")
    w.run("data", "import", "ct-ich", "ct-ich", "--out", "ct.csv")
    w.run("data", "inspect", "ct.csv", "cohort/mri.csv", "--size", "32", "--out", "sheet.png")
    out = w.run("train", "--target", "ct.csv", "--source", "cohort/mri.csv", "--out", "run",
                "--preset", PRESET, *OVERRIDES)  # fmt: skip
    metric_line = [line for line in out.splitlines() if "test patients" in line]
    w.expect(any("patient_r2" in line for line in metric_line), "train's metric line was cut")
    w.run("translate", "run", "--source", "cohort/mri.csv", "--out", "translated")
    w.run("augment", "run", "--target", "ct.csv", "--source", "cohort/mri.csv",
          "--out", "augmented")  # fmt: skip
    new = pd.read_csv("ct.csv", dtype=str).drop(columns=["label"]).head(4)  # new: no labels
    new.to_csv("new.csv", index=False)
    out = w.run("predict", "run", "--input", "new.csv", "--out", "predictions.csv")
    w.expect("4 patients ->" in out, "predict did not name its per-patient table: " + out)
    experiment = {
        "target": "ct.csv",
        "sources": ["cohort/mri.csv"],
        "methods": ["duiit", "target_only"],
        "splits": 1,
        "preset": PRESET,
        "run": TINY,
        "quality": {"max_images": 4},
    }
    Path("grid.yaml").write_text(yaml.safe_dump(experiment))
    w.run("experiment", "grid.yaml", "--out", "grid")
    w.run("report", "grid")
    page = Path("grid/report.html")
    w.expect(page.exists() and "data:image/png" in page.read_text(), "report.html lacks figures")
    return w.problems


if __name__ == "__main__":
    start = time.perf_counter()
    folder = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    problems = walk(folder)
    for problem in problems:
        print(f"walk: {problem}", file=sys.stderr)
    print(f"walk {'failed' if problems else 'ok'} in {time.perf_counter() - start:.0f} s: {folder}")
    sys.exit(1 if problems else 0)
