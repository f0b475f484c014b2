"""The one place that decides a verdict over repeated random splits.

The splits of an experiment resample the same patients (with the default fractions the
training sets of two splits share ~77 % of their patients), so the per-split differences
between two methods are not independent and the plain paired t-test understates their
variance. The default test is therefore Nadeau & Bengio's (2003) corrected resampled
t-test: the variance of the per-split differences is multiplied by (1/n + n_test/n_train)
instead of 1/n. The Wilcoxon signed-rank test on the same differences is reported beside it
as a robustness check (split MSEs are heavy-tailed: one misjudged child moves a split by
hundreds). Tests pair on the splits both methods ran on; with fewer than two shared splits
there is no test. Verdicts are decided on the Benjamini-Hochberg q of the family of tests a
table holds, never on a raw p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

VERDICTS = ("reproduced", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Comparison:
    """Two methods' per-split values, paired on the splits both have."""

    n: int  # shared splits
    mean_diff: float  # other - ours (positive: ours has the lower value)
    t: float  # corrected resampled t
    p: float  # its two-sided p (NaN: no test possible)
    correction: float  # variance factor over the plain paired t: 1 + n * n_test / n_train
    p_wilcoxon: float  # Wilcoxon signed-rank p on the same differences
    se: float = math.nan  # corrected standard error of mean_diff

    def detectable(self, alpha: float, power: float = 0.8) -> float:
        """The smallest true mean difference these splits would call at `alpha` (two-sided)
        with probability `power`, given the spread of the differences seen: what an
        inconclusive test could have found. A lower bound for a verdict on a family's q,
        which needs a p below alpha."""
        if not self.se > 0:
            return math.nan
        df = self.n - 1
        return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * self.se)


def corrected_se(diff: np.ndarray, ratio: float) -> float:
    """The corrected standard error of the mean per-split difference (Nadeau & Bengio):
    sqrt((1/n + ratio) * var), ratio = n_test/n_train; NaN below two splits."""
    n = len(diff)
    if n < 2:
        return math.nan
    return math.sqrt((1.0 / n + ratio) * float(np.var(diff, ddof=1)))


