"""Reliability corpus, part 2: faults around runs and experiments (small runs): folders in use,
kills, full disks, damaged or malicious files, settings that changed, outputs that exist, and
help texts. Failing cases exit 2 with one line, no traceback, and leave nothing half-written.
docs/reliability.md lists the cases.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import typer
import yaml
from helpers import (
    FAULT,
    FAULTS,
    HANG,
    KILL,
    TINY,
    assert_one_line_error,
    cli,
    hold,
    make_cohort,
    snapshot,
    temp_files,
)

from duiit import cli as duiit_cli
from duiit.errors import DuiitError, DuiitWarning
from duiit.evaluation.grid import ERROR_FILE
from duiit.files import LOCK_NAME, atomic_path, folder_lock
from duiit.training.loop import load_checkpoint

STEPS = ["train.steps=4", "train.eval_every=2", "train.ckpt_every=2", "train.log_every=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_cohort(root)
    return root


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step DUIIT run with checkpoints at steps 2 and 4."""
    run = tmp_path_factory.mktemp("runs") / "duiit"
    res = cli(
        "train", "-q", "--target", data / "ct.csv", "--source", data / "mri.csv",
        "--out", run, *TINY, *STEPS,
    )  # fmt: skip
    assert res.code == 0, res.err
    return run


def interrupted(trained: Path, dest: Path) -> Path:
    """A copy of the run as if killed after its step-2 checkpoint: no result, no final."""
    run = Path(shutil.copytree(trained, dest))
    for name in ("result.json", "model.pt", "test_predictions.csv", "checkpoints/duiit-final.pt"):
        (run / name).unlink()
    return run


EXPERIMENT = {
    "target": "ct.csv",
    "sources": ["mri.csv"],
    "methods": ["duiit", "target_only"],
    "splits": 1,
    "run": {"data": {"image_size": 32}, "train": {"steps": 2, "eval_every": 2}},
    "quality": {"max_images": 4},
}
RUN_MODEL = ["run.model.ngf=8", "run.model.ndf=8", "run.model.n_blocks=1"]
RUN_MODEL += ["run.predictor.network=resnet10", "run.predictor.width=0.25"]


def write_experiment(data: Path, name: str = "e.yaml", **changes: object) -> Path:
    path = data / name
    path.write_text(yaml.safe_dump({**EXPERIMENT, **changes}))
    return path


def experiment(spec: Path, out: Path, *overrides: str) -> object:
    return cli("experiment", spec, "--out", out, "-q", *RUN_MODEL, *overrides)


