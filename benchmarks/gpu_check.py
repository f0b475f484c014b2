"""What benchmarks/gpu-check.sh runs: duiit's CUDA path checked and measured on one GPU in
at most 10 minutes, ending with one summary table (benchmarks/README.md says what to look
for in it).

1. tests/test_cuda.py: a short DUIIT run, a resume after the image pool is full, an
   experiment with quality scoring, the fast path with and without channels-last and
   compile, and with 2 or more GPUs a 2-rank torchrun run on NCCL.
2. benchmarks/step.py at 128 and 256 px: the plain step against the fast one, eager and
   compiled, with and without channels-last: images/s and each step's working memory.
3. A 300-step run of the `paper` preset (256 px, ngf 64, 9 blocks, ResNet-50, batch 1) on a
   phantom cohort, killed at its first checkpoint (step 100, the 50-image pool full) and
   resumed to the end. Eager (train.compile=off): compiling its five networks twice would
   not fit the budget; part 1 times compiled steps.

Each part has a time cap (together 10 minutes); a part that reaches it is killed and
reported, and the command then fails. Outputs and logs go to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import torch

from duiit.training.loop import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("failure", "error", "skipped")  # a JUnit test case's child, if it did not pass
CAPS = {"tests": 210, "step": 210, "paper": 180}  # seconds; 600 in all
CONTENDERS = ["plain", "fast-compile", "fast+channels_last-compile", "fast", "fast+channels_last"]
PAPER = [
    "--preset",
    "paper",
    "train.steps=300",
    "train.ckpt_every=100",
    "train.eval_every=100",
    "train.log_every=50",
    "train.sample_every=300",
    "train.compile=off",
]


def require_cuda() -> None:
    """One line and a failure where there is nothing to check."""
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        sys.exit(
            f"gpu-check: no CUDA GPU visible (torch {torch.__version__}, {build}); run it on a "
            "machine with an NVIDIA GPU and a CUDA build of torch (README: Set-up)"
        )


class Part:
    """One part's subprocesses, sharing its time cap; output goes to one log file."""

    def __init__(self, name: str, out: Path) -> None:
        self.cap, self.start = CAPS[name], time.perf_counter()
        self.log = (out / f"{name}.log").open("w")

    def left(self) -> float:
        return self.cap - (time.perf_counter() - self.start)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def start_process(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """In a session of its own, so a kill reaches the processes it starts too."""
        self.log.write(f"$ {' '.join(args)}\n")
        self.log.flush()
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait(self, proc: subprocess.Popen) -> int | None:
        """Its exit status, or None when the cap ran out first (it is then killed)."""
        try:
            return proc.wait(timeout=max(self.left(), 0))
        except subprocess.TimeoutExpired:
            kill(proc)
            return None

    def run(self, args: list[str], env: dict[str, str] | None = None) -> int | None:
        return self.wait(self.start_process(args, env))


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def status(code: int | None, part: Part) -> str:
    if code is None:
        return f"TIMEOUT at its {part.cap} s cap"
    return "ok" if code == 0 else f"FAILED (exit {code}; see {Path(part.log.name).name})"


def gpu_tests(out: Path) -> list[list[str]]:
    part = Part("tests", out)
    xml = out / "tests.xml"
    code = part.run(
        ["-m", "pytest", "-q", "-rA", "tests/test_cuda.py", f"--junitxml={xml}"],
        env={"DUIIT_TEST_GPU": "1"},
    )
    rows = [["GPU tests (tests/test_cuda.py)", status(code, part), f"{part.seconds:.0f} s"]]
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome = next((c.tag for c in case if c.tag in OUTCOMES), "passed")
            why = next((c.get("message", "") for c in case if c.tag == "skipped"), "")
            rows.append(
                [f"  {case.get('name')}", outcome, f"{float(case.get('time', 0)):.0f} s {why}"]
            )
    return rows


def step_benchmark(out: Path) -> list[list[str]]:
    part = Part("step", out)
    csv = out / "step.csv"
    code = part.run(
        [
            "benchmarks/step.py",
            "--sizes",
            "128",
            "256",
            "--steps",
            "10",
            "--warmup",
            "3",
            "--contenders",
            *CONTENDERS,
            "--csv",
            str(csv),
        ]
    )
    rows = [["step.py, batch 4, ngf 64, ResNet-18", status(code, part), f"{part.seconds:.0f} s"]]
    if csv.exists():
        for r in pd.read_csv(csv).itertuples():
            rows.append(
                [
                    f"  {r.px} px {r.contender}",
                    f"{r.img_s:.1f} img/s",
                    f"x{r.x_first:.2f} of plain; step mem {r.step_mem_gib:.2f} GiB",
                ]
            )
    return rows


def paper_run(out: Path) -> list[list[str]]:
    """Phantom cohort, the run killed at its first checkpoint, then resumed."""
    part = Part("paper", out)
    cohort, run = out / "cohort", out / "paper"
    synth = ["-m", "duiit", "data", "synth", "--out", str(cohort), "--size", "256"]
    code = part.run([*synth, "--ct", "24", "--mri", "24", "--pet", "1", "--slices", "2"])
    if code != 0:
        return [["paper preset, 300 steps: phantom cohort", status(code, part), ""]]
    data = ["--target", str(cohort / "ct.csv"), "--source", str(cohort / "mri.csv")]
    first = part.start_process(["-m", "duiit", "train", "-q", *data, "--out", str(run), *PAPER])
    last = run / "checkpoints" / "duiit-last.pt"
    while not last.exists() and first.poll() is None and part.left() > 0:
        time.sleep(0.2)
    until_kill = part.seconds
    if not last.exists():  # it failed, or the cap ran out, before its first checkpoint
        code = first.poll()
        if code is None:
            kill(first)
        return [["paper preset, 300 steps: until step 100", status(code, part), ""]]
    kill(first)
    killed_at = load_checkpoint(last)["step"]
    code = part.run(["-m", "duiit", "train", "-q", "--resume", str(run)])
    rows = [
        [
            "paper preset, 300 steps, kill + resume",
            status(code, part),
            f"killed at step {killed_at} after {until_kill:.0f} s (start-up included); "
            f"resumed to 300 in {part.seconds - until_kill:.0f} s",
        ]
    ]
    if code == 0:
        metrics = json.loads((run / "result.json").read_text())["metrics"]
        rows.append(["  test metrics", "", ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "gpu-check-out", help="replaced if present")
    args = p.parse_args()
    require_cuda()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    start = time.perf_counter()
    print(
        f"gpu-check: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s), "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}); logs in {args.out}",
        flush=True,
    )
    rows = [*gpu_tests(args.out), *step_benchmark(args.out), *paper_run(args.out)]
    rows.append(["total", "", f"{time.perf_counter() - start:.0f} s (budget 600 s)"])
    rows.insert(0, ["check", "result", "detail"])
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip())
    failed = [r[0].strip() for r in rows if r[1].startswith(("FAILED", "TIMEOUT", *OUTCOMES[:2]))]
    if failed:
        sys.exit(f"gpu-check: {len(failed)} check(s) did not pass: {'; '.join(failed)}")


if __name__ == "__main__":
    main()
