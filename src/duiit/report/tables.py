"""The paper's tables from the per-run results."""

from __future__ import annotations

import pandas as pd

from duiit.evaluation.stats import significance, summary

AUGMENTATIONS = ("simple_augment", "autoaugment", "random_erasing")
# The paper's other methods; anything else an experiment runs is a variant (ablation).
PAPER_BASELINES = ("target_only", "transfer", "multitask", "dann", "cyclegan")


def primary_metric(results: pd.DataFrame) -> tuple[str, bool]:
    """(metric, lower is better): the paper's MSE for regression, accuracy for classes."""
    return ("mse", True) if "mse" in results.columns else ("accuracy", False)


def metric_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in ("mse", "mae", "r2", "accuracy", "macro_f1") if c in results.columns]


def mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.3g} ± {std:.3g}" if pd.notna(std) else f"{mean:.3g}"


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
    return table.loc[order, sorted(table.columns, key=lambda c: (c.count("-"), c))]


def versus_table(results: pd.DataFrame, ours: str, others: list[str], alpha: float) -> pd.DataFrame:
    """Per setting where ours ran: ours and each other method, mean ± std, with p-values."""
    metric, lower = primary_metric(results)
    s = summary(results, [metric]).set_index(["setting", "method"])
    sig = significance(results, metric, ours, alpha, lower)
    rows = []
    for setting in sorted(results.loc[results["method"] == ours, "setting"].unique()):
        row = {"setting": setting, ours: mean_std(*s.loc[(setting, ours)].iloc[:2])}
        for other in others:
            cand = (
                sig[(sig["setting"] == setting) & (sig["vs_method"] == other)]
                if not sig.empty
                else sig
            )
            if cand.empty:
                continue
            c = cand.iloc[0]
            mean, std = s.loc[(c["vs_setting"], other)].iloc[:2]
            mark = "*" if c["p"] < alpha else ""
            row[other] = f"{mean_std(mean, std)} (p={c['p']:.2g}{mark})"
        rows.append(row)
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
    keys = list(dict.fromkeys(k for column in cells.values() for k in column))
    keys.sort(key=lambda k: (k[0].count("-"), k[0]))
    rows = [
        {"setting": k[0], "method": k[1], **{n: c.get(k, "") for n, c in cells.items()}}
        for k in keys
    ]
    return pd.DataFrame(rows)


def quality_table(results: pd.DataFrame) -> pd.DataFrame:
    """Translation quality per translating method and source: mean ± std over splits."""
    cols = [
        c
        for c in results.columns
        if c.startswith(("task_fid_", "consistency_", "fid_inception_", "is_mean_"))
    ]
    if not cols:
        return pd.DataFrame()
    rows = []
    for (setting, method), g in results.dropna(subset=cols, how="all").groupby(
        ["setting", "method"]
    ):
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


def _fmt(v: object) -> str:
    if isinstance(v, float) and pd.isna(v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


__all__ = [
    "AUGMENTATIONS",
    "PAPER_BASELINES",
    "beside_table",
    "error_table",
    "mean_std",
    "metric_columns",
    "primary_metric",
    "quality_table",
    "significance",
    "summary",
    "to_markdown",
    "versus_table",
]