@pytest.fixture(scope="module")
def finished_experiment(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PURE-CT/target_only and MIX-CT-MRI/duiit, split 0, with quality scores."""
    out = tmp_path_factory.mktemp("exp") / "exp"
    res = experiment(write_experiment(data), out)
    assert res.code == 0, res.err
    return out


# ------------------------------------------------------------------ runs: start and resume


def test_failed_start_leaves_nothing_and_the_corrected_retry_runs(
    data: Path, tmp_path: Path
) -> None:
    manifest = Path(shutil.copytree(data, tmp_path / "data")) / "ct.csv"
    good = manifest.read_text()
    manifest.write_text(good + "gone.npy,1,z\n")
    args = ["train", "-q", "--target", manifest, "--out", tmp_path / "run"]
    args += ["--method", "target_only", *TINY, "train.steps=2"]
    assert_one_line_error(cli(*args), "ct.csv, line 8: file", "gone.npy does not exist")
    assert not (tmp_path / "run").exists()
    manifest.write_text(good)
    res = cli(*args)
    assert res.code == 0, res.err
    assert (tmp_path / "run" / "result.json").exists() and not temp_files(tmp_path)


def test_a_start_killed_while_holding_the_lock_does_not_block_a_new_run(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text('{"pid": 1, "host": "x", "command": "duiit train", "since": 0}')
    res = cli(
        "train", "-q", "--target", data / "ct.csv", "--out", run,
        "--method", "target_only", *TINY, "train.steps=2",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert (run / "result.json").exists() and not (run / LOCK_NAME).exists()


def test_train_refuses_an_existing_run_folder(trained: Path, data: Path) -> None:
    before = snapshot(trained)
    res = cli("train", "-q", "--target", data / "ct.csv", "--out", trained)
    assert_one_line_error(res, f"run folder {trained} already exists", f"--resume {trained}")
    assert snapshot(trained) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    assert_one_line_error(cli("train", "--resume", tmp_path), "not a run folder (no run.json)")


def test_resume_of_a_failed_start_is_refused_clearly(trained: Path, tmp_path: Path) -> None:
    """What a failed start used to leave (run.json only), or a run killed before its first
    checkpoint: nothing to resume, and the message says how to start again."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained / "run.json", run)
    before = snapshot(tmp_path)
    res = cli("train", "-q", "--resume", run)
    assert_one_line_error(
        res, "holds no checkpoint", "nothing to resume", "run the command that started it again"
    )
    assert snapshot(tmp_path) == before


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_the_same_command(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk before the first checkpoint left a folder that neither the same command
    nor --resume accepted ("delete it"): the same command starts it afresh and says so. A
    folder holding anything duiit did not write there is still refused."""
    run = tmp_path / "run"
    args = ["train", "-q", "--target", data / "ct.csv", "--out", run]
    args += ["--method", "target_only", *TINY, *STEPS]

    def full_disk(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk)
        assert_one_line_error(cli(*args), "no space left while writing")
    assert (run / "run.json").exists() and not any(run.rglob("*.pt"))
    assert_one_line_error(cli("train", "-q", "--resume", run), "nothing to resume")
    (run / "notes.txt").write_text("mine")
    assert_one_line_error(cli(*args), f"run folder {run} already exists")
    (run / "notes.txt").unlink()
    res = cli(*args)
    assert res.code == 0, res.err
    [line] = [w for w in res.err.splitlines() if "stopped before" in w]
    assert line.startswith(f"warning: run folder {run} holds a run that stopped before its")
    assert "starts afresh" in line
    assert (run / "result.json").exists() and not temp_files(tmp_path)


def test_resume_after_interruption_finishes(trained: Path, tmp_path: Path) -> None:
    run = interrupted(trained, tmp_path / "run")
    res = cli("train", "-q", "--resume", run)
    assert res.code == 0, res.err
    assert (run / "result.json").exists() and not temp_files(run)
    metrics = pd.read_csv(run / "metrics.csv")
    assert not metrics.duplicated(["stage", "step", "name"]).any()


def test_a_run_keeps_its_precision_and_resumes_in_it(trained: Path, tmp_path: Path) -> None:
    """config.yaml keeps what train.precision=auto meant where the run began (bf16 or fp32,
    as env.json says); a run resumed where auto means the other goes on as it began. An
    older folder's config.yaml says `auto`: its env.json tells."""
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    began = json.loads((trained / "env.json").read_text())["bf16"]
    assert cfg["train"]["precision"] == ("bf16" if began else "fp32")
    run = interrupted(trained, tmp_path / "run")
    other = "fp32" if began else "bf16"
    cfg["train"]["precision"] = "auto"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    _flip_precision(run / "env.json")  # as if begun on a CPU whose auto means the other
    res = cli("train", "--resume", run)
    assert res.code == 0, res.err
    assert f"precision: {other} (train.precision={other})" in res.err


def test_resume_from_a_truncated_checkpoint(trained: Path, tmp_path: Path) -> None:
    run = interrupted(trained, tmp_path / "run")
    last = run / "checkpoints" / "duiit-last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    before = snapshot(run)
    line = assert_one_line_error(
        cli("train", "-q", "--resume", run),
        f"{last} cannot be read: it is damaged",
        "delete it to start that stage afresh",
    )
    assert "weights_only" not in line
    assert snapshot(run) == before


def test_malicious_checkpoint_is_refused_without_running_it(trained: Path, tmp_path: Path) -> None:
    run = interrupted(trained, tmp_path / "run")
    marker = tmp_path / "pwned"
    # torch.save of an object whose unpickling would run a shell command.
    evil = f"""
        import os, torch
        class Evil:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"weights": Evil()}}, "{run / "checkpoints" / "duiit-last.pt"}")
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(evil)], check=True, timeout=120)
    line = assert_one_line_error(
        cli("train", "-q", "--resume", run),
        "duiit-last.pt cannot be read: it holds Python objects other than tensors",
        "(posix.system)",
        "could run code",
    )
    assert "weights_only" not in line and not marker.exists()


def test_damaged_model_is_named_by_predict(trained: Path, data: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    (run / "model.pt").write_bytes(b"not a model")
    res = cli("predict", run, "--input", data / "ct.csv", "--out", tmp_path / "p.csv", "-q")
    assert_one_line_error(res, f"{run / 'model.pt'} cannot be read: it is damaged")
    assert not (tmp_path / "p.csv").exists()


def test_predict_on_a_folder_that_is_not_a_run(data: Path, tmp_path: Path) -> None:
    res = cli("predict", tmp_path, "--input", data / "ct.csv", "--out", tmp_path / "p.csv")
    assert_one_line_error(res, "is not a run folder (no config.yaml)")


# ------------------------------------------------------------------ outputs that exist


def test_predict_refuses_an_existing_file_unless_forced(
    trained: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.csv"
    out.write_text("mine\n")
    args = ["predict", trained, "--input", data / "ct.csv", "--out", out, "-q"]
    assert_one_line_error(cli(*args), f"output file {out} already exists", "--force")
    assert out.read_text() == "mine\n"
    res = cli(*args, "--force")
    assert res.code == 0, res.err
    assert list(pd.read_csv(out).columns)[:3] == ["path", "slice", "patient_id"]


@pytest.mark.parametrize("command", ["translate", "augment"])
def test_folder_outputs_refuse_an_existing_folder(
    command: str, trained: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    extra = ["--target", data / "ct.csv"] if command == "augment" else []
    res = cli(command, trained, "--source", data / "mri.csv", *extra, "--out", out, "-q")
    assert_one_line_error(res, f"output folder {out} already exists", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_translate_with_a_run_that_has_no_translator(
    finished_experiment: Path, data: Path, tmp_path: Path
) -> None:
    run = finished_experiment / "runs" / "PURE-CT" / "target_only" / "split-00"
    res = cli("translate", run, "--source", data / "mri.csv", "--out", tmp_path / "t", "-q")
    assert_one_line_error(res, "this run has no translator for MRI")
    assert not (tmp_path / "t").exists() and not temp_files(tmp_path)


def test_a_read_only_output_is_one_line(
    trained: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file system refusing the write (read-only, permissions) is named, not a traceback;
    simulated, since root may write anywhere."""

    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr("duiit.files.os.replace", refuse)
    res = cli("predict", trained, "--input", data / "ct.csv", "--out", tmp_path / "p.csv", "-q")
    assert_one_line_error(res, f"Read-only file system: {tmp_path / 'p.csv'}")
    assert not list(tmp_path.iterdir())  # the temporary file is gone too


# ------------------------------------------------------------------ full disk


def _limit_file_size(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_disk_full_during_training_is_one_line_without_temp_files(
    data: Path, tmp_path: Path
) -> None:
    """`ulimit -f`: the 5.7 MB best checkpoint fits under 8 MB, the 17 MB last one does not."""
    res = subprocess.run(
        [sys.executable, "-m", "duiit", "train", "-q", "--target", data / "ct.csv"]
        + ["--source", data / "mri.csv", "--out", tmp_path / "run", *TINY, *STEPS],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        preexec_fn=_limit_file_size(8_000_000),
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "error: no space left while writing" in lines[0] and "duiit-last.pt" in lines[0]
    assert not temp_files(tmp_path)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "duiit-best.pt")["step"] == 2


def test_disk_full_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    script = f"""
        import torch
        from duiit.errors import DuiitError
        from duiit.training.loop import atomic_save
        atomic_save({{"w": torch.zeros(10)}}, "{tmp_path / "c.pt"}")
        try:
            atomic_save({{"w": torch.zeros(1_000_000)}}, "{tmp_path / "c.pt"}")
        except DuiitError as exc:
            print(exc)
    """
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size(1_000_000),
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"no space left while writing {tmp_path / 'c.pt'}")
    assert load_checkpoint(tmp_path / "c.pt")["w"].shape == (10,)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# ------------------------------------------------------------------ locks and temp names


def test_experiment_in_use_is_refused_and_a_killed_holder_does_not_block(
    finished_experiment: Path, data: Path
) -> None:
    spec = write_experiment(data)
    holder = hold(finished_experiment, "experiment folder")
    try:
        before = snapshot(finished_experiment)
        res = experiment(spec, finished_experiment)
        assert_one_line_error(
            res,
            f"experiment folder {finished_experiment} is in use by pid {holder.pid} "
            f"on {socket.gethostname()}",
            "wait for it to finish",
        )
        assert snapshot(finished_experiment) == before
    finally:
        holder.kill()  # SIGKILL: no clean-up in the holder; its lock file stays behind
        holder.wait(timeout=60)
    assert (finished_experiment / LOCK_NAME).exists()
    res = experiment(spec, finished_experiment)
    assert res.code == 0, res.err
    assert not (finished_experiment / LOCK_NAME).exists()


def test_run_in_use_is_refused(trained: Path, tmp_path: Path) -> None:
    run = interrupted(trained, tmp_path / "run")
    holder = hold(run, "run folder")
    try:
        before = snapshot(run)
        res = cli("train", "-q", "--resume", run)
        assert_one_line_error(res, f"run folder {run} is in use by pid {holder.pid}")
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_two_experiments_at_once_on_one_folder(data: Path, tmp_path: Path) -> None:
    """Whichever interleaving happens: each process finishes or is refused in one line,
    every run is trained once, and no temporary file is left."""
    spec = write_experiment(data, "only.yaml", methods=["target_only"], ours="target_only")
    cmd = [sys.executable, "-m", "duiit", "experiment", str(spec), "--out", str(tmp_path)]
    procs = [
        subprocess.Popen(
            [*cmd, "-q", *RUN_MODEL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read().decode()) for p in procs if p.stderr]
    assert sorted(code for code, _ in results)[0] == 0, results
    for code, err in results:
        assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1), err
        assert code == 0 or "is in use by pid" in err, err
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 1
    metrics = pd.read_csv(Path(runs["run_dir"].iloc[0]) / "metrics.csv")
    assert not metrics.duplicated(["stage", "step", "name"]).any()
    assert not temp_files(tmp_path) and not (tmp_path / LOCK_NAME).exists()


def test_a_lock_waited_for_is_taken_when_its_holder_ends_or_named_after_the_wait(
    tmp_path: Path,
) -> None:
    """`folder_lock(wait=...)`, which a run that Ray retries uses: a holder still there after
    the wait is named, with how to release the lock of a machine that died; one that ends
    during the wait hands the lock over."""
    holder = hold(tmp_path, "run folder")
    try:
        start = time.monotonic()
        with (
            pytest.raises(DuiitError) as refused,
            folder_lock(tmp_path, "run folder", wait=1.0),
        ):
            pass
        assert time.monotonic() - start >= 1.0
        assert str(refused.value).startswith(
            f"run folder {tmp_path} is still in use by pid {holder.pid} on {socket.gethostname()}"
        )
        assert "after 1s of waiting; if that process is gone (its machine died" in str(
            refused.value
        )
        assert f"delete {tmp_path / LOCK_NAME} and run the same command again" in str(refused.value)
        threading.Timer(1.0, holder.kill).start()
        with folder_lock(tmp_path, "run folder", wait=60):
            assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_a_stale_lock_file_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text('{"pid": 999999, "host": "gone"')  # cut short by a kill
    with folder_lock(tmp_path, "run folder"):
        assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_holder_that_has_not_written_yet_is_another_process(tmp_path: Path) -> None:
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with (
            pytest.raises(DuiitError, match="is in use by another process"),
            folder_lock(tmp_path, "run folder"),
        ):
            pass
    finally:
        os.close(fd)


def test_file_system_without_locks_warns_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with (
        pytest.warns(DuiitWarning, match="cannot lock .* two processes on it would collide"),
        folder_lock(tmp_path, "run folder"),
    ):
        pass


def test_temporary_names_are_unique_and_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == b.parent == tmp_path and a.suffix == ".json"
        a.write_text("1")
        b.write_text("2")
    assert target.read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(RuntimeError), atomic_path(target) as c:
        c.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "1" and not temp_files(tmp_path)


# ------------------------------------------------------------------ experiment record


@pytest.mark.parametrize(
    ("changes", "overrides", "expect"),
    [
        ({}, ["run.train.steps=3"], "(run.train.steps: 2 -> 3)"),
        ({"quality": {"max_images": 8}}, [], "quality.max_images: 4 -> 8"),
        # target_only alone: with duiit and no sources the file itself is refused first
        ({"sources": [], "methods": ["target_only"], "ours": "target_only"}, [], "sources: ["),
        ({"methods": ["duiit"]}, [], "holds 1 run(s) that this file leaves out"),
    ],
    ids=["changed run setting", "changed quality", "changed sources", "dropped method"],
)
def test_experiment_with_other_settings_is_refused(
    finished_experiment: Path,
    data: Path,
    changes: dict,
    overrides: list[str],
    expect: str,
) -> None:
    spec = write_experiment(data, "changed.yaml", **changes)
    before = snapshot(finished_experiment)
    res = experiment(spec, finished_experiment, *overrides)
    assert_one_line_error(res, f"experiment folder {finished_experiment}", expect, "another --out")
    assert snapshot(finished_experiment) == before  # record and runs untouched


def test_experiment_grows_by_more_splits(
    finished_experiment: Path, data: Path, tmp_path: Path
) -> None:
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    old = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    res = experiment(write_experiment(data, "more.yaml", splits=2), out)
    assert res.code == 0, res.err
    assert yaml.safe_load((out / "experiment.yaml").read_text())["splits"] == 2
    assert sorted(pd.read_csv(out / "runs.csv")["split"]) == [0, 0, 1, 1]
    assert all(p.stat().st_mtime_ns == t for p, t in old.items())  # old runs untouched


def test_experiment_recorded_before_a_new_run_setting_continues(
    finished_experiment: Path, data: Path, tmp_path: Path
) -> None:
    """A record written before `train.channels_last` existed: the setting, at its default,
    is no change, so the folder continues instead of being refused."""
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    record = yaml.safe_load((out / "experiment.yaml").read_text())
    del record["resolved_run"]["train"]["channels_last"]
    (out / "experiment.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    res = experiment(write_experiment(data), out)
    assert res.code == 0, res.err


def _flip_precision(env: Path) -> None:
    """Make a finished run's env.json say it computed in the other precision."""
    record = json.loads(env.read_text())
    env.write_text(json.dumps(record | {"bf16": not record["bf16"]}))


def test_the_grid_settles_auto_precision_once_and_records_it(finished_experiment: Path) -> None:
    """train.precision=auto means bf16 on one CPU and fp32 on another: the grid settles it
    once, every run computes so (env.json), and experiment.yaml records the settled value."""
    record = yaml.safe_load((finished_experiment / "experiment.yaml").read_text())
    settled = record["resolved_run"]["train"]["precision"]
    assert settled in ("bf16", "fp32")
    envs = sorted(finished_experiment.glob("*/**/split-*/env.json"))
    assert len(envs) == 3  # two runs and the quality reference
    assert {json.loads(e.read_text())["bf16"] for e in envs} == {settled == "bf16"}


@pytest.mark.parametrize("recorded", ["settled", "auto"], ids=["settled record", "older record"])
def test_a_folder_made_in_the_other_precision_continues_only_when_asked(
    finished_experiment: Path, data: Path, tmp_path: Path, recorded: str
) -> None:
    """A folder whose runs computed in the precision this machine's auto does not give (a
    grid begun on another CPU) is refused with the override that continues it alike; with
    that override it continues, its runs untouched. An older record says `auto`: what its
    runs computed in is read from their env.json."""
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    record = yaml.safe_load((out / "experiment.yaml").read_text())
    here = record["resolved_run"]["train"]["precision"]
    other = {"bf16": "fp32", "fp32": "bf16"}[here]
    record["resolved_run"]["train"]["precision"] = other if recorded == "settled" else "auto"
    (out / "experiment.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    for env in out.glob("*/**/split-*/env.json"):
        _flip_precision(env)
    before = snapshot(out)
    res = experiment(write_experiment(data), out)
    assert_one_line_error(
        res,
        f"(run.train.precision: {other} -> {here})",
        f"run.train.precision={other} continues the folder",
        "another --out",
    )
    assert snapshot(out) == before
    old = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    res = experiment(write_experiment(data), out, f"run.train.precision={other}")
    assert res.code == 0, res.err
    assert all(p.stat().st_mtime_ns == t for p, t in old.items())
    record = yaml.safe_load((out / "experiment.yaml").read_text())
    assert record["resolved_run"]["train"]["precision"] == other


def test_a_folder_mixing_precisions_is_refused(
    finished_experiment: Path, data: Path, tmp_path: Path
) -> None:
    """An older record (`auto`) over runs of both precisions: refused, naming the mix."""
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    record = yaml.safe_load((out / "experiment.yaml").read_text())
    record["resolved_run"]["train"]["precision"] = "auto"
    (out / "experiment.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    _flip_precision(out / "references" / "split-00" / "env.json")
    res = experiment(write_experiment(data), out)
    assert_one_line_error(
        res, "holds runs trained in bf16 and runs trained in fp32", "another --out"
    )


def test_a_run_failing_on_bad_input_does_not_stop_the_others(data: Path, tmp_path: Path) -> None:
    """A damaged checkpoint in one run folder (here over two worker processes): that run
    fails with its one line, the others finish, the command exits 2 naming it; once the
    cause is removed, the same command runs only that run."""
    out = tmp_path / "exp"
    victim = out / "runs" / "MIX-CT-MRI" / "duiit" / "split-00"
    damaged = victim / "checkpoints" / "duiit-last.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    res = experiment(write_experiment(data), out, "--workers", "2")
    assert_one_line_error(
        res,
        "1 run(s) failed, the others of the 2 finished",
        f"(runs/MIX-CT-MRI/duiit/split-00: {damaged} cannot be read: it is damaged",
        "run the same command again",
    )
    assert list(pd.read_csv(out / "runs.csv")["method"]) == ["target_only"]
    done = (out / "runs" / "PURE-CT" / "target_only" / "split-00" / "result.json").stat()
    damaged.unlink()
    res = experiment(write_experiment(data), out)
    assert res.code == 0, res.err
    assert sorted(pd.read_csv(out / "runs.csv")["method"]) == ["duiit", "target_only"]
    assert (victim / "quality.json").exists()
    after = (out / "runs" / "PURE-CT" / "target_only" / "split-00" / "result.json").stat()
    assert after.st_mtime_ns == done.st_mtime_ns


def test_a_run_raising_a_fault_does_not_stop_the_others(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of the two worker processes raises RuntimeError('CUDA out of memory ...') (not
    bad input: tests/faults raises it in the worker): that run fails with its type and
    message and a traceback file, the others finish, the command exits 2 naming it; once
    the fault is gone, the same command runs only that run, and its traceback file goes."""
    out = tmp_path / "exp"
    victim = out / "runs" / "MIX-CT-MRI" / "duiit" / "split-00"
    victim.mkdir(parents=True)
    (victim / FAULT).write_text("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))  # for the spawned worker processes
    res = experiment(write_experiment(data), out, "--workers", "2")
    assert_one_line_error(
        res,
        "1 run(s) failed, the others of the 2 finished",
        "(runs/MIX-CT-MRI/duiit/split-00: RuntimeError: CUDA out of memory. Tried to allocate "
        f"2.00 GiB (traceback in {victim / ERROR_FILE}))",
    )
    assert "raise RuntimeError" in (victim / ERROR_FILE).read_text()
    assert list(pd.read_csv(out / "runs.csv")["method"]) == ["target_only"]
    (victim / FAULT).unlink()
    res = experiment(write_experiment(data), out, "--workers", "2")
    assert res.code == 0, res.err
    assert sorted(pd.read_csv(out / "runs.csv")["method"]) == ["duiit", "target_only"]
    assert not (victim / ERROR_FILE).exists()


@pytest.mark.parametrize("kills", [1, 3])
def test_a_worker_killed_mid_run_neither_ends_the_grid_nor_loses_the_others(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kills: int
) -> None:
    """A worker process of `--workers 2` is SIGKILLed in a run (as the out-of-memory killer
    would): the pool is broken, every run it held is lost with it. Those runs start again on
    fresh workers; a run that takes its worker down every time (twice on a pool, once
    alone) fails with one line that says so, and the others finish."""
    out = tmp_path / "exp"
    victim = out / "runs" / "MIX-CT-MRI" / "duiit" / "split-00"
    victim.mkdir(parents=True)
    (victim / KILL).write_text(str(kills))
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))  # for the spawned worker processes
    res = experiment(write_experiment(data), out, "--workers", "2")
    if kills == 1:
        assert res.code == 0, res.err
        assert sorted(pd.read_csv(out / "runs.csv")["method"]) == ["duiit", "target_only"]
        return
    assert_one_line_error(
        res,
        "1 run(s) failed, the others of the 2 finished",
        "(runs/MIX-CT-MRI/duiit/split-00: its worker process died each time it ran (killed, "
        "e.g. by the out-of-memory killer",
    )
    assert list(pd.read_csv(out / "runs.csv")["method"]) == ["target_only"]


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie has stopped running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_to_the_experiment_stops_its_workers(data: Path, tmp_path: Path) -> None:
    """`kill PID` on `duiit experiment --workers 2` (SIGTERM to the driver alone, where
    Ctrl-C reaches its whole process group): the workers stop in their runs with it, none
    goes on orphaned, and the folder's lock is released for the same command again."""
    out = tmp_path / "exp"
    hangs = [out / "runs" / s / m / "split-00" / HANG for s, m in
             (("MIX-CT-MRI", "duiit"), ("PURE-CT", "target_only"))]  # fmt: skip
    for hang in hangs:
        hang.parent.mkdir(parents=True)
        hang.write_text("")
    spec = write_experiment(data, "stop.yaml", quality={"enabled": False})
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, "-m", "duiit", "experiment", str(spec), "--out", str(out), "-q",
             *RUN_MODEL, "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**ENV, "PYTHONPATH": str(FAULTS)},
        )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not all(hang.read_text() for hang in hangs):
            assert driver.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the workers never started their runs"
            time.sleep(0.2)
        workers = [int(hang.read_text()) for hang in hangs]
        assert driver.pid not in workers and all(map(_running, workers))
        driver.send_signal(signal.SIGTERM)
        code = driver.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _running(w)], "workers still in their runs"
        assert code == 128 + signal.SIGTERM, log.read_text()
        assert "stopped by SIGTERM" in log.read_text(), log.read_text()
        assert "resumes the unfinished runs" in log.read_text()
        assert not (out / LOCK_NAME).exists()
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        driver.kill()
        driver.wait(timeout=60)


# ------------------------------------------------------------------ report


def test_report_of_a_folder_without_runs(tmp_path: Path) -> None:
    assert_one_line_error(cli("report", tmp_path), "holds no finished run")


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("MIX-CT-MRI/duiit/split-00/translations.pt", "and the run's quality.json, then"),
        ("PURE-CT/target_only/split-00/result.json", "result.json is damaged"),
    ],
    ids=["damaged translations.pt", "damaged result.json"],
)
def test_report_names_a_damaged_file(
    finished_experiment: Path, tmp_path: Path, name: str, expect: str
) -> None:
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    damaged = out / "runs" / name
    damaged.write_bytes(damaged.read_bytes()[:40])
    assert_one_line_error(cli("report", out), str(damaged), expect, "again")


def test_report_of_a_good_folder(finished_experiment: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    res = cli("report", out)
    assert res.code == 0, res.err
    assert (out / "report.html").exists() and not temp_files(out)
    # its last line names every output, on one line whatever the pipe's width
    last = res.out.strip().splitlines()[-1]
    for name in ("results.md", "results.csv", "report.html", "figures"):
        assert str(out / name) in last, last


def test_report_of_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    res = cli("report", tmp_path / "nope")
    assert_one_line_error(res, f"experiment folder {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "nope").exists()


def _truncate(path: Path) -> None:
    """Cut a file in the middle of its last line, as a copy stopped short leaves it."""
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: (last + len(data)) // 2])


TARGET_ONLY = "runs/PURE-CT/target_only/split-00"
DUIIT = "runs/MIX-CT-MRI/duiit/split-00"


@pytest.mark.parametrize(
    ("spoil", "expect"),
    [
        (
            lambda out: (out / "runs/MIX-CT-MRI/duiit/split-01").mkdir(parents=True),
            "runs/MIX-CT-MRI/duiit/split-01: unfinished (no result.json)",
        ),
        (
            lambda out: _truncate(out / TARGET_ONLY / "test_predictions.csv"),
            f"{TARGET_ONLY}/test_predictions.csv is damaged",
        ),
        (
            lambda out: _truncate(out / DUIIT / "metrics.csv"),
            f"{DUIIT}/metrics.csv is damaged",
        ),
        (
            lambda out: (out / TARGET_ONLY / "split.csv").write_text(""),
            f"{TARGET_ONLY}/split.csv is damaged",
        ),
        (lambda out: _truncate(out / "runs.csv"), "runs.csv is damaged or out of date"),
        (lambda out: (out / "runs.csv").unlink(), "runs.csv was missing (`duiit experiment`"),
    ],
    ids=[
        "unfinished run",
        "truncated test_predictions.csv",
        "truncated metrics.csv",
        "empty split.csv",
        "truncated runs.csv",
        "no runs.csv (a stopped grid)",
    ],
)
def test_report_says_what_is_missing_or_damaged(
    finished_experiment: Path, tmp_path: Path, spoil: object, expect: str
) -> None:
    """Each was dropped or read without a word: listed at the top of results.md and on the
    terminal, and the report is still written from what is intact."""
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    spoil(out)
    res = cli("report", out)
    assert res.code == 0, res.err
    md = (out / "results.md").read_text()
    top = md.split("\n## ")[1]  # the first section
    assert top.startswith("Unfinished or damaged runs") and expect in top, md[:2000]
    assert expect in res.out and "note(s) on unfinished or damaged runs" in res.out
    mean = pd.read_csv(out / "results.csv").query("method == 'predict the mean'")
    assert len(mean) == 1 and mean["mse_mean"].notna().all()  # from an intact run's labels


def test_report_says_why_the_predict_the_mean_row_is_empty(
    finished_experiment: Path, tmp_path: Path
) -> None:
    """With no intact test_predictions.csv in a split, the row was left blank."""
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    for run in (TARGET_ONLY, DUIIT):
        _truncate(out / run / "test_predictions.csv")
    res = cli("report", out)
    assert res.code == 0, res.err
    top = (out / "results.md").read_text().split("\n## ")[1]
    assert "predict the mean: no row for split 0 (no intact test_predictions.csv)" in top
    assert "predict the mean" not in set(pd.read_csv(out / "results.csv")["method"])


def test_report_html_renders_its_markdown_and_embeds_its_figures(
    finished_experiment: Path, tmp_path: Path
) -> None:
    """Backticks showed literally and figures were links to files beside the page: the page
    is results.md rendered, one file to share."""
    out = Path(shutil.copytree(finished_experiment, tmp_path / "exp"))
    assert cli("report", out).code == 0
    page = (out / "report.html").read_text()
    assert "`" not in page.split("<h2>Experiment</h2>")[0] and "<code>*</code>" in page
    assert page.count("<table>") == (out / "results.md").read_text().count("\n| --- ")
    figures = sorted((out / "figures").glob("*.png"))
    assert figures and page.count('src="data:image/png;base64,') == len(figures)
    assert "figures/" not in page
    shutil.rmtree(out / "figures")  # the page alone shows them


# ------------------------------------------------------------------ help texts


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, cmd in getattr(group, "commands", {}).items():
        found += _commands(cmd, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(duiit_cli.app))


def test_every_command_is_covered() -> None:
    assert len(COMMANDS) >= 12 and ("data", "inspect") in COMMANDS


def _greedy(lines: list[str]) -> None:
    """Each line of a wrapped paragraph is broken only where the next word would not have
    fitted in 80 columns (less the 2-column margin): the terminal wrapped it, not the source."""
    for line, nxt in zip(lines, lines[1:], strict=False):
        if line.strip() and nxt.strip():
            assert len(line) + 1 + len(nxt.split()[0]) > 78, (line, nxt)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "duiit")
def test_help_reads_as_prose_at_80_columns(
    command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No line longer than the terminal; the description, and each command's summary in a
    group's list, wrap as prose."""
    monkeypatch.setenv("COLUMNS", "80")
    res = cli(*command, "--help")
    assert res.code == 0 and "Usage" in res.out, res.err
    lines = res.out.splitlines()
    assert max(len(line) for line in lines) <= 80
    panels = [i for i, line in enumerate(lines) if line.startswith("╭")]
    _greedy([line.rstrip() for line in lines[: panels[0]] if "Usage:" not in line])
    for i in panels:
        if lines[i].startswith("╭─ Commands"):
            rows = lines[i + 1 : next(j for j in range(i, len(lines)) if lines[j][0] == "╰")]
            for row, nxt in zip(rows, rows[1:], strict=False):
                if nxt[1:].startswith(" " * 4):  # the next line continues this row's summary
                    _greedy([row[:-1].rstrip(), nxt[1:-1]])


def test_help_keeps_bracketed_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich reads [word...] as markup and drops it: examples and defaults in brackets must
    reach the reader."""
    monkeypatch.setenv("COLUMNS", "200")
    assert "duiit[lambda_pred=0.01]" in cli("methods", "--help").out
    assert "(default: <first manifest's name>_contact.png" in cli("data", "inspect", "--help").out


def _params(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    """Every parameter of every command, named `command --option` (or its argument)."""
    found = [(" ".join([*path, p.name or ""]), p) for p in getattr(group, "params", [])]
    for name, cmd in getattr(group, "commands", {}).items():
        found += _params(cmd, (*path, name))
    return found


def test_every_option_and_argument_says_what_it_does() -> None:
    """`--quiet` had no description in four commands: each parameter of each command has one."""
    bare = [name for name, p in _params(typer.main.get_command(duiit_cli.app)) if not p.help]
    assert not bare


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "duiit")
def test_usage_names_the_command_and_its_arguments_plainly(
    command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Usage: duiit translate [OPTIONS] RUN`, not typer's `{run}`, which reads as a literal."""
    monkeypatch.setenv("COLUMNS", "200")
    lines = cli(*command, "--help").out.splitlines()
    [usage] = [line.strip() for line in lines if "Usage:" in line]
    head = " ".join(["Usage: duiit", *command, "[OPTIONS]"])
    assert usage.startswith(head), usage
    for piece in usage.removeprefix(head).split():
        assert re.fullmatch(r"\[?[A-Z_]+\]?(\.\.\.)?", piece), usage


def test_usage_under_python_m_names_duiit() -> None:
    """`python -m duiit` is the same program: its usage says `duiit`, as the README does."""
    res = subprocess.run(
        [sys.executable, "-m", "duiit", "translate", "--help"],
        capture_output=True,
        text=True,
        env={**ENV, "COLUMNS": "200"},
        timeout=120,
    )
    assert "Usage: duiit translate [OPTIONS] RUN" in res.stdout, res.stdout
