"""The loop core: exact resume after SIGKILL, the NaN guard, and the LR schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import TINY as BASE
from helpers import kill_at_first_checkpoint
from torch import nn

from duiit.errors import DuiitError
from duiit.training.loop import LoopSettings, linear_decay, load_checkpoint, run_loop
from duiit.training.runtime import Runtime

TINY = [*BASE, "train.batch_size=4"]


def _train(args: list[str], **kw: Any) -> subprocess.Popen:
    """`duiit train` in a subprocess on one CPU thread: with several, some CPU kernels round
    differently when the machine is busy (measured: 1 run in 3 under load), which would
    make bitwise comparisons between processes flaky for reasons unrelated to resuming."""
    return subprocess.Popen(
        [sys.executable, "-m", "duiit", "train", "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **kw,
    )


@pytest.mark.parametrize(
    ("precision", "translator"), [("fp32", "cyclegan"), ("bf16", "cyclegan"), ("fp32", "cut")]
)
def test_sigkill_then_resume_gives_the_uninterrupted_weights(
    phantom_dir: Path, tmp_path: Path, precision: str, translator: str
) -> None:
    """Bit-exact on one thread in fp32 and also under bf16 autocast (same kernels, same
    order: the casts are deterministic too); for CUT, its head and patch sampling too."""
    common = ["--target", str(phantom_dir / "ct.csv"), "--source", str(phantom_dir / "mri.csv")]
    settings = [
        *TINY,
        f"train.precision={precision}",
        f"model.translator={translator}",
        "train.steps=30",  # killed at the first checkpoint (10); LR decay from 15 resumed
        "train.ckpt_every=10",
        "train.eval_every=10",
        "train.log_every=5",
        "train.sample_every=15",
    ]
    # The uninterrupted run and the killed one side by side, one thread each: CI's two cores
    # run both at once (one after the other, the test took 82 s, 40 s and 37 s of the suite).
    whole = _train([*common, "--out", str(tmp_path / "whole"), *settings])
    try:
        killed = _train([*common, "--out", str(tmp_path / "killed"), *settings])
        last = kill_at_first_checkpoint(killed, tmp_path / "killed")
        assert not (tmp_path / "killed" / "result.json").exists()
        step = load_checkpoint(last)["step"]
        assert 0 < step < 30

        resumed = _train(["--resume", str(tmp_path / "killed")])
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        _, err = whole.communicate(timeout=600)
        assert whole.returncode == 0, err
    finally:  # a failed assertion above leaves no training process behind
        if whole.poll() is None:
            whole.kill()
            whole.communicate()
    a = load_checkpoint(tmp_path / "whole" / "model.pt")
    b = load_checkpoint(tmp_path / "killed" / "model.pt")
    for part in ("predictor",):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), k
    for k, v in a["translators"]["MRI"].items():
        assert torch.equal(v, b["translators"]["MRI"][k]), k
    ra = json.loads((tmp_path / "whole" / "result.json").read_text())
    rb = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert ra["metrics"] == rb["metrics"]
    # the resumed run's clock saw only its last sitting: no fit time is claimed for it
    assert ra["fit_seconds"] > 0 and rb["fit_seconds"] is None and rb["sitting_seconds"] > 0
    lines_a = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    lines_b = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert sorted(lines_a) == sorted(lines_b)  # no duplicated or missing rows after resume


class ToyTask:
    """Linear regression whose loss turns NaN at a chosen step."""

    def __init__(self, nan_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.x = torch.randn(32, 3)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]])
        self.nan_at = nan_at

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"sgd": self.opt}

    def lr_factors(self, steps: int) -> dict:
        return {}  # the stage's linear decay

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        loss = ((self.model(self.x) - self.y) ** 2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def validate(self) -> dict[str, float]:
        with torch.no_grad():
            return {"selection": float(((self.model(self.x) - self.y) ** 2).mean())}

    def selected(self) -> set[str]:
        return {"model"}

    def samples(self) -> list[torch.Tensor]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def test_nan_guard_stops_with_message_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    s = LoopSettings(stage="toy", steps=40, log_every=1, eval_every=5, ckpt_every=5, quiet=True)
    with pytest.raises(
        DuiitError,
        match=r"diverged at step 13: loss became nan; the last good "
        r"checkpoint is .*toy-last.pt",
    ):
        run_loop(ToyTask(nan_at=12), tmp_path, s)
    state = load_checkpoint(tmp_path / "checkpoints" / "toy-last.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["weights"]["model"].values())
    assert not (tmp_path / "checkpoints" / "toy-final.pt").exists()


def test_loop_learns_selects_best_and_skips_finished_stage(tmp_path: Path) -> None:
    s = LoopSettings(stage="toy", steps=30, log_every=5, eval_every=5, ckpt_every=10, quiet=True)
    task = ToyTask()
    start = task.validate()["selection"]
    result = run_loop(task, tmp_path, s)
    assert result.best_selection < 0.01 * start and result.trained_steps == 30
    fresh = ToyTask()
    again = run_loop(fresh, tmp_path, s)  # finished stage: loads its weights, trains nothing
    assert again.trained_steps == 0
    assert torch.equal(fresh.model.weight, task.model.weight)


class NoisyTask(ToyTask):
    """Draws from the global random state each step, as the recipe's augmentation does."""

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        self.x = self.x + 0.01 * torch.randn_like(self.x)
        return super().train_step(step)


