"""Pure nn.Modules: translator parts and the predictor. No training logic here."""

from duiit.models.pool import ImagePool
from duiit.models.predictor import Predictor
from duiit.models.translator import (
    CutNetworks,
    CycleGanNetworks,
    PatchDiscriminator,
    PatchHead,
    ResnetGenerator,
    TranslatorNetworks,
    default_blocks,
)

__all__ = [
    "CutNetworks",
    "CycleGanNetworks",
    "ImagePool",
    "PatchDiscriminator",
    "PatchHead",
    "Predictor",
    "ResnetGenerator",
    "TranslatorNetworks",
    "default_blocks",
]
