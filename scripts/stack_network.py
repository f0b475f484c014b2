"""Can a network that sees a patient's whole stack learn what the stack summary holds? A
prototype measured before building it into duiit (issue 23's "not tried"): the recipe's
plain CNN embeds every slice, the embeddings are averaged over the patient's slices, and one
linear head gives the patient's age (multiple-instance learning with mean pooling). Trained
with the recipe's settings (AdamW, weight decay, one-cycle schedule, MSE on standardised
ages, flips and shifts, selection on the validation patients' MAE) for as many slice
forwards as the recipe's 12 passes: a step is `--patients` patients of `--slices` random
slices each. The splits are those of an experiment folder's runs (their split.csv), so the
scores pair with the folder's target_only and stack_ridge split by split. Every slice gets
its patient's prediction (as stack_ridge's do).

    .venv/bin/python scripts/stack_network.py results/ct-ich-learning-recipe \
        --target runs/ct-ich.csv --out runs/stack-network.csv

(its 10 splits as measured: results/stack-network/scores.csv; a finished split in --out is
kept, so a stopped run continues; to run splits side by side give each process its own
--splits, e.g. `--splits 0 1 2 3 4`, and its own --out: each rewrites its whole file)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from duiit.config import Config
from duiit.data import load_cohorts
from duiit.evaluation import stats
from duiit.evaluation.metrics import prediction_metrics
from duiit.methods.recipe import augmentation, lr_factor
from duiit.models.predictor import plain_cnn


class StackNet(nn.Module):
    """Slice embeddings (the recipe's plain CNN) -> mean over a patient's slices -> age."""

    def __init__(self, width: float, norm: str) -> None:
        super().__init__()
        self.backbone = plain_cnn(width, norm)
        dim = int(self.backbone.eval()(torch.zeros(1, 1, 32, 32)).shape[-1])
        self.backbone.train()
        self.head = nn.Linear(dim, 1)

    def forward(self, stacks: list[torch.Tensor]) -> torch.Tensor:
        """Stacks (each S_i x 1 x H x W) -> one output each."""
        feats = self.backbone(torch.cat(stacks))
        pooled = torch.stack([f.mean(0) for f in feats.split([len(s) for s in stacks])])
        return self.head(pooled).squeeze(-1)


def fit_split(
    images: torch.Tensor,
    ages: np.ndarray,
    patients: np.ndarray,
    parts: pd.Series,
    cfg: Config,
    args: argparse.Namespace,
    seed: int,
) -> dict[str, float]:
    """Train on the split's training patients, select on its validation patients, and score
    its test patients: slice and patient MSE (every slice at its patient's prediction)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    index = {p: np.flatnonzero(patients == p) for p in np.unique(patients)}
    age = {p: float(ages[i[0]]) for p, i in index.items()}
    train = [p for p in index if parts[p] == "train"]
    val = [p for p in index if parts[p] == "val"]
    test = [p for p in index if parts[p] == "test"]
    train_ages = np.array([age[p] for p in train])
    mean, sd = train_ages.mean(), train_ages.std()
    p = cfg.predictor
    net = StackNet(p.width, p.norm)
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    steps = p.epochs * sum(len(index[q]) for q in train) // (args.patients * args.slices)
    factor = lr_factor(p, steps)
    augment = augmentation(p)

    def predict(group: list[str]) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            out = [net([images[index[q]].float()]).item() for q in group]
        net.train()
        return np.array(out) * sd + mean

    best, best_state = np.inf, None
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = p.lr * factor(step)
        pick = torch.randint(len(train), (args.patients,), generator=gen).tolist()
        stacks = []
        for k in pick:
            rows = index[train[k]]
            take = torch.randperm(len(rows), generator=gen)[: args.slices].numpy()
            stacks.append(images[rows[take]].float())
        sizes = [len(s) for s in stacks]
        x = torch.cat(stacks)
        if augment is not None:
            x = augment(x)
        target = torch.tensor([(age[train[k]] - mean) / sd for k in pick], dtype=torch.float32)
        loss = nn.functional.mse_loss(net(list(x.split(sizes))), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == steps:
            mae = float(np.abs(predict(val) - np.array([age[q] for q in val])).mean())
            if mae < best:
                best = mae
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    per_patient = dict(zip(test, predict(test), strict=True))
    rows = np.concatenate([index[q] for q in test])
    pred = np.array([per_patient[q] for q in patients[rows]])
    scores = prediction_metrics(pred, ages[rows], None, patients[rows])
    return {"mse": scores["mse"], "patient_mse": scores["patient_mse"], "val_mae": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="an experiment folder with target_only runs")
    parser.add_argument("--target", type=Path, required=True, help="the target manifest")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the scores, a row a split")
    parser.add_argument("--splits", type=int, nargs="*", help="which splits (default: all)")
    parser.add_argument("--patients", type=int, default=4, help="patients a step")
    parser.add_argument("--slices", type=int, default=8, help="random slices a patient a step")
    parser.add_argument("--eval-every", type=int, default=20, help="validate every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = args.folder / "runs" / "PURE-CT"
    first = runs / "target_only" / "split-00"
    cfg = Config.model_validate(yaml.safe_load((first / "config.yaml").read_text()))
    target, _ = load_cohorts(args.target, [], cfg.data, quiet=True)
    ages = target.labels.numpy().astype(float)
    patients = target.patient_ids.astype(str)
    done = pd.read_csv(args.out, dtype={"split": int}) if args.out.exists() else None
    rows = [] if done is None else done.to_dict("records")
    splits = args.splits or sorted(int(d.name[-2:]) for d in (runs / "target_only").iterdir())
    for k in splits:
        if any(r["split"] == k for r in rows):
            continue
        run = runs / "target_only" / f"split-{k:02d}"
        split = pd.read_csv(run / "split.csv", dtype={"patient_id": str})
        parts = split.groupby("patient_id")["part"].first()
        start = time.time()
        row = fit_split(target.images, ages, patients, parts, cfg, args, seed=k)
        row["split"] = k
        row["seconds"] = round(time.time() - start)
        for method in ("target_only", "stack_ridge"):
            m = json.loads((runs / method / f"split-{k:02d}" / "result.json").read_text())
            row[f"{method}_mse"] = m["metrics"]["mse"]
            row[f"{method}_patient_mse"] = m["metrics"]["patient_mse"]
            row["n_test"], row["n_train"] = m["n"]["test"], m["n"]["train"]
        test = np.isin(patients, parts.index[parts == "test"])
        row["mean_mse"] = float(((ages[test] - ages[test].mean()) ** 2).mean())
        rows.append(row)
        print({key: round(v, 1) if isinstance(v, float) else v for key, v in row.items()})
        pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows).sort_values("split")
    print(table.round(1).to_string(index=False))
    print(table.mean(numeric_only=True).round(1).to_string())
    table = table.set_index("split")
    ratio = stats.holdout_ratio(table)
    for other in ("target_only", "stack_ridge"):
        for metric in ("mse", "patient_mse"):
            c = stats.compare(table[f"{other}_{metric}"], table[metric], ratio)
            lower = int((table[metric] < table[f"{other}_{metric}"]).sum())
            print(
                f"{metric}: the stack network minus {other} {c.mean_diff:+.1f}, lower on "
                f"{lower} of {len(table)} splits; corrected p {c.p:.3f}"
            )


if __name__ == "__main__":
    main()
