"""Patient-level splits and configuration validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from duiit.config import load_config, parse_overrides
from duiit.data import Cohort, split_cohort
from duiit.data.cohort import evenly_spaced
from duiit.errors import DuiitError


def _cohort(n_patients: int, per_patient: int) -> Cohort:
    n = n_patients * per_patient
    pids = np.repeat([f"p{i}" for i in range(n_patients)], per_patient).astype(object)
    return Cohort(
        "CT",
        torch.zeros(n, 1, 4, 4),
        torch.arange(n, dtype=torch.float32),
        pids,
        pd.DataFrame({"path": ["x"] * n}),
    )


def test_patient_split_never_shares_a_patient_and_hits_fractions() -> None:
    c = _cohort(100, 4)
    s = split_cohort(c, seed=1)
    parts = [set(c.patient_ids[idx]) for idx in (s.train, s.val, s.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(400))
    assert abs(len(s.test) / 400 - 0.12) < 0.02 and abs(len(s.val) / 400 - 0.11) < 0.02


def test_split_is_seeded() -> None:
    c = _cohort(30, 3)
    a, b, other = split_cohort(c, seed=5), split_cohort(c, seed=5), split_cohort(c, seed=6)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, other.test)


def test_image_split_is_explicit_and_small_cohorts_still_get_every_part() -> None:
    c = _cohort(2, 5)
    s = split_cohort(c, seed=0, by="image")
    assert len(s.val) >= 1 and len(s.test) >= 1
    with pytest.raises(DuiitError, match="has 2 patients"):
        split_cohort(c, seed=0)
    s = split_cohort(_cohort(3, 1), seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (1, 1, 1)


def test_config_layers_and_messages(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("train:\n  steps: 50\nmodel:\n  ngf: 8\n")
    cfg = load_config(
        tmp_path / "c.yaml", ["train.steps=70", "data.hu_window=[50, 100]"], preset="cpu-demo"
    )
    assert cfg.train.steps == 70 and cfg.model.ngf == 8 and cfg.data.image_size == 32
    assert cfg.data.hu_window == (50.0, 100.0)
    with pytest.raises(DuiitError, match=r"train.stepz: unknown key; allowed here: .*steps"):
        load_config(overrides=["train.stepz=3"])
    with pytest.raises(DuiitError, match=r"model.predictor: Input should be 'resnet10'"):
        load_config(overrides=["model.predictor=vgg"])
    with pytest.raises(DuiitError, match="unknown preset 'fast'; choose one of: cpu-demo"):
        load_config(preset="fast")
    assert load_config(overrides=["train.compile=off"]).train.compile == "off"
    with pytest.raises(DuiitError, match="section.key=value"):
        parse_overrides(["steps"])


def test_central_slices_even_out_whole_stacks_beside_single_slices() -> None:
    pids = np.array(["a"] * 27 + ["b"] * 2 + ["c"], dtype=object)
    n = len(pids)
    cohort = Cohort(
        "CT",
        torch.arange(n, dtype=torch.float16).view(n, 1, 1, 1).expand(n, 1, 4, 4),
        torch.zeros(n),
        pids,
        pd.DataFrame({"path": [f"{p}_{i}" for i, p in enumerate(pids)]}),
    )
    kept = cohort.central_slices(5)
    assert kept.images[:, 0, 0, 0].tolist() == [4, 9, 13, 18, 22, 27, 28, 29]
    assert cohort.central_slices(0) is cohort


def test_evenly_spaced_leaves_out_both_ends() -> None:
    """The one rule for data.slices_per_patient and `data import --slices`."""
    assert evenly_spaced(range(27), 1) == [13]  # the middle, not the skull base
    assert evenly_spaced(range(10), 4) == [2, 4, 6, 8]
    assert evenly_spaced("abc", 3) == evenly_spaced("abc", 0) == ["a", "b", "c"]
