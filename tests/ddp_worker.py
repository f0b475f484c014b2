"""Run a few translator steps, alone or as one rank under torchrun; each rank saves the
translators of a CycleGAN and of a CUT task (rank 0 to OUT, rank r to OUT.rank<r>) and the
predictor of a joint DUIIT task (OUT.predictor-<r>).

python tests/ddp_worker.py OUT BATCH           (one process)
torchrun --nproc-per-node 2 tests/ddp_worker.py OUT BATCH
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import torch
from helpers import noise_cohort

from duiit.config import load_config
from duiit.methods.base import LabelCodec
from duiit.methods.duiit import TranslationTask
from duiit.training.runtime import Runtime, distributed_job, seed_everything


def main(out: str, batch: int) -> None:
    torch.set_num_threads(1)
    with distributed_job():  # leaves the process group at the end, as duiit's jobs do
        train_and_save(out, batch)
    left = [name for name in native_threads() if "gloo" in name]
    if left:  # they would run into interpreter shutdown, where they can abort the process
        sys.exit(f"gloo threads outlived the process group: {left}")


def native_threads() -> list[str]:
    """Names of this process's OS threads (Linux; none elsewhere)."""
    return [Path(task, "comm").read_text().strip() for task in glob.glob("/proc/self/task/*")]


def train_and_save(out: str, batch: int) -> None:
    cfg = load_config(
        overrides=[
            "data.image_size=32",
            "model.ngf=4",
            "model.ndf=4",
            "model.n_blocks=1",
            f"train.batch_size={batch}",
            "train.pool_size=0",
            "train.precision=fp32",  # bf16 rounds differently at batch 2 and 4
            "train.compile=off",  # on a GPU: each rank would compile for a minute
        ]
    )
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
    # The predictor's batch norm sees each rank's half batch, so it is compared across the
    # ranks (the same gradients after the all-reduce keep the same weights), not with one.
    seed_everything(0)
    joint = TranslationTask(
        target, target, [source], cfg, rt, LabelCodec.fit(target), coupling="joint"
    )
    assert joint.predictor is not None
    before = {k: v.clone() for k, v in joint.predictor.named_parameters()}
    for step in range(3):
        joint.train_step(step)
    after = {k: v.detach().clone() for k, v in joint.predictor.named_parameters()}
    torch.save({"init": before, "predictor": after}, f"{out}.predictor-{rt.rank}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
