"""The README's first command: phantom cohort -> small protocol grid -> report, on a CPU."""

from __future__ import annotations

from pathlib import Path

import yaml

from duiit.data.phantom import PhantomSpec, synthesise
from duiit.errors import DuiitError
from duiit.files import write_text

# All four settings, ours, CycleGAN, target only, two more baselines and the classical one
# (has the network learnt more than pixel counts tell?), 3 splits; sizes chosen so the whole
# demo takes minutes on 2 CPU cores (see README for measured time).
DEMO_EXPERIMENT = {
    "target": "cohort/ct.csv",
    "sources": ["cohort/mri.csv", "cohort/pet.csv"],
    "methods": ["duiit", "cyclegan", "target_only", "transfer", "simple_augment", "features_ridge"],
    "splits": 3,
    "ours": "duiit",
    "alpha": 0.1,
    "preset": "cpu-demo",
    # 150 joint steps for DUIIT's co-trained predictor, and as many for every other
    # predictor: 19 passes over the ~246 CT training slices at batch 32 are 152 steps.
    "run": {"train": {"steps": 150}, "predictor": {"epochs": 19}},
    "quality": {"enabled": True, "max_images": 100},
}


def prepare_demo(out: Path, force: bool = False, quiet: bool = False) -> Path:
    """Synthesise the phantom cohort and write the demo's experiment file; returns its path."""
    if out.exists() and any(out.iterdir()) and not force:
        raise DuiitError(f"{out} already exists; pass --force to start the demo afresh there")
    if out.exists() and force:
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    synthesise(out / "cohort", PhantomSpec(size=32, slices=4), quiet=quiet)
    path = out / "demo-experiment.yaml"
    write_text(yaml.safe_dump(DEMO_EXPERIMENT, sort_keys=False), path)
    return path
