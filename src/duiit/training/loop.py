"""The training loop core. Methods supply a Task (their step); the loop owns the rest:
LR schedule, logging (CSV + TensorBoard), progress bar, validation-based model selection,
sample grids, atomic checkpoints with exact resume, and the NaN/Inf guard.

A run folder may hold several stages (e.g. translator, then predictor); each stage has its
own checkpoints `checkpoints/<stage>-{last,best,final}.pt` and rows in `metrics.csv`. A
stage whose final checkpoint exists is not trained again, so a resumed run skips it.

The last checkpoint also holds the selected modules' weights of the best step so far: a
run resumed from it ends with that step's weights, never with a `best.pt` written after it
by the discarded rest of an interrupted run (best.pt is rewritten on resume to match).
"""

from __future__ import annotations

import csv
import math
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from duiit.errors import DuiitError
from duiit.files import atomic_path, disk_errors
from duiit.training.runtime import Runtime, barrier


class Task(Protocol):
    """What a method plugs into the loop."""

    def modules(self) -> dict[str, nn.Module]: ...
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...
    def lr_factors(self, steps: int) -> dict[str, Callable[[int], float]]:
        """Learning-rate multipliers (step -> factor) of the optimizers that follow a schedule
        of their own (the predictor recipe's); the others decay linearly (CycleGAN's)."""
        ...

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached loss tensors (not synced to host)."""
        ...

    def validate(self) -> dict[str, float]:
        """Validation metrics; the key `selection` (lower is better) drives model choice."""
        ...

    def selected(self) -> set[str]:
        """Keys of `modules()` that validation selects: at the end of the stage they hold
        their weights of the best `selection` step; every other module keeps its last
        weights (a translator is not rolled back to where its predictor did best)."""
        ...

    def samples(self) -> list[torch.Tensor]:
        """Rows of images (N, 1, H, W) in [-1, 1] for the sample grid; [] for none."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything beyond modules and optimizers needed for exact resume."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopSettings:
    stage: str
    steps: int
    log_every: int = 10
    eval_every: int = 100
    ckpt_every: int = 200
    sample_every: int = 200
    decay_start: float = 0.5
    quiet: bool = False


def linear_decay(steps: int, decay_start: float):
    """LR factor: 1 for the first `decay_start` of the steps, then linearly to 0 (CycleGAN)."""
    start = int(steps * decay_start)

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, steps - start))

    return factor


class _WriteErrors:
    """A file wrapper that keeps the OSError of a failed write: torch.save swallows it and
    reports only a position mismatch, which would hide a full disk."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through `atomic_path`: a kill or a full disk never leaves a half-written
    checkpoint, and the previous one stays in place."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        out = _WriteErrors(f)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise


def load_checkpoint(
    path: Path, remedy: str = "delete it to start that stage afresh"
) -> dict[str, Any]:
    """Load tensors and plain values only (`weights_only`): a file holding any other Python
    object is refused, since unpickling it could run code."""
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: noise here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        code = re.search(r"GLOBAL (\S+)", text)  # what the weights-only unpickler refused
        if code:
            reason = (
                f"it holds Python objects other than tensors and plain values ({code.group(1)}), "
                "which duiit never loads because that could run code"
            )
        else:  # torch's own text for a pickle error is advice about weights_only: left out
            detail = "" if isinstance(exc, pickle.UnpicklingError) else text.split(". ")[0]
            detail = " ".join(detail.split())
            reason = "it is damaged or not a duiit checkpoint " + (
                f"({type(exc).__name__}: {detail})" if detail else f"({type(exc).__name__})"
            )
    raise DuiitError(f"{path} cannot be read: {reason}; {remedy}")


class MetricsLog:
    """Long-format `metrics.csv` (stage, step, name, value) plus TensorBoard scalars."""

    def __init__(self, run_dir: Path, stage: str, resume_step: int) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.csv"
        self.stage = stage
        rows: list[list[str]] = []
        if self.path.exists():  # drop this stage's rows logged after the checkpoint resumed
            with self.path.open() as f:
                rows = [
                    r
                    for r in list(csv.reader(f))[1:]
                    if not (r[0] == stage and int(r[1]) > resume_step)
                ]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            csv.writer(f).writerows([["stage", "step", "name", "value"], *rows])
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tb" / stage), purge_step=resume_step or None)

    def log(self, step: int, values: dict[str, float]) -> None:
        with disk_errors(self.path):
            for name, value in values.items():
                self.writer.writerow([self.stage, step, name, f"{value:.6g}"])
                self.tb.add_scalar(name, value, step)
            self.file.flush()

    def close(self) -> None:
        self.file.close()
        self.tb.close()


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Rows of images side by side in one PNG (what a user looks at to judge translation)."""
    if not rows:
        return
    cols = min(r.shape[0] for r in rows)
    grid = torch.cat([torch.cat(list(r[:cols, 0].float().cpu()), dim=1) for r in rows], dim=0)
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp)


