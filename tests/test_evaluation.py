"""Statistics, metrics and FID checked against known values and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import script_module
from scipy import stats
from torch import nn

from duiit.evaluation.metrics import classification_metrics, regression_metrics
from duiit.evaluation.quality import fid
from duiit.evaluation.stats import (
    compare,
    comparisons,
    equivalence,
    setting_order,
    summary,
    verdict,
)
from duiit.report.figures import row_label
from duiit.report.tables import learning_check, method_groups, split_table, translator_table


def test_corrected_resampled_ttest_matches_hand_computation() -> None:
    """Nadeau & Bengio: the variance of the differences times (1/n + n_test/n_train); with
    a ratio of 0 it is the plain paired t-test."""
    ours = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0], index=range(5))
    other = pd.Series([2.0, 2.0, 4.0, 4.0, 7.0], index=range(5))
    c = compare(ours, other, ratio=0.156)
    # differences 1,0,1,0,2: mean 0.8, variance 0.7
    t = 0.8 / np.sqrt((1 / 5 + 0.156) * 0.7)
    assert c.n == 5 and c.mean_diff == pytest.approx(0.8)
    assert c.t == pytest.approx(t, rel=1e-12)
    assert c.p == pytest.approx(2 * stats.t.sf(t, df=4), rel=1e-12)
    assert c.correction == pytest.approx(1 + 5 * 0.156)
    plain = compare(ours, other, ratio=0.0)
    assert plain.p == pytest.approx(stats.ttest_rel(other, ours).pvalue, rel=1e-12)
    assert c.p > plain.p  # the correction only ever widens
    assert c.p_wilcoxon == pytest.approx(stats.wilcoxon([1.0, 0, 1, 0, 2]).pvalue)


def test_pairs_only_on_shared_splits_and_never_falls_back_to_welch() -> None:
    ours = pd.Series([1.0, 1.2, 0.9, 1.1], index=[0, 1, 2, 3])
    other = pd.Series([1.5, 1.9, 1.4, 2.0], index=[2, 3, 4, 5])
    c = compare(ours, other, ratio=0.1)
    assert c.n == 2 and c.mean_diff == pytest.approx(((1.5 - 0.9) + (1.9 - 1.1)) / 2)
    disjoint = compare(ours, pd.Series([1.5, 1.9], index=[7, 8]), ratio=0.1)
    assert disjoint.n == 0 and np.isnan(disjoint.p)


def _results(values: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    """Runs of (setting, method, sources) with one MSE per split; 100 train / 15 test images."""
    rows = [
        {
            "setting": setting,
            "method": method,
            "sources": sources,
            "split": k,
            "n_train": 100,
            "n_test": 15,
            "mse": v,
        }
        for (setting, method, sources), vals in values.items()
        for k, v in enumerate(vals)
    ]
    return pd.DataFrame(rows)


def test_verdicts_follow_bh_q_not_raw_p() -> None:
    """One comparison is significant on its own (p < 0.1) but not among six (q > 0.1): its
    verdict is inconclusive. Without the correction it would read `ours better`."""
    ours = [100.0, 104, 98, 103, 99, 101, 97, 102, 100, 105]
    better = [v + d for v, d in zip(ours, [9, 1, 12, 0, 8, 2, 11, 3, 7, 4], strict=True)]
    noise = [
        [v + d for v, d in zip(ours, np.roll([5, -4, 3, -6, 2, -1, 4, -3, 0, 1], j), strict=True)]
        for j in range(5)
    ]
    values = {("MIX-CT-MRI", "duiit", "MRI"): ours, ("MIX-CT-MRI", "cyclegan", "MRI"): better}
    values |= {("MIX-CT-MRI", f"other{j}", "MRI"): n for j, n in enumerate(noise)}
    table = comparisons(_results(values), "mse", "duiit", alpha=0.1).set_index("vs_method")
    row = table.loc["cyclegan"]
    assert row["p"] < 0.1 < row["q (BH)"], (row["p"], row["q (BH)"])
    assert row["verdict"] == "inconclusive"
    assert set(table["verdict"]) == {"inconclusive"}
    assert row["variance x"] == pytest.approx(1 + 10 * 15 / 100)
    assert verdict(True, row["p"], 0.1) == "reproduced"  # what the raw p would have said


def test_the_detectable_difference_is_the_one_the_test_would_call() -> None:
    """At 50 % power the detectable difference is the one whose corrected t lands exactly on
    the alpha line (p = alpha, on these splits' spread); 80 % asks for more; the claims table
    carries it so an inconclusive row says what it could have found."""
    noise = pd.Series([3.0, -5, 1, 4, -2, 0, -1, 6, -4, -2])
    ours = pd.Series(np.full(10, 100.0))
    ratio = 15 / 100
    half = compare(ours, ours + noise, ratio).detectable(0.1, power=0.5)
    at_line = compare(ours, ours + noise - noise.mean() + half, ratio)
    assert at_line.p == pytest.approx(0.1)
    assert at_line.detectable(0.1) > half > 0
    from duiit.report.claims import claims_table

    results = _results(
        {
            ("PURE-CT", "target_only", ""): list(ours + noise),
            ("MIX-CT-MRI", "duiit", "MRI"): list(ours),
        }
    )
    row = claims_table(results, "duiit", 0.1).set_index("claim").loc["MIX-* beat PURE-CT"]
    assert row["detectable"] == pytest.approx(compare(ours, ours + noise, ratio).detectable(0.1))


def test_significance_verdicts_and_summary() -> None:
    rng = np.random.default_rng(0)
    values: dict[tuple[str, str, str], list[float]] = {}
    base = rng.normal(100, 10, 8)
    values[("MIX-CT-MRI", "duiit", "MRI")] = list(base - 20 + rng.normal(0, 1, 8))
    values[("MIX-CT-MRI", "cyclegan", "MRI")] = list(base + rng.normal(0, 1, 8))
    values[("PURE-CT", "target_only", "")] = list(base + 0.01 * rng.normal(size=8))
    df = _results(values)
    sig = comparisons(df, "mse", "duiit", alpha=0.1).set_index("vs_method")
    assert set(sig.index) == {"cyclegan", "target_only"}
    assert (sig["verdict"] == "ours better").all() and (sig["n"] == 8).all()
    flipped = comparisons(df, "mse", "duiit", alpha=0.1, lower_is_better=False)
    assert flipped["verdict"].eq("ours worse").all()
    s = summary(df, ["mse"]).set_index("method")
    assert s.loc["duiit", "splits"] == 8
    assert s.loc["duiit", "mse_std"] == pytest.approx(df[df.method == "duiit"].mse.std())


def test_settings_come_from_recorded_sources_not_names() -> None:
    """Setting names that say nothing (or mislead) about their sources: the order, the PURE
    floor and the widest setting still come from the `sources` column."""
    from duiit.report.claims import claims_table

    rng = np.random.default_rng(1)
    v = lambda m: list(m + rng.normal(0, 5, 6))  # noqa: E731
    values = {
        ("floor", "target_only", ""): v(300),
        ("a-b-c-d", "duiit", "MRI"): v(200),
        ("x", "duiit", "MRI+PET"): v(150),
        ("y-y", "duiit", "PET"): v(180),
    }
    results = _results(values)
    assert setting_order(results) == ["floor", "a-b-c-d", "y-y", "x"]
    table = claims_table(results, "duiit", 0.1)
    best = table[table["claim"] == "x is best"]
    assert sorted(best["vs"]) == ["duiit (a-b-c-d)", "duiit (y-y)"]  # not the floor again
    tests = list(zip(table["where"], table["vs"], strict=True))
    assert len(tests) == len(set(tests))  # every test once in the family
    assert (table["claim"] == "MIX-* beat floor").sum() == 3


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


def test_translation_scores_pair_only_runs_one_quality_reference_scored(tmp_path) -> None:
    """A split's quality reference trained again (a grid resumed from records without its
    weights) reads translations otherwise, and its raw-source task FID tells it apart: the
    test error still pairs on every split, a translation score only where one reference
    scored both runs, in the report's tests and its claims; the audit names the split. Runs
    of one reference that score other sources (MIX-CT-PET beside MIX-CT-MRI) are not a mix."""
    from duiit.evaluation.results import audit
    from duiit.report.claims import claims_table

    results = _results(
        {
            ("MIX-CT-MRI", "duiit", "MRI"): [50.0, 52.0, 51.0, 53.0],
            ("MIX-CT-MRI", "cyclegan", "MRI"): [60.0, 63.0, 61.0, 64.0],
            ("MIX-CT-PET", "duiit", "PET"): [55.0, 56.0, 57.0, 58.0],
        }
    )
    nan = float("nan")
    results["task_fid_MRI"] = [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0, 9.0, *[nan] * 4]
    # split 3's cyclegan was scored by another reference
    results["task_fid_raw_MRI"] = [10.0, 11.0, 12.0, 13.0, 10.0, 11.0, 12.0, 99.0, *[nan] * 4]
    results["task_fid_raw_PET"] = [*[nan] * 8, 20.0, 21.0, 22.0, 23.0]
    results["run_dir"] = [str(tmp_path / f"run{i}") for i in range(12)]
    fid = comparisons(results, "task_fid_MRI").iloc[0]
    assert fid["n"] == 3 and fid["diff"] == pytest.approx(1.0)  # without split 3: (1+1+1)/3
    assert comparisons(results, "mse").iloc[0]["n"] == 4
    claim = claims_table(results, "duiit", 0.1).set_index("claim")
    assert claim.loc["DUIIT has worse FID than CycleGAN (task FID)", "n"] == 3
    assert claim.loc["DUIIT beats CycleGAN", "n"] == 4
    notes = [n for n in audit(tmp_path, results).notes if "quality reference" in n]
    assert len(notes) == 1 and notes[0].startswith("split(s) 3: MRI translations scored by")
    results.loc[7, "task_fid_raw_MRI"] = 13.0
    assert comparisons(results, "task_fid_MRI").iloc[0]["n"] == 4
    assert not any("quality reference" in n for n in audit(tmp_path, results).notes)


def test_claims_verdicts_q_and_untestable_rows() -> None:
    """A clear win is `reproduced` with its BH q; a comparison with no p-value (identical
    values on every split) is inconclusive and left out of the correction; ours is never
    compared with itself (a PURE setting is not a MIX-* claim)."""
    from duiit.report.claims import claims_table

    results = _results(
        {
            ("PURE-CT", "target_only", ""): [100.0 + k for k in range(5)],
            ("MIX-CT-MRI", "duiit", "MRI"): [50.0 + k % 2 for k in range(5)],
            ("MIX-CT-MRI", "cyclegan", "MRI"): [50.0 + k % 2 for k in range(5)],
        }
    )
    table = claims_table(results, "duiit", 0.1).set_index("claim")
    win, tie = table.loc["MIX-* beat PURE-CT"], table.loc["DUIIT beats CycleGAN"]
    assert win["verdict"] == "reproduced" and win["q (BH)"] == pytest.approx(win["p"])
    assert np.isnan(tie["p"]) and np.isnan(tie["q (BH)"]) and tie["verdict"] == "inconclusive"
    assert claims_table(results, "target_only", 0.1).empty


def test_selected_steps_reads_the_kept_checkpoint(tmp_path) -> None:
    """scripts/selected_steps.py: the first lowest val_selection of the last stage, per run
    (the loop keeps a checkpoint only when the selection strictly improves)."""
    module = script_module("selected_steps")
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


def test_equivalence_interval_by_hand_and_its_three_verdicts() -> None:
    """The 90 % interval of the mean difference with the corrected variance, against ±10 %
    of the reference's mean: inside (equivalent), wholly above or below (not equivalent,
    with its direction: a lower error is not a loss), or straddling the margin (cannot
    tell)."""
    ref = pd.Series([100.0, 110, 90, 105, 95], index=range(5))
    near = ref + pd.Series([1.0, -2, 3, 0, -1], index=range(5))
    e = equivalence(ref, near, ratio=0.156)
    diff = np.array([1.0, -2, 3, 0, -1])
    half = stats.t.ppf(0.95, df=4) * np.sqrt((1 / 5 + 0.156) * diff.var(ddof=1))
    assert (e.n, e.margin) == (5, pytest.approx(10.0))
    assert (e.low, e.high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert e.verdict == "equivalent"
    assert e.not_worse(lower_is_better=True) and e.not_worse(lower_is_better=False)
    higher = equivalence(ref, ref * 1.5, ratio=0.156)
    assert higher.verdict == "not equivalent: higher"
    # higher beyond the margin: worse for an error, not worse for a score like accuracy
    assert (higher.not_worse(True), higher.not_worse(False)) == (False, True)
    lower = equivalence(ref, ref * 0.7, ratio=0.156)
    assert lower.verdict == "not equivalent: lower"
    assert (lower.not_worse(True), lower.not_worse(False)) == (True, False)
    noisy = ref + pd.Series([30.0, -25, 20, -30, 10], index=range(5))
    assert equivalence(ref, noisy, ratio=0.156).verdict == "cannot tell"
    assert not equivalence(ref, noisy, ratio=0.156).not_worse(True)
    # cannot tell whether equivalent, yet its upper end is inside: lower, noisily
    assert equivalence(ref, noisy - 30, ratio=0.156).verdict == "cannot tell"
    assert equivalence(ref, noisy - 30, ratio=0.156).not_worse(True)
    assert equivalence(ref.iloc[:1], ref.iloc[:1], ratio=0.156).not_worse(True) is None
    assert equivalence(ref, near, ratio=0.0).high < e.high  # the correction only widens


def test_translator_table_pairs_each_translator_variant_with_its_method() -> None:
    """`duiit[translator=fastcut]` is set beside `duiit` in its setting (with minutes per
    run); a variant whose plain method did not run, or with other settings, is not."""
    runs = _results(
        {
            ("MIX", "duiit", "MRI"): [100.0, 110, 90, 105, 95],
            ("MIX", "duiit[translator=fastcut]", "MRI"): [101.0, 108, 93, 105, 94],
            ("MIX", "cyclegan[translator=cut]", "MRI"): [100.0, 100, 100, 100, 100],
            ("MIX", "duiit[lambda_pred=0.01]", "MRI"): [100.0, 100, 100, 100, 100],
        }
    )
    runs["fit_seconds"] = np.where(runs["method"] == "duiit", 600.0, 120.0)
    table = translator_table(runs)
    assert table["method"].tolist() == ["duiit[translator=fastcut]"]
    row = table.iloc[0]
    assert (row["vs"], row["n"], row["verdict"], row["not worse"]) == (
        "duiit",
        5,
        "equivalent",
        "yes",
    )
    assert (row["min/run (vs)"], row["min/run (this)"]) == (10.0, 2.0)
    # a resumed run records no fit time (its clock saw its last sitting only): left out
    first = (runs["method"] == "duiit") & (runs["split"] == 0)
    resumed = translator_table(runs.assign(fit_seconds=runs["fit_seconds"].mask(first)))
    assert (resumed.iloc[0]["min/run (vs)"], resumed.iloc[0]["n"]) == (10.0, 5)
    # A grid under way: the reference has a split more, with an outlier; the means shown
    # are over the splits the test pairs, and every row has the same columns.
    extra = runs[runs["method"] == "duiit"].iloc[[0]].assign(split=5, mse=900.0)
    extra_cut = extra.assign(method="cyclegan", mse=100.0)
    more = pd.concat(
        [
            runs,
            extra,
            extra_cut,
            runs[runs["method"] == "cyclegan[translator=cut]"].assign(method="cyclegan"),
        ]
    )
    table = translator_table(more).set_index("method")
    assert list(table.columns) == list(translator_table(runs).set_index("method").columns)
    assert table.loc["duiit[translator=fastcut]", "vs mse"] == "100 ± 7.91"
    assert table.loc["cyclegan[translator=cut]", "n"] == 5


def test_translator_table_says_not_worse_by_the_metric_s_direction() -> None:
    """For accuracy (higher is better) a translator that halves it is worse, and one
    whose only run is on one split has no interval to judge: no word either way."""
    runs = _results(
        {
            ("MIX", "duiit", "MRI"): [0.80, 0.82, 0.78, 0.81, 0.79],
            ("MIX", "duiit[translator=fastcut]", "MRI"): [0.40, 0.41, 0.39, 0.40, 0.42],
            ("MIX", "cyclegan", "MRI"): [0.80, 0.82, 0.78, 0.81, 0.79],
            ("MIX", "cyclegan[translator=cut]", "MRI"): [0.81],
        }
    ).rename(columns={"mse": "accuracy"})
    runs["fit_seconds"] = 60.0
    table = translator_table(runs).set_index("method")
    assert table.loc["duiit[translator=fastcut]", "verdict"] == "not equivalent: lower"
    assert table.loc["duiit[translator=fastcut]", "not worse"] == "no"
    assert table.loc["cyclegan[translator=cut]", "not worse"] == ""
    higher = runs.assign(accuracy=np.where(runs["method"] == "duiit", runs["accuracy"] / 2, 0.8))
    assert (
        translator_table(higher).set_index("method").loc["duiit[translator=fastcut]", "not worse"]
        == "yes"
    )


def test_the_per_split_table_shows_each_split_and_the_mean_of_those_finished() -> None:
    """A method that has not run split 2 yet gets an empty cell there and the mean of the
    splits it ran; rows keep the report's setting order (the setting without sources
    first), columns the splits in order."""
    rows = [("MIX-CT-MRI", "MRI", "duiit", s, v) for s, v in [(0, 30.0), (1, 50.0)]]
    rows += [("PURE-CT", "", "target_only", s, v) for s, v in [(1, 20.0), (0, 10.0), (2, 60.0)]]
    columns = ["setting", "sources", "method", "split", "mse"]
    table = split_table(pd.DataFrame(rows, columns=columns))
    assert list(table.columns) == ["setting", "method", "split 0", "split 1", "split 2", "mean"]
    assert table.values.tolist() == [
        ["PURE-CT", "target_only", "10", "20", "60", "30"],
        ["MIX-CT-MRI", "duiit", "30", "50", "", "40"],
    ]
    # a method whose runs all lack a score (a diverged training) keeps an empty row
    rows += [("MIX-CT-MRI", "MRI", "dann", s, np.nan) for s in range(3)]
    table = split_table(pd.DataFrame(rows, columns=columns))
    assert table.values.tolist()[-1] == ["MIX-CT-MRI", "dann", "", "", "", ""]


def test_a_long_variant_name_is_a_row_label_of_one_option_a_line() -> None:
    """The translation grid's row labels: the method, then each option on its own line."""
    assert row_label("duiit") == "duiit"
    assert row_label("cyclegan[translator=fastcut, source_share=0.5]") == (
        "cyclegan\n[translator=fastcut,\nsource_share=0.5]"
    )


