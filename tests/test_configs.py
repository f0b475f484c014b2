"""The experiment files shipped in configs/: each one loads, and each ablation file grows its
claims experiment's folder (same data and run settings, a superset of its grid), as its
header promises. A drifted setting would otherwise be found only after the claims runs, when
`duiit experiment` refuses the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from duiit.evaluation.experiment import load_experiment
from duiit.evaluation.record import experiment_record
from duiit.methods import get_method

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROWS = {
    "phantom-ablation.yaml": "phantom-claims.yaml",
    "real-ct-ich-ablation.yaml": "real-ct-ich.yaml",
}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_experiment_file_loads(name: str) -> None:
    exp, cfg = load_experiment(CONFIGS / name)
    translating = any(get_method(m).translates for m in exp.methods)
    # a file with translators says how long they train; predictor stages take the recipe's
    assert exp.splits >= 1 and exp.methods and (cfg.train.steps > 0 or not translating)


@pytest.mark.parametrize("ablation, claims", sorted(GROWS.items()))
def test_ablation_file_grows_its_claims_folder(ablation: str, claims: str) -> None:
    small, big = (load_experiment(CONFIGS / n) for n in (claims, ablation))
    a, b = experiment_record(*small), experiment_record(*big)
    for key in ("target", "sources", "resolved_run"):
        assert a[key] == b[key], f"{ablation} and {claims} differ in {key}"
    assert set(a["methods"]) <= set(b["methods"])
    assert a["settings"] == b["settings"]
    assert b["splits"] >= a["splits"]