def _check_finite(values: dict[str, float], step: int, stage: str, last_good: Path) -> None:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        where = (
            f"the last good checkpoint is {last_good}"
            if last_good.exists()
            else "no checkpoint was written before it"
        )
        raise DuiitError(
            f"training stage {stage!r} diverged at step {step}: "
            f"{', '.join(bad)} became {values[bad[0]]}; {where}. Lower the learning "
            "rates (train.lr_translator, predictor.lr) or check the data"
        )


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states a step draws from: the CPU's and, on a GPU, that GPU's alone
    (each process owns one GPU; reading the others' would start a CUDA context on each)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["gpu"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore `_rng_state`; the GPU state goes to the run's GPU, whichever index it has."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "gpu" in state:
        torch.cuda.set_rng_state(state["gpu"], device)


def _weights(task: Task, only: set[str] | None = None) -> dict[str, Any]:
    return {
        k: {n: t.detach().clone() for n, t in m.state_dict().items()}
        for k, m in task.modules().items()
        if only is None or k in only
    }


def _load_weights(task: Task, weights: dict[str, Any], only: set[str] | None = None) -> None:
    for k, m in task.modules().items():
        if only is None or k in only:
            m.load_state_dict(weights[k])


def _own_state(state: dict[str, Any], last: Path, rt: Runtime) -> dict[str, Any]:
    """This process's pools and random state in the checkpoint `last`: rank 0's at the top,
    the other ranks' under `other_ranks`. A run resumes with as many processes as wrote it,
    or it would continue other pools and another global batch."""
    ranks = 1 + len(state.get("other_ranks", []))
    if ranks != rt.world:
        raise DuiitError(
            f"{last} was written by {ranks} process(es) and this run has {rt.world}: resume "
            f"it with {ranks} (torchrun --nproc-per-node, or no torchrun for 1), since each "
            "process continues its own image pools and random state"
        )
    return state if rt.rank == 0 else state["other_ranks"][rt.rank - 1]


def _resumed_best(state: dict[str, Any], last: Path, best: Path, main: bool) -> dict[str, Any]:
    """The selected modules' weights at the best step of the checkpoint `last` that a run
    resumes; `best` is made to hold them again where the interrupted run had saved a later
    best after that checkpoint. A checkpoint from before duiit kept them in it has only
    `best` to offer, taken when it is of that step."""
    step = state["best_step"]
    if step <= 0:
        return {}
    if "best_weights" in state:
        weights = state["best_weights"]
        if main and (not best.exists() or load_checkpoint(best)["step"] != step):
            atomic_save({"weights": weights, "step": step}, best)
        return weights
    saved = load_checkpoint(best) if best.exists() else {"step": None}
    if saved["step"] != step:
        raise DuiitError(
            f"{best} holds the weights of step {saved['step']}, not those of step {step}, the "
            f"best of {last}, which this run resumes (an older duiit was interrupted between "
            "the two); delete both files to train that stage afresh"
        )
    return saved["weights"]


@dataclass
class LoopResult:
    best_step: int
    best_selection: float
    trained_steps: int


def run_loop(task: Task, run_dir: Path, s: LoopSettings, rt: Runtime | None = None) -> LoopResult:
    """Train `task` for `s.steps`, resuming from this stage's last checkpoint if there is one.

    At the end the modules the task's validation selects (`Task.selected`) hold their
    weights of the best validation `selection` (or their last weights if the task reports
    none), the others their last weights; saved as `<stage>-final.pt` with each process's
    random state, which a resumed run that reuses the finished stage goes on from. Under torchrun
    every process trains; losses and validation metrics are averaged over processes so all
    take the same decisions, buffers (BatchNorm statistics) are rank 0's wherever a process
    validates or a checkpoint is taken, and only rank 0 writes: the networks, and each
    process's own pools and random state, which that process resumes.
    """
    rt = rt or Runtime(torch.device("cpu"), bf16=False)
    main = rt.is_main
    ckdir = run_dir / "checkpoints"
    last, best, final = (ckdir / f"{s.stage}-{k}.pt" for k in ("last", "best", "final"))
    if final.exists():  # stage finished earlier: reuse it, and go on from its random state
        state = load_checkpoint(final)
        _load_weights(task, state["weights"])
        if "rng" in state:  # older final checkpoints kept none
            _set_rng_state(_own_state(state, final, rt)["rng"], rt.device)
        return LoopResult(state["best_step"], state["best_selection"], 0)
    optimizers = task.optimizers()
    factors = {k: linear_decay(s.steps, s.decay_start) for k in optimizers}
    factors.update(task.lr_factors(s.steps))
    schedulers = {
        k: torch.optim.lr_scheduler.LambdaLR(o, factors[k]) for k, o in optimizers.items()
    }
    start, best_sel, best_step = 0, math.inf, -1
    best_weights: dict[str, Any] = {}  # the selected modules at best_step
    if last.exists():
        state = load_checkpoint(last)
        _load_weights(task, state["weights"])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
            schedulers[k].load_state_dict(state["schedulers"][k])
        own = _own_state(state, last, rt)
        task.load_state_dict(own["task"])
        _set_rng_state(own["rng"], rt.device)
        start, best_sel, best_step = state["step"], state["best_selection"], state["best_step"]
        best_weights = _resumed_best(state, last, best, main)
    log = MetricsLog(run_dir, s.stage, start) if main else None
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
        disable=s.quiet or not main,
        transient=False,
    )
    bar = progress.add_task(s.stage, total=s.steps, completed=start, losses="")
    try:
        with progress:
            for step in range(start, s.steps):
                losses = task.train_step(step)
                for sched in schedulers.values():
                    sched.step()
                n = step + 1
                ending = n == s.steps
                if n % s.log_every == 0 or n % s.ckpt_every == 0 or ending:
                    # The one host sync of the step, then the same numbers on every rank.
                    values = rt.mean_over_ranks({k: float(v) for k, v in losses.items()})
                    _check_finite(values, n, s.stage, last)
                    values["lr"] = (
                        next(iter(schedulers.values())).get_last_lr()[0] if schedulers else 0.0
                    )
                    if log:
                        log.log(n, values)
                    progress.update(
                        bar, losses=" ".join(f"{k} {v:.3g}" for k, v in values.items() if k != "lr")
                    )
                validating = n % s.eval_every == 0 or ending
                saving = n % s.ckpt_every == 0 or ending
                if validating or saving:  # what is validated and saved: equal on every rank
                    rt.broadcast_buffers(task.modules().values())
                if validating:
                    metrics = rt.mean_over_ranks(task.validate())
                    if metrics and log:
                        log.log(n, {f"val_{k}": v for k, v in metrics.items()})
                    sel = metrics.get("selection", math.nan)
                    if math.isfinite(sel) and sel < best_sel:
                        best_sel, best_step = sel, n
                        best_weights = _weights(task, task.selected())
                        if main:
                            atomic_save({"weights": best_weights, "step": n}, best)
                if main and (n % s.sample_every == 0 or ending):
                    save_grid(task.samples(), run_dir / "samples" / f"{s.stage}-{n:06d}.png")
                if saving:  # each process's pools and random state: its own, resumed by it
                    own = rt.gather({"task": task.state_dict(), "rng": _rng_state(rt.device)})
                    if main:
                        atomic_save(
                            {
                                "weights": _weights(task),
                                "step": n,
                                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                                "schedulers": {k: c.state_dict() for k, c in schedulers.items()},
                                **own[0],
                                "other_ranks": own[1:],
                                "best_selection": best_sel,
                                "best_step": best_step,
                                "best_weights": best_weights,
                            },
                            last,
                        )
                progress.update(bar, completed=n)
    finally:
        if log:
            log.close()
    if best_step > 0:
        _load_weights(task, best_weights, task.selected())
    # Each process's random state at the stage's end: the next stage (a model's
    # initialisation, its first batches) draws on from it, whether or not this run was resumed.
    own = rt.gather({"rng": _rng_state(rt.device)})
    if main:
        atomic_save(
            {
                "weights": _weights(task),
                "best_step": best_step,
                "best_selection": best_sel,
                **own[0],
                "other_ranks": own[1:],
            },
            final,
        )
    barrier()
    return LoopResult(best_step, best_sel, s.steps - start)
