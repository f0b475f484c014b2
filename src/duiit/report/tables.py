"""The paper's tables from the per-run results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from duiit.evaluation.grid import setting_name
from duiit.evaluation.metrics import (
    MAJORITY_PREDICTOR,
    MEAN_PREDICTOR,
    TRAIN_MEAN_PREDICTOR,
    constant_predictor_metrics,
)
from duiit.evaluation.stats import (
    TRANSLATION_SCORES,
    comparisons,
    equivalence,
    holdout_ratio,
    pure_setting,
    setting_order,
    summary,
)
from duiit.files import read_csv
from duiit.methods.base import parse_method

AUGMENTATIONS = ("simple_augment", "autoaugment", "random_erasing")
# The paper's other methods; anything else an experiment runs is a variant (ablation).
PAPER_BASELINES = ("target_only", "transfer", "multitask", "dann", "cyclegan")
# Baselines that are not the paper's: has the network learnt more than image counts tell?
CLASSICAL = ("features_ridge", "features_boost", "stack_ridge")
# The slice-level ones are the learning check's references: a slice predictor that does not
# beat a ridge (or boosted trees) on a slice's pixel counts learned little. The
# patient-level `stack_ridge` sees a patient's whole stack, which no slice predictor does:
# a baseline, not that floor.
LEARNING_REFERENCE = ("features_ridge", "features_boost")
SCORES = ("mse", "mae", "r2", "patient_mse", "patient_mae", "patient_r2", "accuracy", "macro_f1")


def primary_metric(results: pd.DataFrame) -> tuple[str, bool]:
    """(metric, lower is better): the paper's MSE for regression, accuracy for classes."""
    return ("mse", True) if "mse" in results.columns else ("accuracy", False)


def metric_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in SCORES if c in results.columns]


def mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.3g} ± {std:.3g}" if pd.notna(std) else f"{mean:.3g}"


def constant_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Per split, the scores of predicting the test labels' mean (regression) or majority
    class, from the test labels any run of that split saved: a row of reference beside the
    methods, in the setting without sources. For regression a second row predicts the
    training labels' mean (what a model that learnt nothing outputs; a looser floor, since
    the test patients' own mean is not known in advance)."""
    regression = primary_metric(results)[0] == "mse"
    pure = pure_setting(results)
    rows = []
    for split, runs in results.groupby("split"):
        labels = read_csv(Path(runs["run_dir"].iloc[0]) / "test_predictions.csv")
        true = labels["label"].to_numpy()
        patients = labels["patient_id"].to_numpy()
        # test_predictions.csv holds class indices; their names do not change the scores
        classes = None if regression else tuple(map(str, range(int(true.max()) + 1)))
        constants = {MEAN_PREDICTOR if regression else MAJORITY_PREDICTOR: None}
        train_mean = runs.get("train_label_mean", pd.Series(dtype=float)).dropna()
        if regression and len(train_mean):
            constants[TRAIN_MEAN_PREDICTOR] = float(train_mean.iloc[0])
        target = runs["target"].iloc[0]
        for name, value in constants.items():
            rows.append(
                {
                    "setting": pure or setting_name(target, []),
                    "method": name,
                    "split": split,
                    "sources": "",
                    "target": target,
                    **constant_predictor_metrics(true, classes, patients, value),
                }
            )
    return pd.DataFrame(rows)


def error_table(results: pd.DataFrame) -> pd.DataFrame:
    """Methods x settings, mean ± std of the primary metric over splits."""
    metric, _ = primary_metric(results)
    s = summary(results, [metric])
    s["cell"] = [
        mean_std(m, d) for m, d in zip(s[f"{metric}_mean"], s[f"{metric}_std"], strict=True)
    ]
    table = s.pivot(index="method", columns="setting", values="cell").fillna("")
    table.columns.name = None
    order = [m for m in results["method"].drop_duplicates()]
    return table.loc[order, [c for c in setting_order(results) if c in table.columns]]


