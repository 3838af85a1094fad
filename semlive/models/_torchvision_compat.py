"""Import torchvision beside a CPU-only build of torch.

The torchvision wheel on PyPI is a CUDA build. Installed beside the CPU wheel of torch (what
semlive's constraints file pins, so that laptops do not download several GB of CUDA), its
compiled extension ``torchvision/_C.so`` cannot load. torchvision copes with that for every
operator except two: ``torchvision/_meta_registrations.py`` registers fake (meta) kernels for
``torchvision::nms`` and ``torchvision::qnms`` unconditionally, and registering a kernel for an
operator that was never defined raises ``RuntimeError: operator torchvision::nms does not exist``,
so ``import torchvision`` fails as a whole.

:func:`import_torchvision` first imports torchvision as it is. Only if that fails with exactly
this error does it define the schemas of the two operators (copied from torchvision's C++
sources, without kernels) and import again. The models semlive uses (DeepLabV3 and its ResNet
and MobileNet backbones) need none of the compiled operators; calling ``torchvision.ops.nms``
afterwards still fails with torchvision's own message about the missing C++ ops. Where the
extension loads normally (a matching CPU or CUDA pair), this module changes nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["compat_applied", "compiled_ops_available", "import_torchvision"]

logger = logging.getLogger(__name__)

# Schemas as torchvision 0.28's csrc/ops/nms.cpp and csrc/ops/quantized/cpu/qnms_kernel.cpp
# define them; the registrations in _meta_registrations.py must find exactly these.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_MISSING_OPERATOR = "operator torchvision::"

# The torch.library.Library that holds the schemas; it must stay referenced, or torch drops
# the definitions again. None while no compatibility step was needed.
_library: Any = None

# One import at a time: the fix forgets a failed import and imports again, and a second thread
# importing meanwhile found a half-built torchvision (AttributeError: module 'torchvision' has
# no attribute 'models', seen when a run's warm-up, then in a thread of its own, and its first
# tile job imported together).
_lock = threading.RLock()


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, applying the CPU-torch fix only when it is needed
    (thread-safe: every caller gets the whole module)."""
    with _lock:
        try:
            import torchvision
        except RuntimeError as exc:
            if _MISSING_OPERATOR not in str(exc):
                raise
            _forget_partial_import()
            _define_operator_schemas()
            import torchvision

            logger.info(
                "torchvision's compiled ops do not load beside this torch (%s); "
                "defined nms/qnms schemas so the models import (detection ops stay unavailable)",
                exc,
            )
        module: ModuleType = torchvision
        return module


def compat_applied() -> bool:
    """True when :func:`import_torchvision` had to define the missing operator schemas."""
    return _library is not None


def compiled_ops_available() -> bool:
    """True when torchvision's compiled C++ operators (nms, roi_align, ...) are loaded."""
    from torchvision.extension import _has_ops

    return bool(_has_ops())


def _forget_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_operator_schemas() -> None:
    global _library
    import torch

    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
        for schema in _SCHEMAS:
            _library.define(schema)
