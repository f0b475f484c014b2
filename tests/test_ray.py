"""`duiit experiment --backend ray` on a real Ray cluster on 127.0.0.1 (a head and one more
node, started here and checked gone afterwards): the same folder as the local pool, a worker
killed mid-run, a killed driver, a run failing on bad input, a folder a node cannot see.

A tiny grid (a quality reference, target_only, duiit) in fp32 with one thread per run, so
that runs are bit-for-bit repeatable and comparable across backends. Every wait is on a
condition and bounded; each command runs under a hard deadline.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import DEVNULL
from unittest import mock

import pandas as pd
import pytest
import torch
import yaml
from helpers import (
    FAULT,
    FAULTS,
    TINY_RUN,
    CliResult,
    assert_one_line_error,
    cli,
    hold,
    make_cohort,
    temp_files,
)
from ray_cluster import LocalCluster, alive, start_cluster, stop_cluster, wait_for, wait_until_up

from duiit.evaluation.grid import ERROR_FILE
from duiit.training.loop import load_checkpoint

pytest.importorskip("ray", reason="the `ray` extra (pip install 'duiit[ray]'; make test has it)")

# fp32, so that one thread gives the same numbers in any process; a checkpoint (and a sample
# grid) every 2 of the 8 steps, so that a run can be stopped between two.
# Two of the 6 CT patients in the test part, so that no warning joins a command's one error line.
RUN = {
    **TINY_RUN,
    "data": {**TINY_RUN["data"], "split": [0.5, 0.17, 0.33]},
    "train": {
        **TINY_RUN["train"],
        "steps": 8,
        "eval_every": 4,
        "log_every": 2,
        "ckpt_every": 2,
        "sample_every": 2,
        "precision": "fp32",
    },
}
EXPERIMENT = {
    "target": "ct.csv",
    "sources": ["mri.csv"],
    "methods": ["duiit", "target_only"],
    "splits": 1,
    "run": RUN,
    "quality": {"max_images": 4},
}
VICTIM = Path("runs/MIX-CT-MRI/duiit/split-00")  # the longest run: killed, or given bad input
DEADLINE = 300  # seconds for one command, or one wait, on this loaded 2-core machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")  # drivers of this module: as the cluster
        # Its workers can be made to fail a run (a file FAULT in its folder): tests/faults.
        started = start_cluster(tmp_path_factory.mktemp("cluster"), {"PYTHONPATH": str(FAULTS)})
        try:
            wait_until_up(started, DEADLINE)
            yield started
        finally:
            stray = stop_cluster(started, 120)
    assert not stray, f"processes of the test cluster outlived it (killed): {stray}"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_cohort(root)
    (root / "exp.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    return root / "exp.yaml"


_STDERR: list[int] = []  # pytest's own copy of the terminal's stderr (not captured)


@pytest.fixture(scope="module", autouse=True)
def _terminal(pytestconfig: pytest.Config) -> None:
    """Where the backstop of `hard_deadline` can write: the test's own output is captured,
    and a process ended by it would never show it. pytest keeps a copy of stderr for its
    faulthandler (a stash key of its own; else plain stderr)."""
    from _pytest.faulthandler import fault_handler_stderr_fd_key

    _STDERR[:] = [pytestconfig.stash.get(fault_handler_stderr_fd_key, 2)]


@contextlib.contextmanager
def hard_deadline(seconds: int) -> Iterator[None]:
    """Interrupt the command running in this (main) thread after `seconds`; should it be
    blocked in native code that never looks at signals, end the whole test process a minute
    later, with every thread's traceback (its Ray nodes then stop: they die with it)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"the command did not finish within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(seconds + 60, exit=True, file=_STDERR[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def experiment(spec: Path, out: Path, *args: str) -> CliResult:
    """The command in this process, its output lines unwrapped (a wide terminal)."""
    with hard_deadline(DEADLINE), mock.patch.dict(os.environ, {"COLUMNS": "1000"}):
        return cli("experiment", spec, "--out", out, *args)


def on_ray(cluster: LocalCluster, spec: Path, out: Path, *args: str) -> CliResult:
    return experiment(spec, out, "--backend", "ray", "--address", cluster.address, *args)


@pytest.fixture(scope="module")
def local(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliResult]:
    """The grid on the local backend, in this process with one thread, as each Ray run has."""
    out = tmp_path_factory.mktemp("local") / "exp"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = experiment(spec, out)
    finally:
        torch.set_num_threads(threads)
    assert res.code == 0, res.err
    return out, res


def runs_table(out: Path) -> pd.DataFrame:
    """runs.csv without what differs between any two executions (times, the folder)."""
    return pd.read_csv(out / "runs.csv").drop(columns=["fit_seconds", "run_dir"])


