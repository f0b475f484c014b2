"""Copy an experiment folder's finished runs without their checkpoints: what `duiit report`
reads and what `duiit experiment` needs to skip them (result.json, test predictions, metrics,
split, quality scores and translation examples; a quality reference keeps its model.pt, with
which later runs of its split are scored; results/README.md says why those weights are
left out of git). A few hundred KB a run instead of tens of MB, so a
long grid's results can be committed, shared, or carried to another machine, and the same
command copies them back into a folder where the grid resumes with the rest:

    .venv/bin/python scripts/keep_runs.py runs/real-ct-ich-v3 results/real-ct-ich-v3
    .venv/bin/python scripts/keep_runs.py results/real-ct-ich-v3 runs/real-ct-ich-v3

Unfinished runs are left out (no result.json yet, or, where the experiment scores
translations, a translating run not yet scored or a reference without its features): they
run again from scratch where copied.
A file already in DEST with the same bytes is not written again; each file is written
atomically, so a stopped copy leaves whole files only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from duiit.evaluation.quality import FEATURES, quality_done
from duiit.files import atomic_path, read_json
from duiit.methods import get_method

# Top-level files of an experiment folder, and a finished run's record (grid.unfinished and
# results.audit read these; checkpoints/, samples/ and tb/ are for resuming or looking at a
# run in progress).
FOLDER_FILES = ("experiment.yaml", "runs.csv")
RUN_FILES = (
    "config.yaml",
    "env.json",
    "input_profile.json",
    "result.json",
    "metrics.csv",
    "split.csv",
    "test_predictions.csv",
    "quality.json",
    "translations.pt",
)
REFERENCE_FILES = ("model.pt", "quality-features.pt")


def finished_runs(out: Path) -> list[Path]:
    """The run folders of `out` (protocol runs and quality references) that the grid would
    skip (`grid.unfinished`): a result.json, and the quality files where the experiment
    scores translations. A run finished but unscored is left out: without its checkpoints
    it could not be scored where it is copied to."""
    record = yaml.safe_load((out / "experiment.yaml").read_text())
    scoring = record.get("quality", {}).get("enabled", True)
    found = [*out.glob("runs/*/*/split-*/result.json"), *out.glob("references/split-*/result.json")]
    runs = []
    for run in sorted(p.parent for p in found):
        if run.parent.name == "references":
            done = not scoring or (run / FEATURES).exists()
        else:
            translates = get_method(read_json(run / "result.json")["method"]).translates
            done = not (scoring and translates) or quality_done(run)
        if done:
            runs.append(run)
    return runs


def _copy(src: Path, dest: Path) -> bool:
    """Copy one file atomically unless `dest` already holds the same bytes; True if written."""
    data = src.read_bytes()
    if dest.exists() and dest.read_bytes() == data:
        return False
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return True


def keep(out: Path, dest: Path) -> tuple[int, int]:
    """Copy `out`'s folder files and finished runs' records into `dest`: (runs, files written)."""
    if not (out / "experiment.yaml").exists():
        raise SystemExit(f"{out} is not an experiment folder (no experiment.yaml)")
    written = sum(_copy(out / f, dest / f) for f in FOLDER_FILES if (out / f).exists())
    runs = finished_runs(out)
    for run in runs:
        names = RUN_FILES + (REFERENCE_FILES if run.parent.name == "references" else ())
        target = dest / run.relative_to(out)
        written += sum(_copy(run / f, target / f) for f in names if (run / f).exists())
    return len(runs), written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the experiment folder to copy from")
    parser.add_argument("dest", type=Path, help="where the records go (made if missing)")
    args = parser.parse_args()
    runs, written = keep(args.out, args.dest)
    print(f"{runs} finished runs of {args.out} -> {args.dest} ({written} files written)")
    print("repeat: " + shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
