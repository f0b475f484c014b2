"""Statistics, metrics and FID checked against known values and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from duiit.evaluation.metrics import classification_metrics, regression_metrics
from duiit.evaluation.quality import fid
from duiit.evaluation.stats import significance, summary, ttest


def test_paired_ttest_matches_hand_computation_and_scipy() -> None:
    ours = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0], index=range(5))
    other = pd.Series([2.0, 2.0, 4.0, 4.0, 7.0], index=range(5))
    t = ttest(ours, other)
    # differences 1,0,1,0,2: mean 0.8, sd sqrt(0.7), t = 0.8 / (sqrt(0.7)/sqrt(5)) = 2.138
    assert t.test == "paired" and t.n == 5
    assert t.mean_diff == pytest.approx(0.8)
    assert t.t == pytest.approx(0.8 / (np.sqrt(0.7) / np.sqrt(5)), rel=1e-9)
    assert t.p == pytest.approx(2 * stats.t.sf(t.t, df=4), rel=1e-9)
    assert t.p == pytest.approx(0.0993, abs=5e-4)
    assert t.p == pytest.approx(stats.ttest_rel(other, ours).pvalue)


def test_unshared_splits_use_welch() -> None:
    ours = pd.Series([1.0, 1.2, 0.9, 1.1], index=[0, 1, 2, 3])
    other = pd.Series([1.5, 1.9, 1.4], index=[5, 6, 7])
    t = ttest(ours, other)
    ref = stats.ttest_ind(other, ours, equal_var=False)
    assert t.test == "welch"
    assert (t.t, t.p) == pytest.approx((ref.statistic, ref.pvalue))


def test_significance_verdicts_and_summary() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        base = rng.normal(100, 10)
        rows += [
            {
                "setting": "MIX-CT-MRI",
                "method": "duiit",
                "split": k,
                "sources": "MRI",
                "mse": base - 20 + rng.normal(0, 1),
            },
            {
                "setting": "MIX-CT-MRI",
                "method": "cyclegan",
                "split": k,
                "sources": "MRI",
                "mse": base + rng.normal(0, 1),
            },
            {
                "setting": "PURE-CT",
                "method": "target_only",
                "split": k,
                "sources": "",
                "mse": base + 0.01 * rng.normal(),
            },
        ]
    df = pd.DataFrame(rows)
    sig = significance(df, "mse", "duiit", alpha=0.1).set_index("vs_method")
    assert set(sig.index) == {"cyclegan", "target_only"}
    assert (sig["verdict"] == "ours better").all() and (sig["test"] == "paired").all()
    assert (
        significance(df, "mse", "duiit", alpha=0.1, lower_is_better=False)["verdict"]
        .eq("ours worse")
        .all()
    )
    s = summary(df, ["mse"]).set_index("method")
    assert s.loc["duiit", "splits"] == 6
    assert s.loc["duiit", "mse_std"] == pytest.approx(df[df.method == "duiit"].mse.std())


def test_metrics_known_values() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 3.0]))
    assert m["mse"] == pytest.approx(5 / 3) and m["mae"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - 5 / (8 / 3))
    c = classification_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert c["accuracy"] == 0.75
    assert c["macro_f1"] == pytest.approx(np.mean([1.0, 2 / 3, 2 / 3]))


class _Identity(nn.Module):
    """Features = the 4 pixels of a 2x2 'image', mapped back to their original scale."""

    num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) * 2 - 1).double()


def test_fid_matches_closed_form_for_gaussians() -> None:
    g = torch.Generator().manual_seed(0)
    n = 20_000
    mu1, s1 = torch.zeros(4), torch.full((4,), 0.1)
    mu2, s2 = torch.tensor([0.2, -0.1, 0.0, 0.1]), torch.tensor([0.2, 0.1, 0.05, 0.1])
    a = (mu1 + s1 * torch.randn(n, 4, generator=g)).reshape(n, 1, 2, 2)
    b = (mu2 + s2 * torch.randn(n, 4, generator=g)).reshape(n, 1, 2, 2)
    # Diagonal covariances: ||mu1 - mu2||^2 + sum(s1^2 + s2^2 - 2 s1 s2).
    closed = float(((mu1 - mu2) ** 2).sum() + (s1**2 + s2**2 - 2 * s1 * s2).sum())
    assert fid(a, b, _Identity()) == pytest.approx(closed, rel=0.02)
    assert fid(a, a[torch.randperm(n, generator=g)], _Identity()) == pytest.approx(0, abs=1e-3)


def test_inception_scores_explain_what_is_missing(tmp_path) -> None:
    from duiit.errors import DuiitError
    from duiit.evaluation.quality import inception_scores

    images = torch.zeros(4, 1, 32, 32)
    with pytest.raises(DuiitError, match="Inception weights .* not found"):
        inception_scores(images, images, tmp_path / "none.pth")
    (tmp_path / "w.pth").write_bytes(b"not really weights")
    try:
        import torch_fidelity  # noqa: F401
        import torchvision  # noqa: F401
    except Exception:  # the CPU-only torch here: the extra cannot be installed
        with pytest.raises(DuiitError, match=r"pip install 'duiit\[inception\]'"):
            inception_scores(images, images, tmp_path / "w.pth")
    else:
        pytest.skip("torch-fidelity is installed here; this test covers its absence only")


def test_claims_verdicts_q_and_untestable_rows() -> None:
    """A clear win is `reproduced` with its BH q; a comparison with no p-value (identical
    values on every split) is inconclusive and left out of the correction; ours is never
    compared with itself (a PURE setting is not a MIX-* claim)."""
    from duiit.report.claims import claims_table

    rows = []
    for k in range(5):
        rows += [
            {"setting": "PURE-CT", "method": "target_only", "split": k, "mse": 100.0 + k},
            {"setting": "MIX-CT-MRI", "method": "duiit", "split": k, "mse": 50.0 + k % 2},
            {"setting": "MIX-CT-MRI", "method": "cyclegan", "split": k, "mse": 50.0 + k % 2},
        ]
    table = claims_table(pd.DataFrame(rows), "duiit", 0.1).set_index("claim")
    win, tie = table.loc["MIX-* beat PURE-CT"], table.loc["DUIIT beats CycleGAN"]
    assert win["verdict"] == "reproduced" and win["q (BH)"] == pytest.approx(win["p"])
    assert np.isnan(tie["p"]) and np.isnan(tie["q (BH)"]) and tie["verdict"] == "inconclusive"
    assert claims_table(pd.DataFrame(rows), "target_only", 0.1).empty


def test_selected_steps_reads_the_kept_checkpoint(tmp_path) -> None:
    """scripts/selected_steps.py: the first lowest val_selection of the last stage, per run
    (the loop keeps a checkpoint only when the selection strictly improves)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "selected_steps.py"
    spec = importlib.util.spec_from_file_location("selected_steps", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for split, values in (("split-00", [0.9, 0.5, 0.5, 0.7]), ("split-01", [0.4, 0.6, 0.3, 0.3])):
        run = tmp_path / "runs" / "MIX-CT-MRI" / "duiit" / split
        run.mkdir(parents=True)
        rows = [("pretrain", 50, "val_selection", 0.01)]  # an earlier stage: ignored
        rows += [("duiit", 50 * (i + 1), "val_selection", v) for i, v in enumerate(values)]
        rows += [("duiit", 200, "pred", 0.0)]
        pd.DataFrame(rows, columns=["stage", "step", "name", "value"]).to_csv(
            run / "metrics.csv", index=False
        )
    row = module.selected_steps(tmp_path).loc[("MIX-CT-MRI", "duiit")]
    assert (row["runs"], row["min"], row["max"], row["of"]) == (2, 100, 150, 200)
