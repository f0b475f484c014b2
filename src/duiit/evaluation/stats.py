"""Mean ± std over splits and t-tests of ours against every other method.

Methods that ran on the same split seeds share their test patients, so their errors are
paired per split (paired t-test); otherwise the samples are independent (Welch's t-test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class TTest:
    test: str  # "paired" or "welch"
    n: int
    mean_diff: float  # other - ours (positive: ours has the lower value)
    t: float
    p: float


def ttest(ours: pd.Series, other: pd.Series) -> TTest:
    """Compare two per-split metric series indexed by split seed."""
    shared = ours.index.intersection(other.index)
    if len(shared) >= 2 and len(shared) == len(ours) == len(other):
        a, b = other.loc[shared].to_numpy(float), ours.loc[shared].to_numpy(float)
        res = stats.ttest_rel(a, b)
        return TTest(
            "paired", len(shared), float(np.mean(a - b)), float(res.statistic), float(res.pvalue)
        )
    a, b = other.to_numpy(float), ours.to_numpy(float)
    res = stats.ttest_ind(a, b, equal_var=False)
    return TTest(
        "welch",
        min(len(a), len(b)),
        float(a.mean() - b.mean()),
        float(res.statistic),
        float(res.pvalue),
    )


def summary(results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean and std over splits of each metric, per setting and method."""
    g = results.groupby(["setting", "method"], sort=False)[metrics]
    out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std"))
    out["splits"] = g.size()
    return out.reset_index()


def significance(
    results: pd.DataFrame,
    metric: str,
    ours: str = "duiit",
    alpha: float = 0.1,
    lower_is_better: bool = True,
) -> pd.DataFrame:
    """Ours (in each setting where it ran) against every other (setting, method) that ran on
    the same target: the difference, the test used, p, and a verdict at `alpha`."""
    rows = []
    series = {k: g.set_index("split")[metric] for k, g in results.groupby(["setting", "method"])}
    for (setting, method), mine in series.items():
        if method != ours:
            continue
        for (o_setting, o_method), theirs in series.items():
            if o_method == ours or (
                o_setting != setting and o_method not in _target_only_methods(results)
            ):
                continue
            if len(mine) < 2 or len(theirs) < 2:
                continue
            t = ttest(mine, theirs)
            better = t.mean_diff > 0 if lower_is_better else t.mean_diff < 0
            verdict = (
                ("ours better" if better else "ours worse")
                if t.p < alpha
                else "no significant difference"
            )
            rows.append(
                {
                    "setting": setting,
                    "vs_setting": o_setting,
                    "vs_method": o_method,
                    "test": t.test,
                    "n": t.n,
                    "diff": t.mean_diff,
                    "t": t.t,
                    "p": t.p,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(rows)


def _target_only_methods(results: pd.DataFrame) -> set[str]:
    """Methods that ran without sources (compared against ours in every setting)."""
    return set(results.loc[results["sources"] == "", "method"])
