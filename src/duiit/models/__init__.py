"""Pure nn.Modules: translator parts and the predictor. No training logic here."""

from duiit.models.pool import ImagePool
from duiit.models.predictor import Predictor
from duiit.models.translator import (
    PatchDiscriminator,
    ResnetGenerator,
    TranslatorBank,
    default_blocks,
)

__all__ = [
    "ImagePool",
    "PatchDiscriminator",
    "Predictor",
    "ResnetGenerator",
    "TranslatorBank",
    "default_blocks",
]
