"""A fault for the tests, in every Python process started with this folder on its path
(PYTHONPATH): the worker processes of `duiit experiment --workers N`, and those of a Ray node
started so. A run whose folder holds a file `FAULT` raises, as it starts, a RuntimeError
with that file's text ("CUDA out of memory. ..."), as a run hitting a fault in a library
would: in the worker process, on duiit's own path from the backend to the run, where a mock
in the test process would not reach. A file `KILL` holding a number N: the process running
that run kills itself with SIGKILL (as the kernel's out-of-memory killer would), the first
N times the run starts (the number left is written back before each kill). A file `HANG`:
the process writes its pid into it and sleeps until it is killed, a run that never ends
(for the tests of stopping an experiment). Python imports
this module at start-up; it patches `duiit.runs.execute` once duiit imports it, and changes
nothing else."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

FAULT = "FAULT"
KILL = "KILL"
HANG = "HANG"


def _faulty(execute: Any) -> Any:
    def execute_or_fail(run_dir: Path, *args: Any, **kwargs: Any) -> Any:
        fault, kill, hang = Path(run_dir) / FAULT, Path(run_dir) / KILL, Path(run_dir) / HANG
        if fault.exists():
            raise RuntimeError(fault.read_text())
        if hang.exists():
            hang.write_text(str(os.getpid()))
            while True:
                time.sleep(1)
        if kill.exists() and int(kill.read_text()) > 0:
            kill.write_text(str(int(kill.read_text()) - 1))
            os.kill(os.getpid(), signal.SIGKILL)
        return execute(run_dir, *args, **kwargs)

    return execute_or_fail


class _PatchRuns(MetaPathFinder):
    """Finds `duiit.runs` as Python would, and swaps its `execute` once it has run."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "duiit.runs":
            return None
        sys.meta_path.remove(self)  # the module is imported once: no need to look again
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            module.execute = _faulty(module.execute)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchRuns())
