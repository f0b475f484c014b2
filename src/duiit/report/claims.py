"""The paper's claims, each tested on an experiment's runs, with a verdict.

One row per (claim, setting or source): ours and the comparison (mean ± std over splits),
the corrected resampled t-test paired on the splits both ran on (evaluation/stats.py), its p,
the Wilcoxon p beside it, the Benjamini-Hochberg q over the whole table (many claims are
tested at once; each test enters the family once), and a verdict decided on q at `alpha`:
`reproduced` (the claimed direction), `contradicted` (the opposite direction) or
`inconclusive` (q >= alpha: these splits cannot tell). `detectable`: the difference these
splits would have called at `alpha` with 80 % power, given the differences' spread, so an
inconclusive row says what effect it rules out, not only that it found none.
"""

from __future__ import annotations

import pandas as pd

from duiit.evaluation.stats import (
    bh,
    compare,
    holdout_ratio,
    per_split,
    pure_setting,
    setting_order,
    setting_sources,
    verdict,
)
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
    return per_split(part, column).dropna() if column in part else pd.Series(dtype=float)


def claims_table(results: pd.DataFrame, ours: str, alpha: float) -> pd.DataFrame:
    """Every paper claim these runs can test, each test once (see the module doc)."""
    metric, lower = primary_metric(results)
    ratio = holdout_ratio(results)
    pure = pure_setting(results)
    sources = setting_sources(results)
    ran = set(results.loc[results["method"] == ours, "setting"])
    settings = [s for s in setting_order(results) if s in ran and s != pure]  # MIX-* claims
    rows: list[dict[str, object]] = []

    def test(
        claim: str, where: str, setting: str, vs: tuple[str, str], column: str, lower_claimed: bool
    ) -> None:
        """Ours in `setting` against method vs[1] in setting vs[0] on `column`; the claim is
        that ours is lower (or higher)."""
        mine, theirs = _series(results, setting, ours, column), _series(results, *vs, column)
        if mine.empty or theirs.empty:
            return
        c = compare(mine, theirs, ratio)
        rows.append(
            {
                "claim": claim,
                "where": where,
                "ours": mean_std(mine.mean(), mine.std(ddof=1)),
                "vs": f"{vs[1]} ({vs[0]})",
                "theirs": mean_std(theirs.mean(), theirs.std(ddof=1)),
                "diff (theirs - ours)": c.mean_diff,
                "n": c.n,
                "t (corrected)": c.t,
                "p": c.p,
                "p (Wilcoxon)": c.p_wilcoxon,
                "detectable": c.detectable(alpha),
                "holds": c.mean_diff > 0 if lower_claimed else c.mean_diff < 0,
            }
        )

    for s in settings if pure is not None else []:
        test(f"MIX-* beat {pure}", s, s, (pure, "target_only"), metric, lower)
    widest = settings[-1] if settings else None
    if widest is not None and sources[widest] >= 2:
        for s in settings[:-1]:  # against PURE it is the claim above, not a second test
            test(f"{widest} is best", widest, widest, (s, ours), metric, lower)
    for other in (*BASELINES, *AUGMENTATIONS):
        for s in settings:
            where = pure if other in AUGMENTATIONS else s
            if where is not None:
                test(f"DUIIT beats {NAMES[other]}", s, s, (where, other), metric, lower)
    quality = sorted(c for c in results.columns if c.startswith("task_fid_") and "raw" not in c)
    for s in settings:
        for col in quality:
            source = col.removeprefix("task_fid_")
            where = f"{s}, {source}"
            test(
                "DUIIT has worse FID than CycleGAN (task FID)",
                where,
                s,
                (s, "cyclegan"),
                col,
                False,
            )
            is_col = f"is_mean_{source}"
            test("DUIIT has better IS than CycleGAN", where, s, (s, "cyclegan"), is_col, False)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table.insert(table.columns.get_loc("p") + 1, "q (BH)", bh(table["p"]))
    table["verdict"] = [
        verdict(h, q, alpha) for h, q in zip(table.pop("holds"), table["q (BH)"], strict=True)
    ]
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
                "median q": float(g["q (BH)"].median()),
            }
        )
    return pd.DataFrame(rows)
