"""The grid on a Ray cluster (`duiit experiment --backend ray`): each cell one Ray task that
asks for the CPUs and GPUs of one run, so Ray, not duiit, decides where and when runs go.

What a cluster adds, and how each is met:
- Workers on other machines write the run folders themselves, so the experiment folder must
  be on a file system every node shares. Before any run, one small task on each node that
  could take a run reads back a file the driver wrote there (`check_shared_folder`).
- A worker that dies (killed, out of memory, its node lost) has its task retried by Ray
  (`RETRIES` times); the retry resumes the run from its last checkpoint, like any re-run.
  Where its node died, the shared file system may still hold the dead worker's lock on the
  run folder (NFS keeps it until the machine's lease ends): the retry waits for it
  (`LOCK_WAIT`), then fails that run with a line saying how to release it.
- A cell failing on bad input, or raising any other exception (CUDA out of memory, a crash
  in a library), returns its error as its outcome (`grid.run_cell`): Ray never sees an
  exception, so it is not retried, and the other cells go on.
- A killed driver takes its tasks with it (Ray stops the tasks of a job whose driver
  ended); running the same command again resumes the grid.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duiit.errors import DuiitError, explain
from duiit.evaluation.backends import prepare_worker
from duiit.evaluation.grid import Cell, Job, Outcome, run_cell
from duiit.files import write_text

RETRIES = 3  # Ray's default for tasks; stated here, since resuming relies on it
PROBE_SECONDS = 300  # for a node to start a worker and answer the shared-folder check
# How long a run waits for its folder's lock: held by another process, it is that of a worker
# lost with its node (one driver per experiment folder, and Ray ends a dead driver's tasks),
# which NFS v4 releases when the dead machine's lease ends, 90 s after by default.
LOCK_WAIT = 300.0


@dataclass(frozen=True)
class RayOptions:
    """Where the cluster is and what one run asks of it. `address`: "auto", HOST:PORT, or
    None for what `ray.init()` finds (RAY_ADDRESS, a cluster started on this machine, else a
    new one on this machine). Fractions share a CPU or a GPU between runs."""

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def __post_init__(self) -> None:
        if not self.cpus_per_run > 0 or not self.gpus_per_run >= 0:
            raise DuiitError(
                f"--cpus-per-run {self.cpus_per_run} and --gpus-per-run {self.gpus_per_run}: "
                "a run needs more than 0 CPUs and 0 or more GPUs (fractions allowed)"
            )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DuiitError(
            "--backend ray needs Ray, an optional extra: pip install 'duiit[ray]'"
        ) from None
    return ray


class RayCluster:
    """The Ray backend: connects on entry (and checks the cluster can take a run and that
    its nodes see the experiment folder), puts the job in Ray's object store once, and runs
    each cell as a task."""

    def __init__(self, job: Job, options: RayOptions, out: Path) -> None:
        self.job, self.options, self.out = job, options, Path(out)
        self.ray = _import_ray()
        self.owned = False
        self.nodes: list[dict[str, Any]] = []
        self.job_ref: Any = None

    def __enter__(self) -> RayCluster:
        if not self.ray.is_initialized():
            self._connect()
            self.owned = True
        try:
            self.nodes = self._nodes_for_a_run()
            check_shared_folder(self.ray, self.out, self.nodes)
            self.job_ref = self.ray.put(self.job)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self) -> None:
        """Join the cluster, or say in one line why not. A HOST:PORT is tried first, since
        Ray would retry one that does not answer for minutes."""
        address = self.options.address
        try:
            if address not in (None, "auto"):
                host, _, port = address.removeprefix("ray://").rpartition(":")
                socket.create_connection((host, int(port)), timeout=10).close()
            self.ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (OSError, ValueError) as exc:  # ConnectionError is an OSError
            raise DuiitError(
                f"cannot reach a Ray cluster at {address or 'RAY_ADDRESS'} ({explain(exc)}); "
                "start one (`ray start --head`) or give --address HOST:PORT"
            ) from None

    def __exit__(self, *exc_info: Any) -> None:
        if self.owned:
            self.ray.shutdown()
            self.owned = False

    def _nodes_for_a_run(self) -> list[dict[str, Any]]:
        """The live nodes with the CPUs and GPUs of one run; refused when there is none,
        since Ray would otherwise wait for one for ever."""
        o = self.options
        alive = [n for n in self.ray.nodes() if n["Alive"]]
        fit = [
            n
            for n in alive
            if n["Resources"].get("CPU", 0) >= o.cpus_per_run
            and n["Resources"].get("GPU", 0) >= o.gpus_per_run
        ]
        if not fit:
            have = ", ".join(
                f"{_name(n)}: {n['Resources'].get('CPU', 0):g} CPU, "
                f"{n['Resources'].get('GPU', 0):g} GPU"
                for n in alive
            )
            raise DuiitError(
                f"no node of the Ray cluster has {o.cpus_per_run:g} CPU and "
                f"{o.gpus_per_run:g} GPU for a run ({have}); lower --cpus-per-run or "
                "--gpus-per-run, or add nodes"
            )
        return fit

    def describe(self) -> str:
        o = self.options
        return (
            f" on Ray ({len(self.nodes)} nodes; {o.cpus_per_run:g} CPU and "
            f"{o.gpus_per_run:g} GPU per run)"
        )

    def run_cells(self, cells: list[Cell], out: Path) -> Iterator[Outcome]:
        ray, o = self.ray, self.options
        task = ray.remote(_ray_cell).options(
            num_cpus=o.cpus_per_run,
            num_gpus=o.gpus_per_run,
            max_retries=RETRIES,
            retry_exceptions=False,
        )
        threads = max(1, int(o.cpus_per_run))
        pending = {task.remote(self.job_ref, c, out, threads, o.gpus_per_run > 0): c for c in cells}
        lost = (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError,
        )
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done)
            try:
                outcome = ray.get(done)
            except lost as exc:
                outcome = Outcome(
                    cell,
                    error=f"its Ray worker was lost {RETRIES + 1} times ({explain(exc)}); "
                    "what it wrote is kept, and a re-run resumes from its last checkpoint",
                )
            yield outcome


def _ray_cell(job: Job, cell: Cell, out: Path, threads: int, gpu: bool) -> Outcome:
    """One cell as a Ray task. A run that asked for no GPU sees none: Ray leaves a task
    without GPUs every GPU of its node, where `train.device=auto` would take one that
    another run holds."""
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return run_cell(prepare_worker(job, threads, None), cell, out, LOCK_WAIT)


def _name(node: dict[str, Any]) -> str:
    return f"{node['NodeManagerHostname']} ({node['NodeManagerAddress']}, {node['NodeID'][:8]})"


def _read(token: str) -> str:
    """The text of a file as this node sees it ("" when it cannot read it)."""
    try:
        return Path(token).read_text()
    except OSError:
        return ""


def check_shared_folder(ray: Any, out: Path, nodes: list[dict[str, Any]]) -> None:
    """Refuse, in one line, an experiment folder that some node's workers cannot see: a
    file with a random text is written into it, and a task pinned to each node reads it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    created = not out.exists()
    secret = uuid.uuid4().hex
    token = out / f".duiit-ray-check-{secret[:8]}"
    write_text(secret, token)
    try:
        probe = ray.remote(_read)
        asks = {
            probe.options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(str(token)): n
            for n in nodes
        }
        ready, silent = ray.wait(list(asks), num_returns=len(asks), timeout=PROBE_SECONDS)
        blind = [asks[r] for r in ready if ray.get(r) != secret]
    finally:
        token.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
    if silent:
        raise DuiitError(
            f"Ray node(s) {', '.join(_name(asks[r]) for r in silent)} did not answer within "
            f"{PROBE_SECONDS}s: can they start Python with duiit installed?"
        )
    if blind:
        raise DuiitError(
            f"Ray node(s) {', '.join(_name(n) for n in blind)} cannot see the experiment "
            f"folder {out} (a file written there from this machine is not there for them); "
            "--backend ray needs --out on a file system that every node shares (see "
            "'Running the grid on a cluster' in the README)"
        )
