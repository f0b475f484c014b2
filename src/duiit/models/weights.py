"""Starting a predictor from a user's checkpoint file (`predictor.weights`).

Takes what people have: ImageNet ResNet weights as torchvision or timm save them (a plain
state dict with `conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`), the same wrapped in
`state_dict` / `model` / a DDP `module.` prefix, or a duiit `model.pt`. MONAI's ResNet names
its layers as torchvision does, so names match after the prefixes go; a 3-channel first
convolution is summed over its input channels (a grey image repeated to RGB gives the same
response). Every tensor is accounted for in a printed table. Nothing is downloaded.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import torch
from rich.table import Table
from torch import nn

from duiit.errors import DuiitError
from duiit.progress import console

PREFIXES = ("module.", "backbone.", "model.", "encoder.")


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from the containers people save them in."""
    if not path.is_file():
        raise DuiitError(f"predictor.weights: {path} does not exist or is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DuiitError(
            f"predictor.weights: {path} is not a PyTorch checkpoint of tensors "
            f"({type(exc).__name__}); give a state dict saved with torch.save"
        ) from None
    for key in ("predictor", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    tensors = (
        {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if isinstance(obj, dict)
        else {}
    )
    if not tensors:
        raise DuiitError(f"predictor.weights: {path} holds no named tensors (a state dict)")
    return tensors


def _plain(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def load_predictor_weights(predictor: nn.Module, path: Path, quiet: bool = False) -> int:
    """Copy every tensor of `path` whose name and shape fit the predictor's backbone into it;
    print which layers matched, which did not and why. Returns the number loaded; a file
    that loads nothing is an error (a wrong file must not pass silently)."""
    theirs = {_plain(k): v for k, v in _state_dict(path).items()}
    backbone = predictor.backbone.state_dict()
    rows: list[tuple[str, str, str]] = []
    loaded: dict[str, torch.Tensor] = {}
    for name, mine in backbone.items():
        other = theirs.get(name)
        if other is None:
            rows.append((name, "kept", "not in the file"))
            continue
        if other.dim() == 4 and other.shape[1] == 3 and mine.shape[1] == 1:
            other = other.sum(dim=1, keepdim=True)  # RGB first convolution -> grey
            why = "3 input channels summed to 1"
        else:
            why = ""
        if other.shape != mine.shape:
            rows.append(
                (name, "kept", f"shape {tuple(other.shape)} in the file, {tuple(mine.shape)} here")
            )
            continue
        loaded[name] = other.to(mine.dtype)
        rows.append((name, "loaded", why))
    unused = sorted(set(theirs) - set(backbone))
    if not loaded:
        raise DuiitError(
            f"predictor.weights: nothing in {path} fits this predictor ({len(theirs)} tensors "
            f"in the file, e.g. {', '.join(list(theirs)[:3])}; the backbone's are named like "
            f"{', '.join(list(backbone)[:3])}); check predictor.network and predictor.width"
        )
    predictor.backbone.load_state_dict(loaded, strict=False)
    if not quiet:
        _print_table(path, rows, unused)
    return len(loaded)


def _layer(name: str) -> str:
    """`layer1.0.conv1.weight` -> `layer1.0.conv1`: one table row per layer."""
    return name.rsplit(".", 1)[0]


def _print_table(path: Path, rows: list[tuple[str, str, str]], unused: list[str]) -> None:
    table = Table(title=f"predictor weights from {path}", show_lines=False)
    for col in ("layer", "tensors", "result", "why"):
        table.add_column(col)
    grouped: Counter[tuple[str, str, str]] = Counter(
        (_layer(name), status, why) for name, status, why in rows
    )
    for (layer, status, why), n in grouped.items():
        table.add_row(layer, str(n), status, why)
    for layer, n in Counter(_layer(name) for name in unused).items():
        table.add_row(layer, str(n), "unused", "no such layer in this predictor (e.g. the head)")
    done = sum(n for (_, status, _), n in grouped.items() if status == "loaded")
    err = console(stderr=True)  # not wrapped where stderr is a file or a pipe
    err.print(table)
    err.print(f"{done} of {len(rows)} backbone tensors loaded; the head starts afresh")
