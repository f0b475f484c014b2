"""Backends run grid cells; the grid (`grid.py`) and the runner know them by one small
interface, `Backend`: entered once per experiment, then `run_cells(cells, out)` yields each
cell's `Outcome` as it finishes. Two engines: this machine's processes (`LocalPool`, here)
and a Ray cluster (`ray_backend.RayCluster`). Either writes the same run folders, through
`grid.run_cell`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import warnings
from collections.abc import Generator, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import torch

from duiit.errors import DuiitWarning
from duiit.evaluation.grid import Cell, Job, Outcome, run_cell


class Backend(Protocol):
    """Runs cells somewhere; a context manager holding its workers for one experiment."""

    def __enter__(self) -> Backend: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def describe(self) -> str:
        """Where the cells run, for the progress header (" with 2 workers")."""
        ...

    def run_cells(self, cells: list[Cell], out: Path) -> Iterator[Outcome]:
        """Run `cells`, started in the given order as workers free up; yield each one's
        outcome as it finishes."""
        ...


def prepare_worker(job: Job, threads: int, device: str | None) -> Job:
    """A worker's share of the machine: `threads` CPU threads and, if given, its device.
    Data warnings are silenced: the driver has shown them when it loaded the cohorts."""
    warnings.simplefilter("ignore", DuiitWarning)
    torch.set_num_threads(threads)
    if device is None:
        return job
    cfg = job.cfg.model_copy(deep=True)
    cfg.train.device = device
    return Job(job.exp, cfg, job.target, job.sources)


class LocalPool:
    """`workers` runs at a time on this machine: in this process when one (and under
    torchrun, where every run uses all the processes), else in that many spawned processes,
    each with its share of the CPU threads, or its own GPU when several are visible. The
    job is pickled to each process once."""

    def __init__(self, job: Job, workers: int = 1) -> None:
        self.job, self.workers = job, workers
        self.pool: ProcessPoolExecutor | None = None
        self.signals = contextlib.ExitStack()

    def __enter__(self) -> LocalPool:
        if self.workers > 1:
            self.signals.enter_context(sigterm_as_exit())
            self.pool = self._start()
        return self

    def _start(self) -> ProcessPoolExecutor:
        ctx = mp.get_context("spawn")
        devices = ctx.Queue()
        for d in _devices(self.job, self.workers):
            devices.put(d)
        threads = max(1, torch.get_num_threads() // self.workers)
        return ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.job, threads, devices),
        )

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        """Finished: the idle workers leave. Interrupted or failed (Ctrl-C, SIGTERM, an
        error in the driver): the workers are stopped in their runs, not waited for (each
        run resumes from its last checkpoint when the command runs again)."""
        with self.signals:
            if self.pool is None:
                return
            if kind is None:
                self.pool.shutdown(cancel_futures=True)
                return
            workers = list(self.pool._processes.values())  # no public handle before 3.14
            self.pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:
                proc.terminate()
            for proc in workers:
                proc.join(timeout=30)

    def describe(self) -> str:
        return f" with {self.workers} workers" if self.workers > 1 else ""

    def run_cells(self, cells: list[Cell], out: Path) -> Iterator[Outcome]:
        """A worker process that dies (killed by the out-of-memory killer, a crash in native
        code) breaks the whole pool, and every run it held, started or queued, is lost with
        it. Those runs start again on a fresh pool (each resumes from its last checkpoint);
        if the pool breaks again, the runs it lost go one at a time, so that a run that
        takes its worker down is found, and is that run's failure alone."""
        if self.pool is None:
            for cell in cells:
                yield run_cell(self.job, cell, out)
            return
        pending = list(cells)
        for _ in range(2):
            pending = yield from self._on_pool(pending, out)
            if not pending:
                return
        for cell in pending:
            if (yield from self._on_pool([cell], out)):
                yield Outcome(cell, error=WORKER_DIED)

    def _on_pool(self, cells: list[Cell], out: Path) -> Generator[Outcome, None, list[Cell]]:
        """Run `cells` on the pool, yielding their outcomes; the cells a broken pool lost
        (the pool then replaced by a fresh one)."""
        assert self.pool is not None
        futures = {self.pool.submit(_pool_cell, c, out): c for c in cells}
        lost = []
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                lost.append(futures[fut])
        if lost:
            self.pool.shutdown(cancel_futures=True)
            self.pool = self._start()
        return lost


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (`kill PID`, a scheduler ending a job) as SystemExit(143) in this process
    while it holds worker processes, so that the experiment unwinds as on Ctrl-C: its
    workers are stopped with it instead of finishing their runs orphaned, and its folder
    lock is released. Only the main thread can take signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, _frame: object) -> None:
        # os.write: a buffered stream may be in the middle of a write the signal interrupted
        os.write(2, b"stopped by SIGTERM: the workers are stopped in their runs; the same "
                 b"command resumes the unfinished runs\n")  # fmt: skip
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


WORKER_DIED = (
    "its worker process died each time it ran (killed, e.g. by the out-of-memory killer, or "
    "crashed in native code); give it more memory (fewer --workers) or look at the system log"
)


def _devices(job: Job, workers: int) -> list[str | None]:
    """One device per worker: GPUs round-robin when several are visible, else the run's."""
    n_gpu = torch.cuda.device_count() if job.cfg.train.device == "auto" else 0
    return [f"cuda:{i % n_gpu}" for i in range(workers)] if n_gpu > 1 else [None] * workers


_JOB: list[Job] = []  # the job of this pool process, set once by its initializer


def _init_worker(job: Job, threads: int, devices: Any) -> None:
    _JOB.append(prepare_worker(job, threads, devices.get()))


def _pool_cell(cell: Cell, out: Path) -> Outcome:
    return run_cell(_JOB[0], cell, out)