def test_a_run_resumed_after_a_finished_stage_draws_on_as_the_uninterrupted_one(
    tmp_path: Path,
) -> None:
    """Two stages (TL's pre-training then fine-tuning; CyCADA's frozen predictor then its
    translator): a run killed after the first stage's final checkpoint reused that stage but
    went on from the random state of a fresh start, so its second stage (initialisation,
    augmentation) drew other numbers than the uninterrupted run's."""
    first = LoopSettings("first", steps=6, log_every=2, eval_every=3, ckpt_every=3, quiet=True)

    def second_stage(run_dir: Path) -> torch.Tensor:
        torch.manual_seed(0)  # every process starts from the run's seed
        run_loop(NoisyTask(), run_dir, first)
        return torch.rand(4)  # what the second stage draws first

    whole = second_stage(tmp_path / "whole")
    resumed = second_stage(tmp_path / "whole")  # the first stage is finished: reused
    assert torch.equal(whole, resumed)
    state = load_checkpoint(tmp_path / "whole" / "checkpoints" / "first-final.pt")
    del state["rng"]  # a final checkpoint of an older duiit: reused as it is
    torch.save(state, tmp_path / "whole" / "checkpoints" / "first-final.pt")
    assert not torch.equal(second_stage(tmp_path / "whole"), whole)


