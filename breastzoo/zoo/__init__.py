"""The breastzoo model zoo: versioned, checksummed, carded models (see docs/zoo.md).

Nothing here imports TensorFlow at import time; loading a model does.

Example:
    >>> from breastzoo import zoo
    >>> zoo.check_name("denet_sanet_100x")
    'denet_sanet_100x'
"""

from __future__ import annotations

from breastzoo.zoo.loaded import LoadedModel, load, load_path
from breastzoo.zoo.publish import publish_run
from breastzoo.zoo.registry import (
    check_name,
    list_models,
    locate,
    resolve_root,
    show,
    verify,
    versions,
)

__all__ = [
    "LoadedModel",
    "check_name",
    "list_models",
    "load",
    "load_path",
    "locate",
    "publish_run",
    "resolve_root",
    "show",
    "verify",
    "versions",
]
