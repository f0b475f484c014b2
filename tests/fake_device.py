"""A second device type on a CPU-only machine, to catch the device mistakes a GPU would.

Tensors on the `fakegpu` device (PyTorch's PrivateUse1 slot, renamed) hold their values in
CPU tensors, so code runs to the end with real numbers (losses, checkpoints, FID), which
the `meta` device cannot do. Under `on_fake_device()` every operator is checked as CUDA
checks it: one given tensors of both devices fails, except for copies between them and
0-dim CPU tensors (scalars), which CUDA accepts too. A `.to(device)` missing anywhere on a
path therefore fails here as it would on a GPU. Reading values on the host takes an
explicit `.cpu()`, `.item()` or `float()`, as on a GPU (`.numpy()` on the device fails).
One limit: `torch.tensor(data, device=...)` bypasses the check and fails; code builds such
tensors on the CPU and moves them with `.to(device)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

NAME = "fakegpu"
aten = torch.ops.aten
# Operators that move data between devices, as `.to()`, `.cpu()` and `copy_` do.
CROSSING = {aten._to_copy.default, aten.copy_.default}


class OnFakeDevice(torch.Tensor):
    """A tensor that says it lives on `fakegpu`; `elem` holds its values on the CPU."""

    elem: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> OnFakeDevice:
        t = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.size(),
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            layout=elem.layout,
            device=torch.device(NAME, 0),
            requires_grad=elem.requires_grad,
        )
        t.elem = elem
        return t

    def __repr__(self) -> str:  # type: ignore[override]
        return f"OnFakeDevice({self.elem!r})"

    def tolist(self) -> Any:  # type: ignore[override]
        """The values on the host, as `.tolist()` gives them for a GPU tensor (torch refuses
        it for tensor subclasses)."""
        return self.elem.tolist()

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Saved as its CPU values: what `torch.load(map_location="cpu")` gives for a GPU
        tensor, the only way duiit loads checkpoints."""
        return self.elem.__reduce_ex__(protocol)

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _run(func, args, kwargs or {})


def _on_fake(device: Any) -> bool:
    return device is not None and torch.device(device).type == NAME


def _run(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Check the devices of one operator's tensors, run it on their CPU values, and put
    what it returns on the device its inputs (or its `device=` argument) say."""
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    fake = [t for t in tensors if isinstance(t, OnFakeDevice)]
    if func not in CROSSING:
        cpu = [t for t in tensors if not isinstance(t, OnFakeDevice) and t.dim() > 0]
        if fake and cpu:
            shapes = ", ".join(f"{t.device} {tuple(t.shape)}" for t in tensors)
            raise RuntimeError(f"{func} mixes devices: {shapes}")
    to_fake = bool(fake)
    if kwargs.get("device") is not None:
        to_fake = _on_fake(kwargs["device"])
        kwargs = {**kwargs, "device": torch.device("cpu")}
    values_args, values_kwargs = tree_map(
        lambda t: t.elem if isinstance(t, OnFakeDevice) else t, (args, kwargs)
    )
    out = func(*values_args, **values_kwargs)
    inputs = {id(t): t for t in tensors} | {id(t.elem): t for t in fake}

    def place(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if id(t) in inputs:  # an in-place operator returned its input
            given = inputs[id(t)]
            if isinstance(given, OnFakeDevice) and given.shape != t.shape:
                raise NotImplementedError(f"{func} resizes a fakegpu tensor in place")
            return given
        return OnFakeDevice(t) if to_fake else t

    return tree_map(place, out)


class _FakeDeviceMode(TorchDispatchMode):
    """Sees every operator, so tensors created with `device=fakegpu` and moves from the CPU
    (which have no fakegpu tensor among their inputs) land on the fake device too."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _run(func, args, kwargs or {})


def register() -> None:
    """Make `fakegpu` a device type of this process. The autograd engine sizes its per-device
    queues at the process's first backward pass, so this must come before any: conftest
    calls it at import (registered later, a backward on the device fails an internal
    assert in whichever test runs after another test's backward)."""
    if torch._C._get_privateuse1_backend_name() != NAME:
        _setup_privateuseone_for_python_backend(NAME)


@contextmanager
def on_fake_device() -> Iterator[torch.device]:
    """Within: `fakegpu:0` is a device, checked as above. Yields it."""
    register()
    with _FakeDeviceMode():
        yield torch.device(NAME, 0)
