"""The protocol end to end at tiny size: every method and setting, the report, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import TINY_RUN, make_cohort, script_module

from duiit.config import load_config
from duiit.data import load_cohorts, split_cohort
from duiit.errors import DuiitError
from duiit.evaluation import quality
from duiit.evaluation.experiment import ALL_METHODS, load_experiment
from duiit.evaluation.grid import phases, plan, quality_references
from duiit.evaluation.quality import PredictorFeatures, fid
from duiit.evaluation.runner import run_experiment
from duiit.files import read_json
from duiit.methods import FittedModel
from duiit.methods import get_method as load_method
from duiit.methods.base import method_config, method_folder, translate
from duiit.report import build_report
from duiit.report.claims import claims_table
from duiit.training.loop import load_checkpoint
from duiit.training.runtime import Runtime

RUN = TINY_RUN


@pytest.fixture(scope="module")
def sweep(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exp")
    (root / "exp.yaml").write_text(
        yaml.safe_dump(
            {
                "target": str(phantom_dir / "ct.csv"),
                "sources": [str(phantom_dir / "mri.csv"), str(phantom_dir / "pet.csv")],
                "methods": ALL_METHODS,
                "splits": 2,
                "run": RUN,
                "quality": {"max_images": 16},
            }
        )
    )
    run_experiment(root / "exp.yaml", root / "out", quiet=True)
    return root


def test_every_method_and_setting_ran(sweep: Path) -> None:
    runs = pd.read_csv(sweep / "out" / "runs.csv")
    settings = {"PURE-CT", "MIX-CT-MRI", "MIX-CT-PET", "MIX-CT-MRI-PET"}
    assert set(runs["setting"]) == settings
    source_free = {"target_only", "simple_augment", "autoaugment", "random_erasing"}
    for method in ALL_METHODS:
        got = set(runs.loc[runs["method"] == method, "setting"])
        assert got == ({"PURE-CT"} if method in source_free else settings - {"PURE-CT"}), method
    assert len(runs) == 2 * (4 + 5 * 3)
    assert runs["mse"].notna().all()
    assert runs.loc[runs["method"] == "duiit", "task_fid_MRI"].notna().any()


def test_report_has_every_row_and_figure(sweep: Path) -> None:
    written = build_report(sweep / "out")
    md = (sweep / "out" / "results.md").read_text()
    for method in ALL_METHODS:
        assert f"| {method} |" in md, method
    for setting in ("PURE-CT", "MIX-CT-MRI", "MIX-CT-PET", "MIX-CT-MRI-PET"):
        assert setting in md
    for title in (
        "vs baselines",
        "vs augmentation",
        "Translation quality",
        "Ours vs every other method",
        "Paper claims: summary",
        "Per split (mse",
        "corrected resampled t-test",
        "| predict the mean |",
        "patient_mse",
    ):
        assert title in md
    claims = claims_table(pd.read_csv(sweep / "out" / "runs.csv"), "duiit", 0.1)
    assert set(claims["verdict"]) <= {"reproduced", "contradicted", "inconclusive"}
    # 3 MIX settings vs PURE, the widest vs the 2 other MIX settings (vs PURE is the first
    # claim, tested once), 7 baselines x 3, FID x 4 (setting, source)
    assert len(claims) == 3 + 2 + 21 + 4 and claims["q (BH)"].between(0, 1).all()
    csv = pd.read_csv(sweep / "out" / "results.csv")
    assert len(csv) == 4 + 5 * 3 + 2 and (csv["splits"] == 2).all()
    mean = csv.set_index("method").loc["predict the mean"]  # MSE = the test labels' variance
    labels = [
        pd.read_csv(p)["label"]
        for p in sorted((sweep / "out" / "runs" / "PURE-CT" / "target_only").glob("*/test_*.csv"))
    ]
    assert mean["mse_mean"] == pytest.approx(sum(v.var(ddof=0) for v in labels) / 2)
    assert mean["r2_mean"] == pytest.approx(0.0, abs=1e-12)
    # a constant at the training labels' mean misses the test mean: a larger error
    assert csv.set_index("method").loc["predict the training mean", "mse_mean"] > mean["mse_mean"]
    assert {"patient_mse_mean", "patient_r2_mean", "mae_mean"} <= set(csv.columns)
    html = (sweep / "out" / "report.html").read_text()
    for name in (
        "error_bars.png",
        "learning_curves.png",
        "predicted_vs_true.png",
        "translations_MRI.png",
        "translations_PET.png",
    ):
        assert name in written.files and written.files[name].stat().st_size > 1000, name
    assert html.count('src="data:image/png;base64,') == 5  # one page, figures in it


def test_resuming_a_finished_sweep_runs_nothing(sweep: Path) -> None:
    results = sorted((sweep / "out" / "runs").rglob("result.json"))
    stamps = {p: p.stat().st_mtime_ns for p in (sweep / "out" / "runs").rglob("*") if p.is_file()}
    run_experiment(sweep / "exp.yaml", sweep / "out", quiet=True)
    after = {p: p.stat().st_mtime_ns for p in (sweep / "out" / "runs").rglob("*") if p.is_file()}
    assert after == stamps and len(results) == 38


def test_interrupted_sweep_finishes_only_what_is_missing(sweep: Path) -> None:
    victim = sweep / "out" / "runs" / "MIX-CT-PET" / "transfer" / "split-01"
    (victim / "result.json").unlink()
    others = {p: p.stat().st_mtime_ns for p in (sweep / "out" / "runs").rglob("result.json")}
    run_experiment(sweep / "exp.yaml", sweep / "out", quiet=True)
    assert (victim / "result.json").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())


def test_kept_records_resume_as_the_finished_grid(sweep: Path, tmp_path: Path) -> None:
    """scripts/keep_runs.py copies the finished runs without checkpoints; copied back into an
    empty folder, the grid skips every kept run (quality references and scores included,
    scored runs without their translation examples too), runs only the one whose record is
    gone, and reports what the original folder does."""
    keep_runs = script_module("keep_runs")
    out, kept, back = sweep / "out", tmp_path / "kept", tmp_path / "back"
    assert keep_runs.keep(out, kept) == (38 + 2, sum(p.is_file() for p in kept.rglob("*")))
    assert not list(kept.rglob("checkpoints")) and not list(kept.rglob("tb"))
    assert keep_runs.keep(out, kept)[1] == 0  # nothing changed: nothing written again
    size = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file())
    assert size < sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 3
    unscored = kept / "runs" / "MIX-CT-PET" / "cyclegan" / "split-00" / "quality.json"
    unscored.rename(unscored.with_name("elsewhere.json"))
    assert keep_runs.keep(kept, tmp_path / "partial")[0] == 38 + 2 - 1  # not finished there
    unscored.with_name("elsewhere.json").rename(unscored)
    for examples in kept.rglob("translations.pt"):  # as in a clone: git ignores them
        examples.unlink()
    keep_runs.keep(kept, back)
    victim = back / "runs" / "MIX-CT-MRI" / "duiit" / "split-01"
    (victim / "result.json").unlink()
    run_experiment(sweep / "exp.yaml", back, quiet=True)
    assert [p.parent for p in back.rglob("checkpoints")] == [victim]
    columns = ["setting", "method", "split", "mse", "task_fid_MRI"]
    original = pd.read_csv(out / "runs.csv").set_index(columns[:3]).sort_index()
    resumed = pd.read_csv(back / "runs.csv").set_index(columns[:3]).sort_index()
    same = resumed.index != ("MIX-CT-MRI", "duiit", 1)
    pd.testing.assert_frame_equal(resumed.loc[same, columns[3:]], original.loc[same, columns[3:]])


def test_averaging_scripts_on_a_grid_s_references(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """scripts/flip_average.py --references re-predicts each quality reference's test slices
    (refusing when they differ from its recorded predictions: it would be reading other
    images) and with their mirror images; scripts/seed_average.py averages the references
    with the grid's own target-only runs (another seed) and pairs the average with each."""
    import shutil

    out = sweep / "out"
    monkeypatch.setattr("sys.argv", ["flip_average.py", str(out), "--references"])
    script_module("flip_average").main()
    printed = capsys.readouterr().out
    ref = pd.read_json(out / "references" / "split-00" / "result.json", typ="series")
    first = printed.splitlines()[1].split()
    assert first[0] == "0" and float(first[1]) == pytest.approx(ref["metrics"]["mse"], abs=0.051)
    assert printed.count("of 2 splits; corrected p") == 2

    references, own = out / "references", out / "runs" / "PURE-CT" / "target_only"
    monkeypatch.setattr("sys.argv", ["seed_average.py", str(references), str(own)])
    script_module("seed_average").main()
    printed = capsys.readouterr().out
    runs = pd.read_csv(out / "runs.csv").set_index(["method", "setting", "split"])
    row = next(line for line in printed.splitlines() if line.startswith("| split-01 |"))
    cells = [float(c) for c in row.strip("| ").split(" | ")[1:]]
    single = runs.loc[("target_only", "PURE-CT", 1)]
    assert cells[2:4] == pytest.approx([single["mse"], single["patient_mse"]], abs=0.051)
    assert cells[4] <= (cells[0] + cells[2]) / 2 + 0.05  # convexity: at most the mean's
    assert cells[4] != pytest.approx(cells[0]) and cells[4] != pytest.approx(cells[2])
    assert "| first |" in printed and "| second |" in printed

    shutil.copytree(out / "references", tmp_path / "references")
    shutil.copy(out / "experiment.yaml", tmp_path / "experiment.yaml")
    recorded = tmp_path / "references" / "split-01" / "test_predictions.csv"
    preds = pd.read_csv(recorded)
    preds["prediction"] += 1.0
    preds.to_csv(recorded, index=False)
    monkeypatch.setattr("sys.argv", ["flip_average.py", str(tmp_path), "--references"])
    with pytest.raises(SystemExit, match="differ from test_predictions.csv"):
        script_module("flip_average").main()
    preds.iloc[::2].to_csv(recorded, index=False)
    monkeypatch.setattr("sys.argv", ["seed_average.py", str(tmp_path / "references"), str(own)])
    with pytest.raises(SystemExit, match="split-01: the two runs were not tested on the same"):
        script_module("seed_average").main()


