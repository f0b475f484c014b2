"""Run a few translator steps, alone or as one rank under torchrun; each rank saves the
translators of a CycleGAN and of a CUT task (rank 0 to OUT, rank r to OUT.rank<r>) and the
predictor of a joint DUIIT task with the recipe's augmentation (OUT.predictor-<r>).

python tests/ddp_worker.py OUT BATCH           (one process)
torchrun --nproc-per-node 2 tests/ddp_worker.py OUT BATCH

Or, with `loop`, a joint DUIIT task through the loop core in RUN_DIR (resumed from its
checkpoint if it has one); CRASH_AT >= 0 makes every rank raise in that step, as a crash
would. Each rank that finishes saves its modules' state (parameters and buffers) to
RUN_DIR/rank<r>.pt.

torchrun --nproc-per-node 2 tests/ddp_worker.py loop RUN_DIR CRASH_AT
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from helpers import noise_cohort

from duiit.config import load_config
from duiit.methods.base import LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.training.loop import LoopSettings, run_loop
from duiit.training.runtime import Runtime, distributed_job, seed_everything

SMALL = [
    "data.image_size=32",
    "model.ngf=4",
    "model.ndf=4",
    "model.n_blocks=1",
    "train.precision=fp32",  # bf16 rounds differently at batch 2 and 4
    "train.compile=off",  # on a GPU: each rank would compile for a minute
    "predictor.network=resnet10",
    "predictor.width=0.25",
    "predictor.batch_size=2",
    "predictor.augment=[]",
]


def main(job: Callable[[], None]) -> None:
    torch.set_num_threads(1)
    with distributed_job():  # leaves the process group at the end, as duiit's jobs do
        job()
    left = [name for name in native_threads() if "gloo" in name]
    if left:  # they would run into interpreter shutdown, where they can abort the process
        sys.exit(f"gloo threads outlived the process group: {left}")


def native_threads() -> list[str]:
    """Names of this process's OS threads (Linux; none elsewhere)."""
    return [Path(task, "comm").read_text().strip() for task in glob.glob("/proc/self/task/*")]


def train_and_save(out: str, batch: int) -> None:
    cfg = load_config(overrides=[*SMALL, f"train.batch_size={batch}", "train.pool_size=0"])
    rt = Runtime.from_config(cfg.train)
    target, source = noise_cohort("CT", 1), noise_cohort("MRI", 2)
    init, trained = {}, {}
    for translator in ("cyclegan", "cut"):
        seed_everything(0)
        task = TranslationTask(
            target,
            target,
            [source],
            cfg.model_copy(
                update={"model": cfg.model.model_copy(update={"translator": translator})}
            ),
            rt,
            LabelCodec.fit(target),
            coupling="none",
        )
        nets = task.translator.nets
        init[translator] = {k: v.clone() for k, v in nets.state_dict().items()}
        for step in range(3):
            task.train_step(step)
        trained[translator] = nets.state_dict()
    state = {"init": init, "bank": trained, "world": rt.world}
    torch.save(state, out if rt.is_main else f"{out}.rank{rt.rank}")
    # Joint DUIIT with the recipe's predictor (GroupNorm, random flips and affine moves of
    # its real and translated images): as one process with the double batch too.
    seed_everything(0)
    recipe = [f"predictor.batch_size={batch}", "predictor.augment=[flip, affine]"]
    joint_cfg = load_config(overrides=[*SMALL, f"train.batch_size={batch}", *recipe])
    joint = TranslationTask(
        target, target, [source], joint_cfg, rt, LabelCodec.fit(target), coupling="joint"
    )
    assert joint.predictor is not None
    before = {k: v.clone() for k, v in joint.predictor.named_parameters()}
    for step in range(3):
        joint.train_step(step)
    after = {k: v.detach().clone() for k, v in joint.predictor.named_parameters()}
    torch.save({"init": before, "predictor": after}, f"{out}.predictor-{rt.rank}")


def loop_and_save(run_dir: Path, crash_at: int) -> None:
    """6 steps of joint DUIIT with CycleGAN (pools of 2 past fakes, per rank) and a ResNet-10
    predictor (BatchNorm: running statistics in buffers), validated and checkpointed every 2
    steps."""
    cfg = load_config(
        overrides=[*SMALL, "predictor.norm=batch"]  # buffers to keep equal
        + ["train.batch_size=2", "train.pool_size=2"]
    )
    rt = Runtime.from_config(cfg.train)
    target, source = noise_cohort("CT", 1), noise_cohort("MRI", 2)
    seed_everything(0)
    task = TranslationTask(
        target, target, [source], cfg, rt, LabelCodec.fit(target), coupling="joint"
    )
    step = task.train_step

    def train_step(n: int) -> dict[str, torch.Tensor]:
        if n == crash_at:
            raise RuntimeError(f"crashed in step {n}")
        return step(n)

    task.train_step = train_step  # type: ignore[method-assign]
    settings = LoopSettings("duiit", 6, log_every=2, eval_every=2, ckpt_every=2, quiet=True)
    run_loop(task, run_dir, settings, rt)
    state = {k: m.state_dict() for k, m in task.modules().items()}
    torch.save(state, run_dir / f"rank{rt.rank}.pt")


if __name__ == "__main__":
    if sys.argv[1] == "loop":
        main(lambda: loop_and_save(Path(sys.argv[2]), int(sys.argv[3])))
    else:
        main(lambda: train_and_save(sys.argv[1], int(sys.argv[2])))
