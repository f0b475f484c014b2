"""The paper's claims, each tested on an experiment's runs, with a verdict.

One row per (claim, setting or source): ours and the comparison (mean ± std over splits),
the t-test (paired when both ran on the same splits, Welch otherwise), p, the Benjamini-
Hochberg q over the whole table (many claims are tested at once), and a verdict at `alpha`:
`reproduced` (the claimed direction, p < alpha), `contradicted` (the opposite direction,
p < alpha) or `inconclusive` (p >= alpha: these splits cannot tell).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from duiit.evaluation.stats import ttest
from duiit.report.tables import AUGMENTATIONS, PAPER_BASELINES, mean_std, primary_metric

BASELINES = tuple(m for m in PAPER_BASELINES if m != "target_only")
NAMES = {
    "transfer": "TL",
    "multitask": "MTL",
    "dann": "DANN",
    "cyclegan": "CycleGAN",
    "simple_augment": "Simple Augment",
    "autoaugment": "AutoAugment",
    "random_erasing": "Random Erasing",
}


def _series(results: pd.DataFrame, setting: str, method: str, column: str) -> pd.Series:
    part = results[(results["setting"] == setting) & (results["method"] == method)]
    return part.set_index("split")[column].dropna() if column in part else pd.Series(dtype=float)


def _row(
    claim: str,
    where: str,
    mine: pd.Series,
    theirs: pd.Series,
    vs: str,
    ours_lower_claimed: bool,
    alpha: float,
) -> dict[str, object] | None:
    """Compare ours (`mine`) with `theirs`; the claim is that ours is lower (or higher)."""
    if len(mine) < 2 or len(theirs) < 2:
        return None
    t = ttest(mine, theirs)  # mean_diff = theirs - ours
    claimed = t.mean_diff > 0 if ours_lower_claimed else t.mean_diff < 0
    verdict = "inconclusive" if not t.p < alpha else ("reproduced" if claimed else "contradicted")
    return {
        "claim": claim,
        "where": where,
        "ours": mean_std(mine.mean(), mine.std(ddof=1)),
        "vs": vs,
        "theirs": mean_std(theirs.mean(), theirs.std(ddof=1)),
        "diff (theirs - ours)": t.mean_diff,
        "test": f"{t.test} t, n={t.n}",
        "p": t.p,
        "verdict": verdict,
    }


def claims_table(results: pd.DataFrame, ours: str, alpha: float) -> pd.DataFrame:
    """Every paper claim these runs can test (see the module doc for the columns)."""
    metric, lower = primary_metric(results)
    pure = [s for s in results["setting"].unique() if s.startswith("PURE")]
    ran = results.loc[results["method"] == ours, "setting"].unique()
    settings = sorted((s for s in ran if s not in pure), key=len)  # the claims are about MIX-*
    pure_setting = pure[0] if pure else None
    rows: list[dict[str, object] | None] = []
    mine = {s: _series(results, s, ours, metric) for s in settings}
    if pure_setting is not None:
        floor = _series(results, pure_setting, "target_only", metric)
        for s in settings:
            rows.append(
                _row(
                    "MIX-* beat PURE-CT",
                    s,
                    mine[s],
                    floor,
                    f"target_only ({pure_setting})",
                    lower,
                    alpha,
                )
            )
    if settings:
        widest = settings[-1]
        if widest.count("-") >= 3:  # a setting with two or more sources
            for s in settings[:-1]:
                rows.append(
                    _row(
                        f"{widest} is best",
                        widest,
                        mine[widest],
                        mine[s],
                        f"{ours} ({s})",
                        lower,
                        alpha,
                    )
                )
            if pure_setting is not None:
                rows.append(
                    _row(
                        f"{widest} is best",
                        widest,
                        mine[widest],
                        floor,
                        f"target_only ({pure_setting})",
                        lower,
                        alpha,
                    )
                )
    for other in (*BASELINES, *AUGMENTATIONS):
        for s in settings:
            where = pure_setting if other in AUGMENTATIONS else s
            if where is None:
                continue
            theirs = _series(results, where, other, metric)
            rows.append(
                _row(
                    f"DUIIT beats {NAMES[other]}",
                    s,
                    mine[s],
                    theirs,
                    f"{other} ({where})",
                    lower,
                    alpha,
                )
            )
    for s in settings:
        for col in sorted(
            c for c in results.columns if c.startswith("task_fid_") and "raw" not in c
        ):
            source = col.removeprefix("task_fid_")
            rows.append(
                _row(
                    "DUIIT has worse FID than CycleGAN (task FID)",
                    f"{s}, {source}",
                    _series(results, s, ours, col),
                    _series(results, s, "cyclegan", col),
                    "cyclegan",
                    False,
                    alpha,
                )
            )
            is_col = f"is_mean_{source}"
            rows.append(
                _row(
                    "DUIIT has better IS than CycleGAN",
                    f"{s}, {source}",
                    _series(results, s, ours, is_col),
                    _series(results, s, "cyclegan", is_col),
                    "cyclegan",
                    False,
                    alpha,
                )
            )
    table = pd.DataFrame([r for r in rows if r is not None])
    if not table.empty:
        # A test without a p-value (e.g. identical values on every split) is inconclusive
        # and takes no part in the correction.
        tested = table["p"].notna()
        q = pd.Series(np.nan, index=table.index)
        if tested.any():
            q[tested] = false_discovery_control(table.loc[tested, "p"])
        table.insert(table.columns.get_loc("p") + 1, "q (BH)", q)
    return table


def claims_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: how many of its rows reproduced, contradicted, were inconclusive,
    and the overall verdict (reproduced or contradicted only when every row agrees)."""
    rows = []
    for claim, g in table.groupby("claim", sort=False):
        counts = g["verdict"].value_counts()
        n = len(g)
        rep, con = int(counts.get("reproduced", 0)), int(counts.get("contradicted", 0))
        overall = (
            "reproduced"
            if rep == n
            else "contradicted"
            if con == n
            else "mixed"
            if rep and con
            else "partly reproduced"
            if rep
            else "partly contradicted"
            if con
            else "inconclusive"
        )
        rows.append(
            {
                "claim": claim,
                "tests": n,
                "reproduced": rep,
                "contradicted": con,
                "inconclusive": n - rep - con,
                "overall": overall,
                "median p": float(g["p"].median()),
            }
        )
    return pd.DataFrame(rows)
