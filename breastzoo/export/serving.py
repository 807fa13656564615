"""One exportable serving function for every breastzoo model: raw uint8 images in, class
scores out.

The serving contract every export format shares (SavedModel ``serving_default``, TFLite,
ONNX)::

    input   images          uint8  [N, H, W, 3]   raw RGB at the model's image_size
    output  probabilities   float32 [N, C]
            class           int32   [N]           argmax of probabilities (the vote winner)
            boxes           float32 [N, k, 4]     pixel (y0, x0, y1, x1) regions in voting order
                                                  (models whose spec has_rois: DeNet's ROIs,
                                                  the baselines' crops, the hybrid's grid cells)
            n_rois          int32   [N]           how many of the regions voted

Whole-image models (``sanet_resize``, ``resnet50_full``) have no regions: their signatures
return ``probabilities`` and ``class`` only. A bagging ``Ensemble`` returns its combined
probabilities and its first member's regions. Scaling and stain normalisation are inside the
model (ARCHITECTURE.md convention 4), so a client sends the microscope's pixels unchanged.

This module knows no model class: each model owns its outputs
(``model.serving_outputs(images, builtin_ops=..., noise_rows=...)``) and the model table
(:mod:`breastzoo.models.specs`) says what it serves and in which formats; here the outputs
are checked, cast and given the argmax ``class``.

Two variants of the same function:

* ``builtin_ops=False`` (SavedModel / TF Serving): the model's own inference, unchanged.
* ``builtin_ops=True`` (TFLite builtins, ONNX): the same numbers from ops that TFLite's
  builtin set has (:mod:`breastzoo.models.shared_ops`): arg-max with ``tf.argmax`` (Keras'
  emits ``BitwiseAnd``), antialiased resizes (``ScaleAndTranslate``) as two constant matrix
  products, and DeNet's fixed-seed location draws (``StatelessRandomNormalV2``) as a constant
  table computed once from the same seeds (Philox draws are prefix-stable, so row i of a
  batch of N equals row i of the table). ``random_roi`` draws fresh crops with a random op
  and is served as a SavedModel only; ``oracle_roi`` needs lesion centres and is not served.

The Keras model uses one draw per step for the whole batch (an image's ROIs do not depend on
its position in the batch), so the table needs one row (``noise_rows=1``, the default); more
rows repeat the draw pattern of older models that drew one row per image.

Example:
    >>> import numpy as np
    >>> from breastzoo.configs import preset
    >>> from breastzoo.models.factory import build_model
    >>> model = build_model(preset("tiny"), ["benign", "malignant"])
    >>> fn = serving_function(model, builtin_ops=True)
    >>> sorted(fn(np.zeros((1, 92, 140, 3), "uint8")))
    ['boxes', 'class', 'n_rois', 'probabilities']
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "DEFAULT_NOISE_ROWS",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "has_rois",
    "image_hw",
    "input_signature",
    "serving_function",
    "serving_outputs",
]

INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "class", "boxes", "n_rois")
#: Rows of the constant location-noise table of the builtin DeNet rollout (see module doc).
DEFAULT_NOISE_ROWS = 1


def has_rois(model: keras.Model) -> bool:
    """Whether the model's serving signature returns ``boxes`` and ``n_rois`` (its spec's
    ``has_rois``; an ensemble's first member's).

    Raises:
        ValueError: not a breastzoo model.

    Example:
        >>> from breastzoo.models.baselines import WholeImageClassifier
        >>> has_rois(WholeImageClassifier(2, image_size=(64, 48), input_size=32, width=2))
        False
    """
    from breastzoo.models.specs import spec_of

    return spec_of(model).has_rois


def image_hw(model: keras.Model) -> tuple[int, int]:
    """``(height, width)`` of the images the model takes (its ``image_size`` is (w, h)).

    Example:
        >>> from breastzoo.models.baselines import WholeImageClassifier
        >>> image_hw(WholeImageClassifier(2, image_size=(64, 48), input_size=32, width=2))
        (48, 64)
    """
    width, height = model.image_size
    return int(height), int(width)


def input_signature(model: keras.Model, batch: int | None = None) -> list[tf.TensorSpec]:
    """The serving input: uint8 ``[batch, H, W, 3]`` named ``images``.

    Args:
        model: a breastzoo model.
        batch: fixed batch size, or ``None`` (any).

    Example:
        >>> from breastzoo.models.baselines import WholeImageClassifier
        >>> input_signature(WholeImageClassifier(2, image_size=(64, 48), input_size=32,
        ...                                      width=2))[0].shape
        TensorShape([None, 48, 64, 3])
    """
    height, width = image_hw(model)
    return [tf.TensorSpec([batch, height, width, 3], tf.uint8, name=INPUT_NAME)]


def _check(model: keras.Model, builtin_ops: bool, noise_rows: int) -> bool:
    """Refuse what cannot be served; return whether the model reports regions."""
    from breastzoo.models.specs import check_servable

    spec = check_servable(model, builtin_ops)
    if isinstance(noise_rows, bool) or not isinstance(noise_rows, int) or noise_rows < 1:
        raise ValueError(f"noise_rows must be a positive int. Received: noise_rows={noise_rows!r}")
    return spec.has_rois


# ---------------------------------------------------------------------- public API


def serving_outputs(
    model: keras.Model,
    images: Any,
    *,
    builtin_ops: bool = False,
    noise_rows: int = DEFAULT_NOISE_ROWS,
) -> dict[str, tf.Tensor]:
    """Run the serving contract on ``images`` (eagerly or while tracing).

    Args:
        model: a breastzoo model of any ``fit --model`` that can be served (see
            :mod:`breastzoo.models.specs`), or a bagging ``Ensemble`` of them.
        images: uint8 ``[N, H, W, 3]`` at the model's image size.
        builtin_ops: use only TFLite builtin ops (see module docstring).
        noise_rows: rows of the location-noise table (``builtin_ops`` DeNet only).

    Returns:
        ``{"probabilities", "class"}`` plus ``{"boxes", "n_rois"}`` for models with regions.

    Raises:
        ValueError: not a breastzoo model, an unservable one (``oracle_roi``), or
            ``random_roi`` with ``builtin_ops`` (its fresh random crops need a random op).

    Example:
        >>> import numpy as np
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> m = build_model(preset("tiny"), ["a", "b"])
        >>> serving_outputs(m, np.zeros((2, 92, 140, 3), "uint8"))["class"].shape
        TensorShape([2])
    """
    rois = _check(model, builtin_ops, noise_rows)
    images = tf.convert_to_tensor(images)
    out = model.serving_outputs(images, builtin_ops=builtin_ops, noise_rows=noise_rows)
    probs = tf.cast(out["probabilities"], tf.float32)
    result = {
        "probabilities": probs,
        "class": tf.argmax(probs, axis=-1, output_type=tf.int32),
    }
    if rois:
        result["boxes"] = tf.cast(out["boxes"], tf.float32)
        result["n_rois"] = tf.cast(out["n_rois"], tf.int32)
    return result


def serving_function(
    model: keras.Model,
    *,
    builtin_ops: bool = False,
    batch: int | None = None,
    noise_rows: int = DEFAULT_NOISE_ROWS,
) -> Any:
    """A ``tf.function`` with the serving input signature (uint8 ``images``).

    Args:
        model: a breastzoo model (see :func:`serving_outputs`).
        builtin_ops: only TFLite builtin ops (TFLite, ONNX) instead of the model's own ops.
        batch: fixed batch size of the signature (``None``: any).
        noise_rows: rows of the location-noise table (``builtin_ops`` DeNet only).

    Returns:
        A ``tf.function``; ``.get_concrete_function()`` gives the traced graph.

    Raises:
        ValueError: as :func:`serving_outputs`, before anything is traced.

    Example:
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> fn = serving_function(build_model(preset("tiny"), ["a", "b"]))
        >>> fn.get_concrete_function().structured_outputs["probabilities"].shape
        TensorShape([None, 2])
    """
    _check(model, builtin_ops, noise_rows)  # fail before tracing

    @tf.function(input_signature=input_signature(model, batch))
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return serving_outputs(model, images, builtin_ops=builtin_ops, noise_rows=noise_rows)

    return serve