class TwoModuleTask(ToyTask):
    """A 'translator' and a 'predictor' that count their steps in their weights, and a
    validation curve whose best step is not the last: only the predictor is selected."""

    def __init__(self, curve: list[float], crash_at: int | None = None) -> None:
        super().__init__()
        self.translator, self.predictor = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
        for m in (self.translator, self.predictor):
            nn.init.zeros_(m.weight)
        self.curve = iter(curve)
        self.crash_at = crash_at

    def modules(self) -> dict[str, nn.Module]:
        return {"translator": self.translator, "predictor": self.predictor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def lr_factors(self, steps: int) -> dict:
        return {}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        if step == self.crash_at:
            raise RuntimeError(f"crashed in step {step}")
        with torch.no_grad():
            for m in (self.translator, self.predictor):
                m.weight += 1.0
        return {"loss": torch.tensor(0.0)}

    def validate(self) -> dict[str, float]:
        return {"selection": next(self.curve)}

    def selected(self) -> set[str]:
        return {"predictor"}


def test_validation_selects_the_predictor_and_translators_keep_their_last_step(
    tmp_path: Path,
) -> None:
    """The predictor is restored to the best validation step (2 of 4); the translator keeps
    step 4, in memory and in the final checkpoint a finished stage is reloaded from."""
    s = LoopSettings(stage="toy", steps=4, log_every=1, eval_every=1, ckpt_every=2, quiet=True)
    task = TwoModuleTask([3.0, 1.0, 2.0, 4.0])
    result = run_loop(task, tmp_path, s)
    assert result.best_step == 2
    assert task.predictor.weight.item() == 2.0 and task.translator.weight.item() == 4.0
    again = TwoModuleTask([])
    run_loop(again, tmp_path, s)
    assert again.predictor.weight.item() == 2.0 and again.translator.weight.item() == 4.0


# Validated every step, a checkpoint every 4: the first run's best is step 5, after the
# checkpoint of step 4, whose best is step 4; the run crashes in step 6.
CRASHING = LoopSettings(stage="toy", steps=8, log_every=1, eval_every=1, ckpt_every=4, quiet=True)


def crash_after_a_best_save(tmp_path: Path, crash_at: int = 5) -> tuple[Path, Path]:
    """The first run, up to its crash; returns its last and best checkpoints."""
    with pytest.raises(RuntimeError, match="crashed in step"):
        run_loop(TwoModuleTask([5.0, 4.0, 3.0, 2.0, 1.0], crash_at=crash_at), tmp_path, CRASHING)
    return tmp_path / "checkpoints" / "toy-last.pt", tmp_path / "checkpoints" / "toy-best.pt"


def test_a_run_resumed_after_a_crash_ends_with_its_own_best_not_the_discarded_one(
    tmp_path: Path,
) -> None:
    """The resumed run validates worse than step 4 (3.0 against 2.0): its best stays step 4,
    and it ends with the predictor of step 4, not that of step 5, which the crashed run saved
    in best.pt before it was discarded; best.pt is made to match."""
    last, best = crash_after_a_best_save(tmp_path)
    assert load_checkpoint(last)["step"] == 4 and load_checkpoint(best)["step"] == 5
    resumed = TwoModuleTask([3.0, 3.0, 3.0, 3.0])
    result = run_loop(resumed, tmp_path, CRASHING)
    assert result.best_step == 4 and result.trained_steps == 4
    assert resumed.predictor.weight.item() == 4.0 and resumed.translator.weight.item() == 8.0
    assert load_checkpoint(best)["step"] == 4
    assert load_checkpoint(best)["weights"]["predictor"]["weight"].item() == 4.0


@pytest.mark.parametrize("crash_at", [4, 5], ids=["best saved with the checkpoint", "after it"])
def test_a_checkpoint_of_an_older_duiit_resumes_only_with_its_own_best(
    tmp_path: Path, crash_at: int
) -> None:
    """A last checkpoint without the best weights (older duiit): its best.pt is taken when
    it is of the checkpoint's best step, else the resume is refused in one line, as the
    weights of that step are lost."""
    last, best = crash_after_a_best_save(tmp_path, crash_at)
    state = load_checkpoint(last)
    del state["best_weights"]
    torch.save(state, last)
    resumed = TwoModuleTask([3.0, 3.0, 3.0, 3.0])
    if crash_at == 4:
        assert run_loop(resumed, tmp_path, CRASHING).best_step == 4
        assert resumed.predictor.weight.item() == 4.0
        return
    with pytest.raises(
        DuiitError, match=r"toy-best.pt holds the weights of step 5, not those of step 4"
    ):
        run_loop(resumed, tmp_path, CRASHING)


def test_a_resume_with_another_number_of_processes_is_refused(tmp_path: Path) -> None:
    """Each process resumes its own pools and random state, which a checkpoint of one
    process does not hold for two (checked before any process waits for another)."""
    crash_after_a_best_save(tmp_path)
    two = Runtime(torch.device("cpu"), bf16=False, world=2)
    with pytest.raises(DuiitError, match=r"toy-last.pt was written by 1 process\(es\) and this"):
        run_loop(TwoModuleTask([]), tmp_path, CRASHING, two)


def test_linear_decay_schedule() -> None:
    f = linear_decay(100, 0.5)
    assert [f(0), f(49), f(50), f(75), f(100)] == [1.0, 1.0, 1.0, 0.5, 0.0]
