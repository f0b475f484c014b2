"""Methods: one file each, all composing the same models and training core.

Importing this package registers every method in `REGISTRY`.
"""

from duiit.methods import (
    augment,
    classical,
    cyclegan,
    dann,
    duiit,
    multitask,
    target_only,
    transfer,
)
from duiit.methods.base import REGISTRY, FittedModel, Method, get_method

__all__ = [
    "REGISTRY",
    "FittedModel",
    "Method",
    "augment",
    "classical",
    "cyclegan",
    "dann",
    "duiit",
    "get_method",
    "multitask",
    "target_only",
    "transfer",
]