def test_report_groups_methods_by_what_they_are_not_by_their_settings() -> None:
    """The classical baseline and a DANN variant are baselines, not variants of ours: the
    demo's report once listed features_ridge under "Ablation: ours vs its variants"."""
    methods = [
        "duiit",
        "features_ridge",
        "target_only",
        "dann[domain_weight=0.1]",
        "cyclegan[translator=cut]",
        "simple_augment",
        "random_erasing[predictor.lr=0.001]",
        "duiit[translator=fastcut]",
        "cycada",
    ]
    baselines, augments, variants = method_groups(methods, "duiit")
    assert baselines == [
        "features_ridge",
        "target_only",
        "dann[domain_weight=0.1]",
        "cyclegan[translator=cut]",
    ]
    assert augments == ["simple_augment", "random_erasing[predictor.lr=0.001]"]
    assert variants == ["duiit[translator=fastcut]", "cycada"]


def test_the_report_says_which_methods_beat_neither_the_mean_nor_the_classical_baseline() -> None:
    """Each method's mean against the constant's and each slice baseline's on the same splits:
    one that is not below names itself with both numbers; one below them is not named; a
    method run on fewer splits is compared on those splits only; one classical baseline is
    not held to another."""
    rows = [("PURE-CT", "predict the mean", s, 100.0) for s in range(3)]
    rows += [("PURE-CT", "features_ridge", s, v) for s, v in enumerate([60.0, 70.0, 80.0])]
    rows += [("PURE-CT", "features_boost", s, v) for s, v in enumerate([55.0, 65.0, 75.0])]
    rows += [("PURE-CT", "target_only", s, v) for s, v in enumerate([50.0, 60.0, 70.0])]
    rows += [("MIX-CT-MRI", "duiit", s, v) for s, v in enumerate([90.0, 120.0])]  # 105 vs 100
    # 2 splits: 75 against the ridge's 65 there (its 3-split mean, 70, would hide nothing)
    rows += [("MIX-CT-MRI", "cyclegan", s, v) for s, v in enumerate([70.0, 80.0])]
    df = pd.DataFrame(rows, columns=["setting", "method", "split", "mse"])
    constants = df[df["method"] == "predict the mean"]
    results = df[df["method"] != "predict the mean"]
    floor, boost, ridge = learning_check(results, constants, "mse", lower=True)
    assert floor.startswith("Against predict the mean (mse, mean over the same splits): 1 of 5")
    assert "duiit in MIX-CT-MRI (105 against 100)" in floor
    assert "target_only" not in floor and "cyclegan" not in floor
    assert "2 of 3 method rows are not below it" in ridge
    assert "duiit in MIX-CT-MRI (105 against 65)" in ridge
    assert "cyclegan in MIX-CT-MRI (75 against 65)" in ridge
    assert "target_only" not in ridge
    # the ridge (70) is above the trees (65) and not named: image counts against image counts
    assert "2 of 3 method rows are not below it" in boost and "features_ridge" not in boost
    assert "duiit in MIX-CT-MRI (105 against 60)" in boost
    counts = results["method"].isin(["features_ridge", "features_boost"])
    better = results.assign(mse=results["mse"].where(counts, 1.0))
    assert learning_check(better, constants, "mse", lower=True) == [
        "Against predict the mean (mse, mean over the same splits): every method is below it.",
        "Against features_boost (mse, mean over the same splits): every method is below it.",
        "Against features_ridge (mse, mean over the same splits): every method is below it.",
    ]
