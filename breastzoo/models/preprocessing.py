"""The in-model preprocessing every breastzoo model shares: optional stain normalisation,
then scaling raw [0, 255] images to [0, 1]. Kept in the model so a saved model takes raw
images (the serving contract) and never depends on the pipeline that trained it."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# crop_scaled lives with the other ops the models share; imported here for older callers.
from breastzoo.models.shared_ops import crop_scaled

__all__ = ["crop_scaled", "make_stain_layer", "to_unit_range"]


def make_stain_layer(stain: str) -> keras.layers.Layer | None:
    """A ``StainNormalization`` layer for ``stain``, or ``None`` for ``"none"``.

    Example:
        >>> make_stain_layer("none") is None
        True
    """
    if stain == "none":
        return None
    from breastzoo.data.stain import StainNormalization

    return StainNormalization(method=stain)


def to_unit_range(images: Any, stain_layer: keras.layers.Layer | None) -> Any:
    """uint8 (or float [0, 255]) images -> stain-normalised float32 in [0, 1].

    Example:
        >>> import numpy as np
        >>> float(to_unit_range(np.full((1, 2, 2, 3), 255, "uint8"), None)[0, 0, 0, 0])
        1.0
    """
    x = ops.cast(images, "float32")
    if stain_layer is not None:
        x = stain_layer(x)
    return x / 255.0
