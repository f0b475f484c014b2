"""Assemble the report of an experiment folder."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import markdown
import pandas as pd
import yaml

from duiit.errors import DuiitError
from duiit.evaluation.results import audit, collect
from duiit.evaluation.stats import holdout_ratio, n_sources, setting_order
from duiit.files import read_csv, write_csv, write_text
from duiit.report import figures
from duiit.report.claims import claims_summary, claims_table
from duiit.report.tables import (
    beside_table,
    comparisons,
    constant_rows,
    error_table,
    learning_check,
    method_groups,
    metric_columns,
    primary_metric,
    quality_table,
    scores_table,
    split_table,
    summary,
    to_markdown,
    translator_table,
    versus_table,
)
from duiit.training.loop import load_checkpoint

# What to do about a damaged file of a run that `duiit experiment` writes.
_RERUN = "delete it and run `duiit experiment` again on this folder to write it again"
# a run's translation examples are written again only with its scores (quality_done)
_RESCORE = (
    "delete it and the run's quality.json, then run `duiit experiment` again on this folder "
    "to score the run again"
)


def _experiment(out: Path) -> dict:
    path = out / "experiment.yaml"
    if not path.exists():
        return {}
    try:
        exp = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        exp = None
    if not isinstance(exp, dict):
        raise DuiitError(f"{path} is damaged; restore it or run `duiit experiment` again")
    return exp


def _figures(
    out: Path,
    results: pd.DataFrame,
    shown: pd.DataFrame,
    ours: str,
    metric: str,
    damaged: set[Path],
) -> dict[str, Path]:
    """The report's figures; `shown` is `results` with the constant-predictor rows; files in
    `damaged` are not read."""
    figs: dict[str, Path] = {}
    fig_dir = out / "figures"
    s = summary(shown, [metric])
    figs["Prediction error"] = figures.error_bars(
        s, metric, setting_order(shown), fig_dir / "error_bars.png"
    )
    first = results.sort_values("split").groupby(["setting", "method"]).first().reset_index()
    curves = {}
    for _, r in first[first["method"] == ours].iterrows():
        if Path(r["run_dir"]) / "metrics.csv" not in damaged:
            curves[r["setting"]] = read_csv(Path(r["run_dir"]) / "metrics.csv")
    if curves:
        figs["Learning curves (ours, first split)"] = figures.learning_curves(
            curves, fig_dir / "learning_curves.png"
        )
    first["n_sources"] = first["sources"].map(n_sources)
    scatter = {}
    for method in (ours, "target_only"):
        cand = first[first["method"] == method]
        cand = cand[~cand["run_dir"].map(lambda d: Path(d) / "test_predictions.csv" in damaged)]
        if not cand.empty:
            r = cand.sort_values("n_sources").iloc[-1]
            scatter[f"{method} ({r['setting']})"] = read_csv(
                Path(r["run_dir"]) / "test_predictions.csv"
            )
    if scatter and primary_metric(results)[0] == "mse":
        figs["Predicted vs true (first split)"] = figures.predicted_vs_true(
            scatter, fig_dir / "predicted_vs_true.png"
        )
    translating = first[first["run_dir"].map(lambda d: (Path(d) / "translations.pt").exists())]
    if not translating.empty:
        chosen = translating[translating["n_sources"] == translating["n_sources"].max()]
        setting = chosen["setting"].iloc[0]
        examples = {
            r["method"]: load_checkpoint(Path(r["run_dir"]) / "translations.pt", _RESCORE)
            for _, r in chosen.iterrows()
        }
        for source in next(iter(examples.values())):
            rows = {source: next(iter(examples.values()))[source]["source"]}
            for method in ("cyclegan", ours, *sorted(set(examples) - {"cyclegan", ours})):
                if method in examples:
                    rows[method] = examples[method][source]["translated"]
            figs[f"Translations {source} → target ({setting})"] = figures.translation_grid(
                rows,
                f"{source}: source / translations ({setting}, first split)",
                fig_dir / f"translations_{source}.png",
            )
    return figs


def _results(out: Path) -> pd.DataFrame:
    if not out.is_dir():
        raise DuiitError(f"experiment folder {out} does not exist")
    results = collect(out)
    if results.empty:
        raise DuiitError(
            f"{out} holds no finished run (runs/*/*/split-*/result.json); run "
            "`duiit experiment` first"
        )
    return results


def _split_kind(exp: dict) -> str:
    """How the experiment split the target: by patient (the default) or by image."""
    return exp.get("resolved_run", {}).get("data", {}).get("split_by", "patient") + "-level"


@dataclass
class Report:
    """What `build_report` wrote (name -> file), and what it said about unfinished or damaged
    runs at the top of results.md."""

    files: dict[str, Path]
    notes: list[str]


def build_report(out: Path, beside: list[Path] | None = None) -> Report:
    """Write results.md, results.csv, figures/*.png and report.html for an experiment folder;
    `beside` adds a table of the same metric in other experiment folders (e.g. the same
    experiment with image-level splits), one column each."""
    out = Path(out)
    results = _results(out)
    exp = _experiment(out)
    ours, alpha = exp.get("ours", "duiit"), float(exp.get("alpha", 0.1))
    if ours not in set(results["method"]):
        ours = results["method"].iloc[0]
    metric, lower = primary_metric(results)
    found = audit(out, results)
    # predict the mean needs a split's test labels: from a run whose file of them is intact
    intact = ~results["run_dir"].map(lambda d: Path(d) / "test_predictions.csv" in found.damaged)
    constants = constant_rows(results[intact])
    for split in sorted(set(results["split"]) - set(constants.get("split", []))):
        found.notes.append(
            f"predict the mean: no row for split {split} (no intact test_predictions.csv)"
        )
    shown = pd.concat([results, constants], ignore_index=True)
    full = summary(shown, metric_columns(shown) + ["fit_seconds"])
    write_csv(full, out / "results.csv")
    methods = list(results["method"].drop_duplicates())
    baselines, augments, ablation = method_groups(methods, ours)
    versus = comparisons(results, metric, ours, alpha, lower)
    claims = claims_table(results, ours, alpha)
    error_title = f"Prediction error on real target test patients ({metric}, mean ± std)"
    tables = {
        error_title: error_table(shown).reset_index(),
        "Every score (mean ± std over splits; patient_*: a patient's slice predictions "
        "averaged)": scores_table(shown),
        f"Per split ({metric}; mean over the splits a method finished)": split_table(shown),
        f"Paper claims: summary (alpha = {alpha}, on q)": claims_summary(claims)
        if not claims.empty
        else claims,
        "Paper claims: every test": claims,
        f"Ours ({ours}) vs baselines": versus_table(versus, results, ours, baselines, alpha),
        f"Ours ({ours}) vs augmentation": versus_table(versus, results, ours, augments, alpha),
        f"Ablation: ours ({ours}) vs its variants and CycleGAN": versus_table(
            versus,
            results,
            ours,
            [*(["cyclegan"] if "cyclegan" in methods else []), *ablation],
            alpha,
        )
        if ablation
        else pd.DataFrame(),
        "Translators: each method on CUT / FastCUT vs the same method on the experiment's "
        "translator (equivalent: the 90 % corrected interval of the difference lies within "
        "±10 % of the latter's mean; not equivalent: lower / higher, the interval wholly "
        "below −10 % / above +10 %; not worse: the interval's end on the worse side inside the "
        "margin, for an error its upper end below +10 %, which a difference in the better "
        "direction beyond the margin also passes)": translator_table(results),
        "Translation quality (task FID: lower is closer to real target; consistency: error "
        "of an independent real-target predictor on translated images)": quality_table(results),
        f"Ours vs every other method (one family; diff = other − ours; verdict on q at "
        f"alpha = {alpha})": versus,
    }
    if beside:
        named = {f"{out.name} ({_split_kind(exp)} splits)": shown}
        for other in map(Path, beside):
            theirs = _results(other)
            named[f"{other.name} ({_split_kind(_experiment(other))} splits)"] = pd.concat(
                [theirs, constant_rows(theirs)], ignore_index=True
            )
        tables[f"Beside other experiments ({metric}, mean ± std)"] = beside_table(named)
    figs = _figures(out, results, shown, ours, metric, found.damaged)
    splits = int(results["split"].nunique())
    ratio = holdout_ratio(results)
    intro = (
        f"{len(results)} runs: {results['setting'].nunique()} settings, "
        f"{len(methods)} methods, {splits} {_split_kind(exp)} splits. "
        f"Primary metric: test {metric} ({'lower' if lower else 'higher'} is better). "
        "Tests: the corrected resampled t-test (Nadeau & Bengio 2003), paired on the splits "
        f"both methods ran on: the splits share patients, so the variance of the per-split "
        f"differences is multiplied by 1/n + n_test/n_train (n_test/n_train = {ratio:.3g}; "
        f"with {splits} splits that is {1 + splits * ratio:.3g}x the plain paired t-test's). "
        "Wilcoxon signed-rank p beside it as a robustness check. Verdicts are decided on "
        f"the Benjamini-Hochberg q of each table's family of tests; `*`: q < {alpha}. "
        "Empty cells: a method that uses no sources runs only in the setting without sources, "
        "one that uses sources only in the settings with them"
        + ("; the runs listed above are in no table." if found.notes else ".")
    )
    md = [f"# duiit results: {out.name}\n"]
    if found.notes:
        md += ["## Unfinished or damaged runs\n", *[f"- {note}" for note in found.notes], ""]
    md += [intro + "\n"]
    learned = learning_check(results, constants, metric, lower)
    if learned:
        md += ["## Do the predictors learn?\n", *[f"- {line}" for line in learned], ""]
    for title, df in tables.items():
        md += [f"## {title}\n", to_markdown(df)]
    md += ["## Figures\n", *[f"![{t}](figures/{p.name})\n" for t, p in figs.items()]]
    text = "\n".join(md)
    write_text(text, out / "results.md")
    write_text(_html(out.name, text, figs, exp), out / "report.html")
    files = {
        "results.md": out / "results.md",
        "results.csv": out / "results.csv",
        "report.html": out / "report.html",
        **{p.name: p for p in figs.values()},
    }
    return Report(files, found.notes)


def _data_uri(path: Path) -> str:
    """A PNG as a data URI, so the page holds its figures."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html(name: str, md: str, figs: dict[str, Path], exp: dict) -> str:
    """results.md rendered as one self-contained page (figures embedded), to share as it is."""
    for path in figs.values():
        md = md.replace(f"(figures/{path.name})", f"({_data_uri(path)})")
    parts = [
        markdown.markdown(md, extensions=["tables"]),
        "<h2>Experiment</h2><pre>" + html.escape(json.dumps(exp, indent=1, default=str)) + "</pre>",
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
        "td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}"
        "img{max-width:100%;border:1px solid #eee}pre{font-size:11px;background:#f7f7f7;"
        "padding:1em;overflow:auto}h2{font-size:17px;margin-top:1.6em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>duiit {html.escape(name)}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
