"""fabricnms: fabric defect detection with a differentiable, Sinkhorn-matching NMS.

The heavy names (``sinkhorn``, ``DifferentiableNMS``, ``Detector``) are resolved lazily so that
``import fabricnms`` and ``fabricnms --version`` do not import torch.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Never phone home: albumentations checks PyPI for updates on import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

_LAZY = {
    "load": "fabricnms.api",
    "Model": "fabricnms.api",
    "FrameResult": "fabricnms.api",
    "sinkhorn": "fabricnms.model.sinkhorn",
    "DifferentiableNMS": "fabricnms.model.dnms",
    "Detector": "fabricnms.model.detector",
}

__all__ = [
    "Detector",
    "DifferentiableNMS",
    "FrameResult",
    "Model",
    "__version__",
    "load",
    "sinkhorn",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fabricnms' has no attribute {name!r}")
