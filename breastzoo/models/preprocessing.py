"""The in-model preprocessing every breastzoo model shares: optional stain normalisation,
then scaling raw [0, 255] images to [0, 1]. Kept in the model so a saved model takes raw
images (the serving contract) and never depends on the pipeline that trained it."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


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


def crop_scaled(images: Any, centres: Any, patch_size: int, scale: int = 1) -> Any:
    """``[B, K, patch_size, patch_size, C]`` patches whose windows are ``patch_size * scale``
    pixels wide, centred at ``centres`` (pixel ``(y, x)``, ``[B, K, 2]``), shifted inside the
    image, and average-pooled by ``scale``.

    ``scale=1`` is paper 000's full-resolution ROI. A larger scale gives the classifier more
    tissue at the same input size (and cost): on real BreaKHis at 100X a 112-pixel window
    holds a few dozen nuclei, and models trained on such windows learned the training
    patients' cells rather than benign vs malignant (docs/models.md). Average pooling by an
    integer factor is exact area resampling and a TFLite builtin, so exports keep working.

    Args:
        images: ``[B, H, W, C]`` float images.
        centres: ``[B, K, 2]`` pixel centres of the windows.
        patch_size: output side.
        scale: integer window / output ratio (>= 1).

    Example:
        >>> import numpy as np
        >>> x = np.ones((1, 48, 64, 3), "float32")
        >>> crop_scaled(x, np.full((1, 2, 2), 20.0, "float32"), 8, scale=2).shape
        TensorShape([1, 2, 8, 8, 3])
    """
    from breastzoo.data.pipeline import crop_at

    window = patch_size * scale
    patches = crop_at(images, centres, window, normalized=False, border="clamp")
    if scale == 1:
        return patches
    shape = ops.shape(patches)
    flat = ops.reshape(patches, (-1, window, window, shape[-1]))
    pooled = ops.average_pool(flat, pool_size=scale, strides=scale, padding="valid")
    return ops.reshape(pooled, (shape[0], shape[1], patch_size, patch_size, shape[-1]))
