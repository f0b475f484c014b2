"""A fault for the tests, in every Python process started with this folder on its path
(PYTHONPATH): the worker processes of `duiit experiment --workers N`, and those of a Ray node
started so. A run whose folder holds a file `FAULT` raises, as it starts, a RuntimeError
with that file's text ("CUDA out of memory. ..."), as a run hitting a fault in a library
would: in the worker process, on duiit's own path from the backend to the run, where a mock
in the test process would not reach. Python imports this module at start-up; it patches
`duiit.runs.execute` once duiit imports it, and changes nothing else."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

FAULT = "FAULT"


def _faulty(execute: Any) -> Any:
    def execute_or_fail(run_dir: Path, *args: Any, **kwargs: Any) -> Any:
        fault = Path(run_dir) / FAULT
        if fault.exists():
            raise RuntimeError(fault.read_text())
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
