"""Everything that imports torch: networks, training, inference, checkpoints.

Only this subpackage may import torch or torchvision (an import-linter contract checks it).
torchvision is always imported through :func:`import_torchvision`, which makes the PyPI CUDA
wheel of torchvision importable beside a CPU-only torch.
"""

from semlive.models._torchvision_compat import (
    compat_applied,
    compiled_ops_available,
    import_torchvision,
)

__all__ = ["compat_applied", "compiled_ops_available", "import_torchvision"]
