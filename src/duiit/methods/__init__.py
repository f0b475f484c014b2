"""Methods: one file each, all composing the same models and training core."""

from duiit.methods import duiit
from duiit.methods.base import REGISTRY, FittedModel, Method, get_method

__all__ = ["REGISTRY", "FittedModel", "Method", "duiit", "get_method"]
