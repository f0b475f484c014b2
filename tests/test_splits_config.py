"""Patient-level splits and configuration validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from duiit.config import load_config, parse_overrides, read_mapping
from duiit.data import Cohort, split_cohort
from duiit.data.cohort import evenly_spaced
from duiit.data.splits import are_counts
from duiit.errors import DuiitError, DuiitWarning


def _cohort(n_patients: int, per_patient: int | list[int]) -> Cohort:
    pids = np.repeat([f"p{i}" for i in range(n_patients)], per_patient).astype(object)
    n = len(pids)
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


def test_split_counts_by_image_are_exact_and_the_rest_is_left_out() -> None:
    c = _cohort(100, 4)
    with pytest.warns(DuiitWarning, match=r"asks for 390 of the CT cohort's 400 images"):
        s = split_cohort(c, (300, 40, 50), seed=2, by="image")
    assert (len(s.train), len(s.val), len(s.test)) == (300, 40, 50)
    assert len(set(np.concatenate([s.train, s.val, s.test]).tolist())) == 390


def test_split_counts_by_patient_fill_whole_patients_to_at_least_the_count() -> None:
    c = _cohort(60, [1 + i % 5 for i in range(60)])  # 1 to 5 images each: 180 images
    for seed in range(5):
        with pytest.warns(DuiitWarning, match="asks for 150 of the CT cohort's 180 images"):
            s = split_cohort(c, (100, 30, 20), seed=seed)
        parts = [set(c.patient_ids[idx]) for idx in (s.train, s.val, s.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        for idx, count in ((s.train, 100), (s.val, 30), (s.test, 20)):
            assert count <= len(idx) < count + 5  # whole patients, one too many at most
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counts that use every image leave none out
        assert len(split_cohort(c, (180, 0, 0), seed=0, by="image").train) == 180


def test_split_counts_that_cannot_be_met_are_refused() -> None:
    c = _cohort(100, 4)
    too_many = r"data.split=\[300, 60, 50\] asks for 410 images but the CT cohort has 400; give"
    with pytest.raises(DuiitError, match=too_many):
        split_cohort(c, (300, 60, 50))
    with pytest.raises(DuiitError, match=r"data.split=\[0, 60, 50\] leaves no image to train"):
        split_cohort(c, (0, 60, 50))


def test_split_sizes_are_counts_only_when_whole_and_above_one() -> None:
    assert are_counts((1887, 271, 280)) and are_counts((2.0, 1.0, 1.0))
    assert not are_counts((0.77, 0.11, 0.12)) and not are_counts((1, 0, 0))
    assert not are_counts((1887.5, 271, 280))
    assert load_config(overrides=["data.split=[1887,271,280]"]).data.split == (1887, 271, 280)


def test_config_layers_and_messages(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("train:\n  steps: 50\nmodel:\n  ngf: 8\n")
    cfg = load_config(
        tmp_path / "c.yaml", ["train.steps=70", "data.hu_window=[50, 100]"], preset="cpu-demo"
    )
    assert cfg.train.steps == 70 and cfg.model.ngf == 8 and cfg.data.image_size == 32
    assert cfg.data.hu_window == (50.0, 100.0)
    with pytest.raises(DuiitError, match=r"train.stepz: unknown key; allowed here: .*steps"):
        load_config(overrides=["train.stepz=3"])
    with pytest.raises(DuiitError, match=r"predictor.network: Input should be 'resnet10'"):
        load_config(overrides=["predictor.network=vgg"])
    with pytest.raises(DuiitError, match=r"model.predictor: moved to predictor.network"):
        load_config(overrides=["model.predictor=resnet18"])
    with pytest.raises(DuiitError, match="unknown preset 'fast'; choose one of: cpu-demo"):
        load_config(preset="fast")
    assert load_config(overrides=["train.compile=off"]).train.compile == "off"
    with pytest.raises(DuiitError, match="section.key=value"):
        parse_overrides(["steps"])


def test_a_key_given_twice_is_refused_but_a_merged_key_may_be_overridden(tmp_path: Path) -> None:
    """YAML anchors with `<<:` keep working (an explicit key overrides a merged one, as
    YAML intends); a key written twice in one mapping is an error naming both lines."""
    shared = "base: &b {steps: 50, lr_translator: 0.1}\n"
    (tmp_path / "merge.yaml").write_text(shared + "train:\n  <<: *b\n  lr_translator: 0.001\n")
    (tmp_path / "twice.yaml").write_text(shared + "train:\n  <<: *b\n  steps: 5\n  steps: 7\n")
    with pytest.raises(DuiitError, match="base: unknown key"):  # the anchor's own section
        load_config(tmp_path / "merge.yaml")
    merged = read_mapping(tmp_path / "merge.yaml", "config file", "")["train"]
    assert merged == {"steps": 50, "lr_translator": 0.001}
    with pytest.raises(DuiitError, match=r"'steps' is given twice \(lines 4 and 5\)"):
        read_mapping(tmp_path / "twice.yaml", "config file", "")


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