def corrected_ttest(diff: np.ndarray, ratio: float) -> tuple[float, float]:
    """(t, two-sided p) of the corrected resampled t-test on per-split differences:
    t = mean / corrected_se, n - 1 degrees of freedom."""
    se = corrected_se(diff, ratio)
    if not se > 0:
        return math.nan, math.nan
    t = float(np.mean(diff)) / se
    return t, float(2 * stats.t.sf(abs(t), df=len(diff) - 1))


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p; NaN when every difference is zero or n < 2."""
    if len(diff) < 2 or not np.any(diff != 0):
        return math.nan
    return float(stats.wilcoxon(diff).pvalue)


TRANSLATION_SCORES = ("task_fid_", "consistency_", "fid_inception_", "is_mean_")
RAW_FID = "task_fid_raw_"  # a source's task FID before translation, under the split's reference


def per_split(runs: pd.DataFrame, column: str) -> pd.Series:
    """One method's runs' `column`, indexed for `compare`: by split, and a score of one
    source's translations by (split, that source's raw task FID). The raw FID is the
    split's quality reference's own number, the same in every run it scored; a reference
    trained again (a grid resumed from records without its weights, on another CPU:
    results/README.md) gives another, so two runs' translation scores pair only where one
    reference read both."""
    source = next((column.removeprefix(p) for p in TRANSLATION_SCORES if column.startswith(p)), "")
    raw = RAW_FID + source
    keys = ["split", raw] if source and raw != column and raw in runs else ["split"]
    return runs.set_index(keys)[column]


def compare(ours: pd.Series, other: pd.Series, ratio: float) -> Comparison:
    """Compare two per-split series (indexed by split seed, or as `per_split` gives them) on
    the splits both have; `ratio` is n_test / n_train of the splits (`holdout_ratio`)."""
    shared = ours.dropna().index.intersection(other.dropna().index)
    diff = other.loc[shared].to_numpy(float) - ours.loc[shared].to_numpy(float)
    t, p = corrected_ttest(diff, ratio)
    n = len(shared)
    return Comparison(
        n=n,
        mean_diff=float(diff.mean()) if n else math.nan,
        t=t,
        p=p,
        correction=1.0 + n * ratio,
        p_wilcoxon=wilcoxon_p(diff),
        se=corrected_se(diff, ratio),
    )


@dataclass(frozen=True)
class Equivalence:
    """Is `other` as good as `reference` within a margin? The corrected interval of the
    per-split difference (other - reference) against +-margin (two one-sided tests at
    (1 - level) / 2 each: the interval inside the margin shows equivalence)."""

    n: int
    mean_diff: float
    low: float
    high: float
    margin: float
    verdict: str  # equivalent / not equivalent: lower / not equivalent: higher / cannot tell

    def not_worse(self, lower_is_better: bool) -> bool | None:
        """The one-sided test on the worse side alone (non-inferiority): for an error the
        interval's upper end below +margin, for a score like accuracy its lower end above
        -margin. Equivalence needs both ends inside; a method lower in error beyond the
        margin is not equivalent, yet is not worse either. None: no interval (n < 2)."""
        if math.isnan(self.high):
            return None
        return bool(self.high < self.margin if lower_is_better else self.low > -self.margin)


def equivalence(
    reference: pd.Series, other: pd.Series, ratio: float, share: float = 0.1, level: float = 0.9
) -> Equivalence:
    """The `level` interval of the mean per-split difference with the corrected variance
    (1/n + ratio) * var, n - 1 degrees of freedom, against a margin of `share` of the
    reference's mean: `equivalent` when the interval lies inside +-margin, `not equivalent:
    lower` / `higher` when it lies wholly below -margin / above +margin (`other` beyond the
    margin in that direction: for an error, lower is a difference in its favour, which a
    reader deciding "not worse" must not read as a loss), otherwise `cannot tell` (too few
    or too noisy splits)."""
    shared = reference.dropna().index.intersection(other.dropna().index)
    diff = other.loc[shared].to_numpy(float) - reference.loc[shared].to_numpy(float)
    n = len(diff)
    margin = share * float(reference.loc[shared].mean()) if n else math.nan
    if n < 2:
        return Equivalence(
            n, float(diff.mean()) if n else math.nan, math.nan, math.nan, margin, "cannot tell"
        )
    half = stats.t.ppf(0.5 + level / 2, df=n - 1) * corrected_se(diff, ratio)
    low, high = float(diff.mean()) - half, float(diff.mean()) + half
    if -margin < low and high < margin:
        word = "equivalent"
    elif low >= margin:
        word = "not equivalent: higher"
    elif high <= -margin:
        word = "not equivalent: lower"
    else:
        word = "cannot tell"
    return Equivalence(n, float(diff.mean()), low, high, margin, word)


def holdout_ratio(results: pd.DataFrame) -> float:
    """n_test / n_train of the target split (median over runs: patient-level splits vary a
    little from split to split), the correction's overlap term."""
    ratio = results["n_test"].astype(float) / results["n_train"].astype(float)
    return float(ratio.median())


def bh(p: pd.Series) -> pd.Series:
    """Benjamini-Hochberg q of a family; tests without a p-value take no part (q NaN)."""
    q = pd.Series(np.nan, index=p.index)
    tested = p.notna()
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested].to_numpy(float))
    return q


def verdict(claim_holds: bool, q: float, alpha: float) -> str:
    """`reproduced` (the claimed direction, q < alpha), `contradicted` (the opposite
    direction, q < alpha) or `inconclusive` (q >= alpha or no test)."""
    if not q < alpha:
        return "inconclusive"
    return "reproduced" if claim_holds else "contradicted"


def summary(results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean and std over splits of each metric, per setting and method."""
    g = results.groupby(["setting", "method"], sort=False)[metrics]
    out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std"))
    out["splits"] = g.size()
    return out.reset_index()


def n_sources(sources: object) -> int:
    """How many source modalities a run's recorded `sources` ("MRI+PET"; "" or, read back
    from a CSV, NaN for none) holds."""
    return len(sources.split("+")) if isinstance(sources, str) and sources else 0


def setting_sources(results: pd.DataFrame) -> pd.Series:
    """Number of sources of each setting, from the recorded `sources` (never the names)."""
    return results.groupby("setting")["sources"].first().map(n_sources)


def setting_order(results: pd.DataFrame) -> list[str]:
    """The report's one order of settings: PURE first, then by number of sources, then by
    name."""
    n = setting_sources(results)
    return sorted(n.index, key=lambda s: (n[s], s))


def pure_setting(results: pd.DataFrame) -> str | None:
    """The setting whose runs used no source (the target-only floor), if the runs have one."""
    n = setting_sources(results)
    return str(n[n == 0].index[0]) if (n == 0).any() else None


def comparisons(
    results: pd.DataFrame,
    metric: str,
    ours: str = "duiit",
    alpha: float = 0.1,
    lower_is_better: bool = True,
) -> pd.DataFrame:
    """Ours, in each setting where it ran, against every other method of that setting and
    every method that ran without sources (the PURE setting): one family, BH-corrected, with
    the verdict `ours better` / `ours worse` / `inconclusive` decided on q."""
    ratio = holdout_ratio(results)
    series = {k: per_split(g, metric) for k, g in results.groupby(["setting", "method"])}
    pure = pure_setting(results)
    rows = []
    for setting in setting_order(results):
        if (setting, ours) not in series:
            continue
        mine = series[(setting, ours)]
        for (o_setting, o_method), theirs in series.items():
            if o_method == ours or o_setting not in (setting, pure):
                continue
            c = compare(mine, theirs, ratio)
            rows.append(
                {
                    "setting": setting,
                    "vs_setting": o_setting,
                    "vs_method": o_method,
                    "n": c.n,
                    "diff": c.mean_diff,
                    "t (corrected)": c.t,
                    "variance x": c.correction,
                    "p": c.p,
                    "p (Wilcoxon)": c.p_wilcoxon,
                    "better": c.mean_diff > 0 if lower_is_better else c.mean_diff < 0,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table.insert(table.columns.get_loc("p") + 1, "q (BH)", bh(table["p"]))
    words = {"reproduced": "ours better", "contradicted": "ours worse"}
    table["verdict"] = [
        words.get(verdict(b, q, alpha), "inconclusive")
        for b, q in zip(table.pop("better"), table["q (BH)"], strict=True)
    ]
    return table