def same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same run: results, quality scores, split and weights."""
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    times = {"fit_seconds": 0, "sitting_seconds": 0}  # differ between any two executions
    assert {**ra, **times} == {**rb, **times}
    for name in ("quality.json", "split.csv", "test_predictions.csv", "metrics.csv"):
        if (a / name).exists() or (b / name).exists():
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    wa, wb = load_checkpoint(a / "model.pt"), load_checkpoint(b / "model.pt")
    assert all(torch.equal(v, wb["predictor"][k]) for k, v in wa["predictor"].items())


def progress_lines(res: CliResult) -> list[str]:
    """The per-run lines of the progress display, without the fit times."""
    return sorted(line.rsplit(" (", 1)[0] for line in res.out.splitlines() if " split " in line)


def test_ray_writes_the_folder_the_local_pool_writes(
    cluster: LocalCluster, spec: Path, local: tuple[Path, CliResult], tmp_path: Path
) -> None:
    local_out, local_res = local
    res = on_ray(cluster, spec, tmp_path / "exp")
    assert res.code == 0, res.err
    assert "on Ray (2 nodes; 1 CPU and 0 GPU per run)" in res.out
    pd.testing.assert_frame_equal(runs_table(tmp_path / "exp"), runs_table(local_out))
    for run in (VICTIM, Path("runs/PURE-CT/target_only/split-00"), Path("references/split-00")):
        same_run(tmp_path / "exp" / run, local_out / run)
    assert progress_lines(res) == progress_lines(local_res) and len(progress_lines(res)) == 3
    for out in (local_out, tmp_path / "exp"):
        assert cli("report", out).code == 0
    results = [pd.read_csv(d / "results.csv") for d in (local_out, tmp_path / "exp")]
    pd.testing.assert_frame_equal(*(r.filter(regex="^(?!fit_seconds)") for r in results))
    assert not temp_files(tmp_path)


def running(run: Path) -> bool:
    """Whether a live process holds the run folder."""
    pid = holder(run)
    return pid is not None and alive(pid)


def holder(run: Path) -> int | None:
    """The pid in the run folder's lock file: the process running the run, once it wrote it."""
    try:
        return json.loads((run / ".duiit.lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def paused_after_a_checkpoint(run: Path) -> tuple[int, int]:
    """Stop the Ray worker running `run` at a moment when it has written a checkpoint and
    not yet its result; returns its pid and the step of that checkpoint.

    The worker is stopped (SIGSTOP) as soon as its pid is known, and then let run in slices
    of 10 ms between looks at its folder: however loaded the machine, it cannot get past
    the ~6 remaining steps, validations and the final evaluation within one slice, so it is
    always caught in between (where one look after another would race it)."""
    pid = wait_for(f"a process to hold {run}", lambda: holder(run), DEADLINE)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"), "not a Ray worker"
    last = run / "checkpoints" / "duiit-last.pt"
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + DEADLINE
    while not last.exists():
        assert time.monotonic() < deadline, f"{run} wrote no checkpoint within {DEADLINE}s"
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
        os.kill(pid, signal.SIGSTOP)
    assert not (run / "result.json").exists(), "the run ended within one slice"
    return pid, load_checkpoint(last)["step"]


def in_background(fn: Callable[[], object]) -> Callable[[], object]:
    """Run `fn` in a thread; the returned function joins it and returns (or raises) its
    result. For what the test does while the command runs in the main thread."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread by join()
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join() -> object:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "the background step did not end"
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]

    return join


def sample_of(run: Path, step: int) -> tuple[int, int]:
    """Identity of the sample grid written at `step` (inode, mtime): unchanged means no
    process trained that step again."""
    st = (run / "samples" / f"duiit-{step:06d}.png").stat()
    return st.st_ino, st.st_mtime_ns


def test_a_worker_killed_mid_run_is_retried_and_resumes(
    cluster: LocalCluster, spec: Path, local: tuple[Path, CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "exp"

    def kill_the_victim() -> tuple[int, tuple[int, int]]:
        pid, step = paused_after_a_checkpoint(out / VICTIM)
        before = sample_of(out / VICTIM, step)
        os.kill(pid, signal.SIGKILL)
        return step, before

    killed = in_background(kill_the_victim)
    res = on_ray(cluster, spec, out)
    step, before = killed()  # type: ignore[misc]
    assert res.code == 0, res.err
    assert sample_of(out / VICTIM, step) == before  # resumed from that checkpoint
    same_run(out / VICTIM, local[0] / VICTIM)
    pd.testing.assert_frame_equal(runs_table(out), runs_table(local[0]))


def test_a_killed_driver_is_resumed_by_the_same_command(
    cluster: LocalCluster, spec: Path, local: tuple[Path, CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "exp"
    args = ["--out", out, "--backend", "ray", "--address", cluster.address, "-q"]
    cmd = [sys.executable, "-m", "duiit", "experiment", spec, *args]
    driver = subprocess.Popen(list(map(str, cmd)), stdout=DEVNULL, stderr=DEVNULL)
    try:
        _, step = paused_after_a_checkpoint(out / VICTIM)
        driver.kill()  # Ray then kills the job's workers (SIGKILL: the paused one too)
        driver.wait(timeout=60)
    finally:
        driver.kill()
        driver.wait(timeout=60)
    runs = [p for p in out.rglob("split-*") if p.is_dir()]
    wait_for("Ray to end the runs of the killed driver", lambda: not any(map(running, runs)), 120)
    before = sample_of(out / VICTIM, step)
    done = {p: (p / "result.json").stat().st_mtime_ns for p in runs if (p / "result.json").exists()}
    assert out / "references" / "split-00" in done and out / VICTIM not in done
    res = on_ray(cluster, spec, out)
    assert res.code == 0, res.err
    assert f"({len(done)} already finished)" in res.out
    assert all((p / "result.json").stat().st_mtime_ns == t for p, t in done.items())
    assert sample_of(out / VICTIM, step) == before
    same_run(out / VICTIM, local[0] / VICTIM)


def test_a_run_failing_on_bad_input_fails_once_and_the_others_finish(
    cluster: LocalCluster, spec: Path, tmp_path: Path
) -> None:
    """A damaged checkpoint in one run folder: that run fails with its one-line error, is
    not retried, and the grid finishes without it; the command then exits with status 2."""
    out = tmp_path / "exp"
    damaged = out / VICTIM / "checkpoints" / "duiit-last.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    res = on_ray(cluster, spec, out)
    assert_one_line_error(
        res, "1 run(s) failed, the others of the 2 finished", f"({VICTIM}: {damaged} cannot be read"
    )
    assert res.out.count("failed: ") == 1 and f"{damaged} cannot be read" in res.out
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["method"]) == ["target_only"]
    assert (out / "references" / "split-00" / "result.json").exists()
    assert not (out / VICTIM / "result.json").exists()


def test_a_run_raising_a_fault_fails_once_and_the_others_finish(
    cluster: LocalCluster, spec: Path, tmp_path: Path
) -> None:
    """A run raising RuntimeError('CUDA out of memory ...') in its Ray worker (tests/faults):
    that run fails with its type and message, is not retried, and the grid finishes
    without it; the command then exits with status 2, naming it."""
    out = tmp_path / "exp"
    (out / VICTIM).mkdir(parents=True)
    (out / VICTIM / FAULT).write_text("CUDA out of memory. Tried to allocate 2.00 GiB")
    res = on_ray(cluster, spec, out)
    assert_one_line_error(
        res,
        "1 run(s) failed, the others of the 2 finished",
        f"({VICTIM}: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (traceback",
    )
    assert res.out.count("failed: ") == 1
    assert "raise RuntimeError" in (out / VICTIM / ERROR_FILE).read_text()
    assert list(pd.read_csv(out / "runs.csv")["method"]) == ["target_only"]


def test_a_run_waits_for_the_lock_a_lost_worker_left_on_its_folder(
    cluster: LocalCluster, spec: Path, local: tuple[Path, CliResult], tmp_path: Path
) -> None:
    """As when Ray retries a run whose node died, and the shared file system still holds
    the dead worker's lock on the run folder until that machine's lease ends: here another
    process holds it, and ends once the other runs have finished. The run waits for it
    instead of failing as "in use", then trains as the uninterrupted run."""
    out = tmp_path / "exp"
    (out / VICTIM).mkdir(parents=True)
    holder = hold(out / VICTIM, "run folder")

    def release_when_the_others_finished() -> None:
        others = [out / "references" / "split-00", out / "runs/PURE-CT/target_only/split-00"]
        wait_for(
            "the other runs", lambda: all((r / "result.json").exists() for r in others), DEADLINE
        )
        assert not (out / VICTIM / "config.yaml").exists()  # the run has not started
        holder.kill()

    released = in_background(release_when_the_others_finished)
    try:
        res = on_ray(cluster, spec, out)
        released()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert res.code == 0, res.err
    same_run(out / VICTIM, local[0] / VICTIM)


def test_a_folder_a_node_cannot_see_is_refused(
    cluster: LocalCluster, spec: Path, tmp_path: Path
) -> None:
    if cluster.hidden is None:
        pytest.skip("no mount namespaces here (they need root) to hide a folder from a node")
    out = cluster.hidden / "exp"
    res = on_ray(cluster, spec, out)
    assert_one_line_error(
        res, "cannot see the experiment folder", str(out), "a file system that every node shares"
    )
    assert not out.exists()


def test_ray_needs_a_reachable_cluster(spec: Path, tmp_path: Path) -> None:
    res = experiment(spec, tmp_path / "exp", "--backend", "ray", "--address", "127.0.0.1:1")
    assert_one_line_error(res, "cannot reach a Ray cluster at 127.0.0.1:1")
    assert not (tmp_path / "exp").exists()