def test_calibration_bound_on_a_grid_s_runs(
    sweep: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """scripts/calibration_bound.py: each split's scores as the grid recorded them, the
    constant as the test labels' variance, and the best line on the test labels never worse
    than the predictions as they are or than the constant (the line of slope 0); predictions
    that are a line of the age are recalibrated exactly."""
    own = sweep / "out" / "runs" / "PURE-CT" / "target_only"
    monkeypatch.setattr("sys.argv", ["calibration_bound.py", str(own)])
    module = script_module("calibration_bound")
    module.main()
    printed = capsys.readouterr().out
    runs = pd.read_csv(sweep / "out" / "runs.csv").set_index(["method", "setting", "split"])
    for split in (0, 1):
        row = next(line for line in printed.splitlines() if line.startswith(f"| split-0{split} |"))
        mse, line, constant, _, patient, patient_line, patient_constant = (
            float(c) for c in row.strip("| ").split(" | ")[1:]
        )
        recorded = runs.loc[("target_only", "PURE-CT", split)]
        # the tables print 4 significant digits
        assert [mse, patient] == pytest.approx([recorded["mse"], recorded["patient_mse"]], rel=1e-3)
        labels = pd.read_csv(own / f"split-0{split}" / "test_predictions.csv")["label"]
        assert constant == pytest.approx(labels.var(ddof=0), rel=1e-3)
        assert line <= min(mse, constant) * 1.001
        assert patient_line <= min(patient, patient_constant) * 1.001
    assert f"| {own} | 2 |" in printed  # the summary's row: both splits
    ages = np.array([10.0, 20.0, 35.0, 60.0])
    assert module.best_line(0.5 * ages + 3, ages) == pytest.approx((0.0, 2.0))
    assert module.best_line(np.full(4, 30.0), ages) == pytest.approx((ages.var(), 0.0))

    import shutil

    shutil.copytree(own / "split-00", tmp_path / "classes" / "split-00")
    result = read_json(tmp_path / "classes" / "split-00" / "result.json")
    result["metrics"] = {"accuracy": 0.5, "macro_f1": 0.4}
    (tmp_path / "classes" / "split-00" / "result.json").write_text(json.dumps(result))
    monkeypatch.setattr("sys.argv", ["calibration_bound.py", str(tmp_path / "classes")])
    with pytest.raises(SystemExit, match="runs of class labels"):
        module.main()


def test_experiment_file_errors(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text("target: ct.csv\nmethods: [duiit, magic]\n")
    with pytest.raises(DuiitError, match="unknown method 'magic'"):
        load_experiment(tmp_path / "e.yaml")
    (tmp_path / "e.yaml").write_text("target: ct.csv\nsplitz: 3\n")
    with pytest.raises(DuiitError, match="splitz: unknown key; allowed here: alpha"):
        load_experiment(tmp_path / "e.yaml")
    (tmp_path / "e.yaml").write_text("target: ct.csv\nrun: {train: {stepz: 1}}\n")
    with pytest.raises(DuiitError, match="train.stepz: unknown key"):
        load_experiment(tmp_path / "e.yaml")


def test_a_grid_runs_split_by_split_longest_first(tmp_path: Path) -> None:
    """A grid stopped after any sitting holds whole splits to pair (the real grid ran every
    translating run of every split before any target-only one: a stop left nothing to
    compare); within a split, the translating runs first, so no worker idles but at the end."""
    make_cohort(tmp_path)
    (tmp_path / "e.yaml").write_text(
        "target: ct.csv\nsources: [mri.csv]\nmethods: [target_only, transfer, duiit]\nsplits: 3\n"
    )
    exp, cfg = load_experiment(tmp_path / "e.yaml")
    target, sources = load_cohorts(exp.target, exp.sources, cfg.data, quiet=True)
    runs = plan(exp, target, sources)
    references, order = phases(quality_references(exp, runs) + runs[::-1])
    assert [c.split for c in references] == [0, 1, 2] and all(c.is_reference for c in references)
    assert [(c.split, c.method) for c in order] == [
        (k, m) for k in range(3) for m in ("duiit", "transfer", "target_only")
    ]


def test_variants_and_a_lambda_sweep_over_two_workers(phantom_dir: Path, tmp_path: Path) -> None:
    """Method variants are data: `duiit[lambda_pred=...]` runs with its own setting and is a
    row of its own in the report, beside the registered variants detached and cycada."""
    sweep = ["duiit", "duiit[lambda_pred=0.1]", "duiit_detached", "cycada", "target_only"]
    (tmp_path / "exp.yaml").write_text(
        yaml.safe_dump(
            {
                "target": str(phantom_dir / "ct.csv"),
                "sources": [str(phantom_dir / "mri.csv")],
                "methods": sweep,
                "splits": 2,
                "run": RUN,
                "quality": {"max_images": 8},
            }
        )
    )
    runs = run_experiment(tmp_path / "exp.yaml", tmp_path / "out", quiet=True, workers=2)
    assert sorted(zip(runs["method"], runs["split"], strict=True)) == sorted(
        (m, k) for m in sweep for k in (0, 1)
    )
    assert runs.loc[runs["setting"] == "MIX-CT-MRI", "task_fid_MRI"].notna().all()
    variant = tmp_path / "out" / "runs" / "MIX-CT-MRI" / "duiit-lambda_pred=0.1" / "split-00"
    assert yaml.safe_load((variant / "config.yaml").read_text())["train"]["lambda_pred"] == 0.1
    cycada = pd.read_csv(
        tmp_path / "out" / "runs" / "MIX-CT-MRI" / "cycada" / "split-00" / "metrics.csv"
    )
    assert {"pretrain", "translator", "predictor"} <= set(cycada["stage"])
    assert "sem" in set(cycada["name"])
    # Quality is scored by a reference no method trained against: not cycada's frozen
    # network, which is the split's target_only recipe (same seed, same weights)
    out = tmp_path / "out"
    for k in (0, 1):
        frozen = load_checkpoint(
            out
            / "runs"
            / "MIX-CT-MRI"
            / "cycada"
            / f"split-{k:02d}"
            / "checkpoints"
            / "pretrain-final.pt"
        )["weights"]["predictor"]
        pure = load_checkpoint(
            out / "runs" / "PURE-CT" / "target_only" / f"split-{k:02d}" / "model.pt"
        )["predictor"]
        reference = load_checkpoint(out / "references" / f"split-{k:02d}" / "model.pt")
        assert all(torch.equal(v, pure[n]) for n, v in frozen.items())  # the circle
        assert not all(torch.equal(v, reference["predictor"][n]) for n, v in frozen.items())
    build_report(tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    for method in sweep:
        assert f"| {method} |" in md, method


def test_split_features_are_computed_once_and_score_as_each_run_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quality reference's features of the real target images, and the raw source's
    task FID, are computed once per split (by the reference's cell), and every translating
    run's quality.json holds exactly the numbers of computing them per run, as runs did.
    The real images are the split's validation and test patients' (2 of the 6 CT images
    here), never its training patients', whose images the translators learnt as real."""
    make_cohort(tmp_path)
    spec = tmp_path / "exp.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "target": "ct.csv",
                "sources": ["mri.csv"],
                "methods": ["duiit", "cyclegan"],
                "splits": 1,
                "run": RUN,
                "quality": {"max_images": 3},
            }
        )
    )
    out = tmp_path / "out"
    computed = []
    real_statistics = quality.real_statistics

    def counted(*args: object, **kwargs: object) -> object:
        computed.append(1)
        return real_statistics(*args, **kwargs)

    monkeypatch.setattr(quality, "real_statistics", counted)
    run_experiment(spec, out, quiet=True)
    assert len(computed) == 1  # one split, two translating runs
    exp, cfg = load_experiment(spec)
    target, [mri] = load_cohorts(exp.target, exp.sources, cfg.data, quiet=True)
    split = split_cohort(target, cfg.data.split, seed=0)
    real = target.subset(np.concatenate([split.val, split.test])).images
    assert len(real) == 2
    parts = pd.read_csv(out / "references" / "split-00" / "split.csv")["part"]
    assert torch.equal(real, target.images[np.flatnonzero(parts.isin(["val", "test"]))])
    rt = Runtime.from_config(cfg.train)
    ref = FittedModel.load(out / "references" / "split-00" / "model.pt")
    features = PredictorFeatures(ref.predictor.to(rt.device))
    step = max(1, len(mri) // 3)
    sample = mri.subset(list(range(0, len(mri), step))[:3])
    runs = [out / "runs" / "MIX-CT-MRI" / m / "split-00" for m in ("duiit", "cyclegan")]
    for run in runs:
        fake = translate(FittedModel.load(run / "model.pt").translators["MRI"], sample.images, rt)
        per_run = {
            "task_fid_MRI": fid(real, fake, features),
            "task_fid_raw_MRI": fid(real, sample.images, features),
            "consistency_MRI": float(((ref.predict(fake, rt) - sample.labels.numpy()) ** 2).mean()),
        }
        scored = read_json(run / "quality.json")
        assert {k: scored[k] for k in per_run} == per_run, run
    # A folder from before the cache: the next run of the command computes it, once.
    (out / "references" / "split-00" / quality.FEATURES).unlink()
    scores = read_json(runs[0] / "quality.json")
    (runs[0] / "quality.json").unlink()
    computed.clear()
    run_experiment(spec, out, quiet=True)
    assert len(computed) == 1 and (out / "references" / "split-00" / quality.FEATURES).exists()
    assert read_json(runs[0] / "quality.json") == scores


def test_method_variant_errors() -> None:
    with pytest.raises(DuiitError, match="unknown setting 'lambda'"):
        load_method("duiit[lambda=1]")
    with pytest.raises(DuiitError, match="lambda_pred"):
        load_method("duiit[lambda_pred=-1]")
    with pytest.raises(DuiitError, match="not of the form"):
        load_method("duiit[lambda_pred=1")
    with pytest.raises(
        DuiitError,
        match=r"'epochs' is in more than one section: give predictor\.epochs or train\.epochs",
    ):
        load_method("target_only[epochs=24]")


def test_a_variant_takes_a_list_value() -> None:
    """`augment=[flip, shift]` is one setting: its comma does not split the variant."""
    spec = "target_only[augment=[flip, shift], norm=batch]"
    cfg = method_config(spec, load_config())
    assert cfg.predictor.augment == ["flip", "shift"] and cfg.predictor.norm == "batch"
    assert method_folder(spec) == "target_only-augment=[flip,shift]-norm=batch"


def test_demo_refuses_an_existing_folder(tmp_path: Path) -> None:
    from duiit.demo import prepare_demo

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(DuiitError, match="--force"):
        prepare_demo(tmp_path / "d")
    assert (tmp_path / "d" / "keep.txt").exists()


def test_report_beside_an_image_split_experiment(sweep: Path, phantom_dir: Path) -> None:
    """`duiit report A --beside B`: B's mean ± std in its own column, named with its split."""
    (sweep / "image.yaml").write_text(
        yaml.safe_dump(
            {
                "target": str(phantom_dir / "ct.csv"),
                "methods": ["target_only"],
                "ours": "target_only",
                "splits": 2,
                "run": {**RUN, "data": {**RUN["data"], "split_by": "image"}},
            }
        )
    )
    image = run_experiment(sweep / "image.yaml", sweep / "image-out", quiet=True)
    build_report(sweep / "out", beside=[sweep / "image-out"])
    md = (sweep / "out" / "results.md").read_text()
    head = "| setting | method | out (patient-level splits) | image-out (image-level splits) |"
    assert head in md
    mse = image["mse"]
    row = next(line for line in md[md.index(head) :].splitlines() if "| target_only |" in line)
    assert row.endswith(f"| {mse.mean():.3g} ± {mse.std(ddof=1):.3g} |"), row
    assert "| MIX-CT-MRI | duiit |" in md[md.index(head) :]  # rows of either folder
    build_report(sweep / "image-out")
    assert "2 image-level splits" in (sweep / "image-out" / "results.md").read_text()


def test_phantom_cut_config_runs_at_tiny_size(phantom_dir: Path, tmp_path: Path) -> None:
    """configs/phantom-cut.yaml as it stands, on the test phantom with tiny networks and one
    split: CUT and CycleGAN, each alone and under DUIIT, run in folders named for their
    variant, with the translator each asked for, and the report compares ours (DUIIT on
    CUT) with every other method."""
    config = Path(__file__).parents[1] / "configs" / "phantom-cut.yaml"
    sizes = [f"run.{s}.{k}={v}" for s, d in RUN.items() for k, v in d.items()]
    overrides = [
        f"target={phantom_dir / 'ct.csv'}",
        f"sources=[{phantom_dir / 'mri.csv'}, {phantom_dir / 'pet.csv'}]",
        "splits=1",
        "quality.max_images=8",
        *sizes,
    ]
    runs = run_experiment(config, tmp_path / "out", overrides, quiet=True)
    methods = ["duiit", "cyclegan", "duiit[translator=cut]", "cyclegan[translator=cut]"]
    assert sorted(zip(runs["setting"], runs["method"], strict=True)) == sorted(
        [
            ("PURE-CT", "target_only"),
            ("PURE-CT", "features_ridge"),
            *(("MIX-CT-MRI", m) for m in methods),
        ]
    )
    folders = tmp_path / "out" / "runs" / "MIX-CT-MRI"
    assert sorted(p.name for p in folders.iterdir()) == sorted(
        ["duiit", "cyclegan", "duiit-translator=cut", "cyclegan-translator=cut"]
    )
    for folder, translator in (("duiit", "cyclegan"), ("cyclegan-translator=cut", "cut")):
        cfg = yaml.safe_load((folders / folder / "split-00" / "config.yaml").read_text())
        assert cfg["model"]["translator"] == translator
    names = set(
        pd.read_csv(folders / "cyclegan-translator=cut" / "split-00" / "metrics.csv")["name"]
    )
    assert {"nce", "nce_idt", "D_t"} <= names and not names & {"cyc", "adv_F", "D_s"}
    assert runs.loc[runs["setting"] == "MIX-CT-MRI", "task_fid_MRI"].notna().all()
    build_report(tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    versus = md[md.index("## Ours vs every other method") :]
    for method in ["target_only", *methods]:
        assert f"| {method} |" in md, method
    for other in ["target_only", *methods[:2], methods[3]]:
        assert f"| {other} |" in versus, other
