"""torchrun with the gloo backend on CPU: N processes behave as one with N times the batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from helpers import TINY, torchrun

from duiit.training.loop import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_processes_equal_one_with_double_batch(tmp_path: Path) -> None:
    """For CycleGAN and CUT (whose patch locations every rank must draw alike), and for
    joint DUIIT's predictor under the recipe's random augmentation, which each rank drew
    alike for its own images (the same flips and shifts on both halves of the batch)."""
    single = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "one.pt"), "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    res = torchrun(str(WORKER), str(tmp_path / "two.pt"), "2")
    assert res.returncode == 0, res.stderr
    assert "terminate called" not in res.stderr  # the process group was destroyed at the end
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert one["world"] == 1 and two["world"] == 2
    rank1 = torch.load(tmp_path / "two.pt.rank1", weights_only=True)
    for translator in ("cyclegan", "cut"):
        bank, init = one["bank"][translator], one["init"][translator]
        for k, v in two["bank"][translator].items():  # the averaged steps kept the ranks
            assert torch.equal(v, rank1["bank"][translator][k]), k  # in step
        for k, v in bank.items():
            assert torch.allclose(v, two["bank"][translator][k], atol=1e-5, rtol=1e-4), k
        assert any(not torch.equal(v, init[k]) for k, v in bank.items())  # it trained
    ranks = [torch.load(f"{tmp_path / 'two.pt'}.predictor-{r}", weights_only=True) for r in (0, 1)]
    alone = torch.load(tmp_path / "one.pt.predictor-0", weights_only=True)
    for k, v in ranks[0]["predictor"].items():  # each rank saw other images: only the
        assert torch.allclose(v, ranks[1]["predictor"][k], atol=1e-6), k  # all-reduce agrees
        # 3 steps move a weight by up to 3e-3; summing halves in another order leaves 4e-5,
        # the same flips and shifts drawn on each rank 6e-3
        assert torch.allclose(v, alone["predictor"][k], atol=3e-4, rtol=0), k
    assert any(not torch.equal(v, ranks[0]["init"][k]) for k, v in ranks[0]["predictor"].items())


def test_processes_validate_equal_buffers_and_each_resumes_its_own_pools(tmp_path: Path) -> None:
    """Joint DUIIT (BatchNorm in the predictor, per-rank pools of past fakes) through the loop
    core on 2 processes. Uninterrupted: the ranks end with equal parameters and equal
    buffers (running statistics), which each would otherwise gather from its own half batch.
    Crashed after the checkpoint of step 2 and resumed: the same networks to the last bit,
    which needs every rank to resume its own pools and random state."""

    def loop(run: str, crash_at: int) -> subprocess.CompletedProcess[str]:
        return torchrun(str(WORKER), "loop", str(tmp_path / run), str(crash_at))

    res = loop("whole", -1)
    assert res.returncode == 0, res.stderr
    whole = [torch.load(tmp_path / "whole" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    buffers = [k for k in whole[0]["predictor"] if "running_" in k]
    assert buffers and any(whole[0]["predictor"][k].abs().sum() > 0 for k in buffers)
    for module, state in whole[0].items():
        for k, v in state.items():
            assert torch.equal(v, whole[1][module][k]), (module, k)
    res = loop("resumed", 3)
    assert res.returncode != 0 and "crashed in step 3" in res.stderr
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "duiit-last.pt")
    assert last["step"] == 2 and len(last["other_ranks"]) == 1
    res = loop("resumed", -1)
    assert res.returncode == 0, res.stderr
    for r in (0, 1):
        resumed = torch.load(tmp_path / "resumed" / f"rank{r}.pt", weights_only=True)
        for module, state in whole[r].items():
            for k, v in state.items():
                assert torch.equal(v, resumed[module][k]), (r, module, k)


def test_torchrun_train_end_to_end(phantom_dir: Path, tmp_path: Path) -> None:
    res = torchrun(
        "-m",
        "duiit",
        "train",
        "-q",
        "--target",
        str(phantom_dir / "ct.csv"),
        "--source",
        str(phantom_dir / "mri.csv"),
        "--out",
        str(tmp_path / "run"),
        *TINY,
        "train.batch_size=2",
        "train.steps=8",
        "train.eval_every=4",
        "train.log_every=4",
        "train.ckpt_every=4",
    )
    assert res.returncode == 0, res.stderr
    assert "terminate called" not in res.stderr
    assert (tmp_path / "run" / "result.json").exists()
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert not m.duplicated(["stage", "step", "name"]).any()  # rank 0 alone wrote
    assert sorted(m.loc[m["name"] == "cyc", "step"]) == [4, 8]
