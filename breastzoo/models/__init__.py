"""Models: SaNet (soft attention) and DeNet (decision LSTM) of paper 000, and the others.

Importing a model module registers its classes with Keras (package ``"breastzoo"``), which
``keras.saving.load_model(..., safe_mode=True)`` needs. The package itself imports nothing
heavy: ``breastzoo.models.specs`` (the table of ``fit --model`` names that ``configs`` reads)
must not pull in TensorFlow, so the names below are imported on first access.

Example:
    >>> from breastzoo.models import SaNet
    >>> SaNet(num_classes=8, width=2, feature_dim=4).num_classes
    8
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DeNet", "ResidualUnit", "SaNet", "make_state"]

_LAZY = {
    "DeNet": "breastzoo.models.denet",
    "make_state": "breastzoo.models.denet",
    "ResidualUnit": "breastzoo.models.sanet",
    "SaNet": "breastzoo.models.sanet",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
