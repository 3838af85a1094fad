"""Everything that imports torch: networks, training, inference, checkpoints.

Only this subpackage may import torch or torchvision (an import-linter contract checks it).
torchvision is always imported through :func:`import_torchvision`, which makes the PyPI CUDA
wheel of torchvision importable beside a CPU-only torch.
"""

from semlive.models._checkpoint import CARD_FORMAT, ModelCard, Normalisation, load_model, save_model
from semlive.models._device import Runtime, choose_runtime
from semlive.models._metrics import Confusion, confusion
from semlive.models._networks import (
    ARCHITECTURES,
    Architecture,
    build_network,
    load_initial_weights,
)
from semlive.models._torchvision_compat import (
    compat_applied,
    compiled_ops_available,
    import_torchvision,
)

__all__ = [
    "ARCHITECTURES",
    "CARD_FORMAT",
    "Architecture",
    "Confusion",
    "ModelCard",
    "Normalisation",
    "Runtime",
    "build_network",
    "choose_runtime",
    "compat_applied",
    "compiled_ops_available",
    "confusion",
    "import_torchvision",
    "load_initial_weights",
    "load_model",
    "save_model",
]