def scores_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every score per (setting, method), mean ± std over splits: slice-level and, for
    regression, patient-level (a patient's slice predictions averaged)."""
    cols = metric_columns(results)
    s = summary(results, cols).set_index(["setting", "method"])
    return pd.DataFrame(
        {
            "setting": setting,
            "method": method,
            **{c: mean_std(r[f"{c}_mean"], r[f"{c}_std"]) for c in cols},
            "splits": int(r["splits"]),
        }
        for setting, method in _report_order(results)
        for r in [s.loc[(setting, method)]]
    )


def _report_order(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(setting, method) in the report's one order: settings by `setting_order`, methods
    as the runs list them."""
    return [
        (setting, method)
        for setting in setting_order(results)
        for method in results.loc[results["setting"] == setting, "method"].drop_duplicates()
    ]


def split_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method), the primary metric on each split beside its mean: with ~10
    test patients a split, one hard split can make a mean, and this shows which."""
    metric, _ = primary_metric(results)
    order = _report_order(results)
    # every (setting, method) and split keeps its cell, even one whose runs all lack a score
    cells = (
        results.set_index(["setting", "method", "split"])[metric]
        .unstack("split")
        .reindex(pd.MultiIndex.from_tuples(order))
    )
    return pd.DataFrame(
        {
            "setting": setting,
            "method": method,
            **{f"split {int(k)}": _fmt(v) for k, v in r.items()},
            "mean": _fmt(r.mean()),
        }
        for setting, method in order
        for r in [cells.loc[(setting, method)]]
    )


def versus_table(
    comparisons_: pd.DataFrame, results: pd.DataFrame, ours: str, others: list[str], alpha: float
) -> pd.DataFrame:
    """Per setting where ours ran: ours and each other method, mean ± std, with the q and
    verdict of that comparison in the report's one family of comparisons."""
    metric, _ = primary_metric(results)
    s = summary(results, [metric]).set_index(["setting", "method"])
    rows = []
    for setting in setting_order(results):
        if (setting, ours) not in s.index:
            continue
        row = {"setting": setting, ours: mean_std(*s.loc[(setting, ours)].iloc[:2])}
        for other in others:
            cand = (
                comparisons_[
                    (comparisons_["setting"] == setting) & (comparisons_["vs_method"] == other)
                ]
                if not comparisons_.empty
                else comparisons_
            )
            if cand.empty:
                continue
            c = cand.iloc[0]
            mean, std = s.loc[(c["vs_setting"], other)].iloc[:2]
            mark = "*" if c["q (BH)"] < alpha else ""
            q = "q=–" if np.isnan(c["q (BH)"]) else f"q={c['q (BH)']:.2g}{mark}"
            row[other] = f"{mean_std(mean, std)} ({q})"
        rows.append(row)
    return pd.DataFrame(rows)


def translator_table(results: pd.DataFrame, share: float = 0.1) -> pd.DataFrame:
    """Each method run on another translator (`duiit[translator=fastcut]`) beside the same
    method on the experiment's own translator (`duiit`), per setting: the primary metric of
    both, the equivalence test of the difference (its 90 % corrected interval against
    +-`share` of the reference's mean; `stats.equivalence`), whether its upper end alone is
    below the margin (not worse: for an error, lower beyond the margin counts as not worse)
    and minutes per run of both,
    each over the splits both ran (what the test pairs; a grid under way has more splits of
    one than of the other)."""
    metric, lower = primary_metric(results)
    ratio = holdout_ratio(results)
    series = {k: g.set_index("split") for k, g in results.groupby(["setting", "method"])}
    rows = []
    for (setting, method), runs in series.items():
        name, overrides = parse_method(method)
        if len(overrides) != 1 or not overrides[0].startswith("model.translator="):
            continue
        if (setting, name) not in series:
            continue
        shared = (
            series[(setting, name)][metric].dropna().index.intersection(runs[metric].dropna().index)
        )
        ref, runs = series[(setting, name)].loc[shared], runs.loc[shared]
        e = equivalence(ref[metric], runs[metric], ratio, share)
        rows.append(
            {
                "setting": setting,
                "method": method,
                "vs": name,
                "n": e.n,
                "vs " + metric: mean_std(ref[metric].mean(), ref[metric].std()),
                "this " + metric: mean_std(runs[metric].mean(), runs[metric].std()),
                "diff": e.mean_diff,
                "90% interval": f"[{e.low:.3g}, {e.high:.3g}]",
                "margin": f"±{e.margin:.3g}",
                "verdict": e.verdict,
                "not worse": {True: "yes", False: "no", None: ""}[e.not_worse(lower)],
                "min/run (vs)": ref["fit_seconds"].mean() / 60,
                "min/run (this)": runs["fit_seconds"].mean() / 60,
            }
        )
    return pd.DataFrame(rows)


def beside_table(named: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The primary metric of several experiment folders, one column each, one row per
    (setting, method): e.g. the same experiment with patient- and image-level splits."""
    cells = {}
    for name, results in named.items():
        metric, _ = primary_metric(results)
        s = summary(results, [metric]).set_index(["setting", "method"])
        cells[name] = {
            key: mean_std(row[f"{metric}_mean"], row[f"{metric}_std"]) for key, row in s.iterrows()
        }
    order = setting_order(pd.concat(named.values()))
    keys = list(dict.fromkeys(k for column in cells.values() for k in column))
    keys.sort(key=lambda k: order.index(k[0]))
    rows = [
        {"setting": k[0], "method": k[1], **{n: c.get(k, "") for n, c in cells.items()}}
        for k in keys
    ]
    return pd.DataFrame(rows)


def quality_table(results: pd.DataFrame) -> pd.DataFrame:
    """Translation quality per translating method and source: mean ± std over splits."""
    cols = [c for c in results.columns if c.startswith(TRANSLATION_SCORES)]
    if not cols:
        return pd.DataFrame()
    rows = []
    scored = results.dropna(subset=cols, how="all")
    order = setting_order(results)
    groups = scored.groupby(["setting", "method"], sort=False)
    for (setting, method), g in sorted(groups, key=lambda kv: order.index(kv[0][0])):
        row = {"setting": setting, "method": method}
        for c in cols:
            if g[c].notna().any():
                row[c] = mean_std(g[c].mean(), g[c].std(ddof=1))
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    if df.empty:
        return "_(nothing to show)_\n"
    frame = df.reset_index() if index else df
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def method_groups(methods: list[str], ours: str) -> tuple[list[str], list[str], list[str]]:
    """The report's three comparison tables by what a method is, whatever its settings
    (`dann[domain_weight=0.1]` is DANN, `features_ridge` a baseline): baselines (the paper's
    and the classical one), augmentations, and the rest, variants of ours (its λ, couplings,
    translators)."""
    baseline, augment, variant = [], [], []
    for method in methods:
        if method == ours:
            continue
        name = parse_method(method)[0]
        if name in (*PAPER_BASELINES, *CLASSICAL):
            baseline.append(method)
        elif name in AUGMENTATIONS:
            augment.append(method)
        else:
            variant.append(method)
    return baseline, augment, variant


def learning_check(
    results: pd.DataFrame, constants: pd.DataFrame, metric: str, lower: bool
) -> list[str]:
    """Which methods are no better than the constant (predict the mean, or the majority
    class) and than each slice-level classical baseline: comparisons among those are between
    predictors that learned little, and a reader should know it before the tables. Each
    method's mean over the splits it ran against the reference's mean on the same splits: a
    caution, not a test. A classical baseline is held to the constant, not to another
    classical one (both are the image counts)."""
    floor = MEAN_PREDICTOR if metric == "mse" else MAJORITY_PREDICTOR
    # no constant row when no split kept its test labels (the report says why elsewhere)
    refs = {floor: constants[constants["method"] == floor]} if "method" in constants else {}
    refs |= {name: runs for name, runs in results.groupby("method") if name in LEARNING_REFERENCE}
    better = "below" if lower else "above"
    lines = []
    for ref_name, ref_runs in refs.items():
        ref = ref_runs.set_index("split")[metric].dropna()
        scored = []  # (method in setting, its mean, the reference's mean on its splits)
        for (setting, method), runs in results.groupby(["setting", "method"], sort=False):
            own = runs.set_index("split")[metric].dropna()
            shared = own.index.intersection(ref.index)
            counts = ref_name != floor and method in CLASSICAL  # image counts vs image counts
            if method != ref_name and not counts and not shared.empty:
                scored.append((f"{method} in {setting}", own[shared].mean(), ref[shared].mean()))
        if not scored:
            continue
        behind = [r for r in scored if (r[1] >= r[2] if lower else r[1] <= r[2])]
        head = f"Against {ref_name} ({metric}, mean over the same splits): "
        what = "a constant" if ref_name == floor else "the classical baseline's image counts"
        if not behind:
            lines.append(head + f"every method is {better} it.")
            continue
        if len(behind) == len(scored):
            name, mine, theirs = (min if lower else max)(behind, key=lambda r: r[1])
            found = (
                f"none of the {len(scored)} method rows is {better} it (the nearest: {name}, "
                f"{mine:.3g} against {theirs:.3g})"
            )
        else:
            listed = "; ".join(f"{n} ({m:.3g} against {t:.3g})" for n, m, t in behind)
            found = f"{len(behind)} of {len(scored)} method rows are not {better} it: {listed}"
        lines.append(
            head + found + f". Comparisons among these are between predictors no better than "
            f"{what}."
        )
    return lines


def _fmt(v: object) -> str:
    if isinstance(v, float) and pd.isna(v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


__all__ = [
    "AUGMENTATIONS",
    "CLASSICAL",
    "PAPER_BASELINES",
    "learning_check",
    "method_groups",
    "beside_table",
    "error_table",
    "mean_std",
    "metric_columns",
    "primary_metric",
    "quality_table",
    "comparisons",
    "constant_rows",
    "scores_table",
    "split_table",
    "summary",
    "to_markdown",
    "translator_table",
    "versus_table",
]
