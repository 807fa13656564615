"""One exportable serving function per model type: raw uint8 images in, class scores out.

The serving contract every export format shares (SavedModel ``serving_default``, TFLite,
ONNX)::

    input   images          uint8  [N, H, W, 3]   raw RGB at the model's image_size
    output  probabilities   float32 [N, C]
            class           int32   [N]           argmax of probabilities (the vote winner)
            boxes           float32 [N, k, 4]     pixel (y0, x0, y1, x1) ROIs in voting order
                                                  (ROI models only: denet_sanet,
                                                  resnet50_roi, random_roi)
            n_rois          int32   [N]           how many of the ROIs voted (ROI models only)

Whole-image models (``sanet_resize``, ``resnet50_full``) have no ROIs: their signatures
return ``probabilities`` and ``class`` only. Scaling and stain normalisation are inside the
model (ARCHITECTURE.md convention 4), so a client sends the microscope's pixels unchanged.

Two variants of the same function:

* ``builtin_ops=False`` (SavedModel / TF Serving): the model's own inference
  (``model.infer``), unchanged.
* ``builtin_ops=True`` (TFLite builtins, ONNX): the same numbers from ops that TFLite's
  builtin set has. ``SelectiveAttention.infer`` already unrolls DeNet in Python and crops
  with gathers, but it emits two ops that are not builtins: ``StatelessRandomNormalV2``
  (the fixed-seed location draws of ``inference_locations="sample"``) and ``BitwiseAnd``
  (``keras.ops.argmax`` tests the sign bit to order -0.0 before 0.0). Here the draws are a
  constant table computed once from the same seeds (Philox draws are prefix-stable, so row i
  of a batch of N equals row i of the table), and argmax is ``tf.argmax`` (the two differ only
  on -0.0, which softmax probabilities never are). The antialiased resize of
  ``sanet_resize`` (``ScaleAndTranslate``, not a builtin either) becomes two constant
  matrix products, exact because that resize is linear and separable.

The Keras model uses one draw per step for the whole batch (an image's ROIs do not depend on
its position in the batch), so the table needs one row (``noise_rows=1``, the default); more
rows repeat the draw pattern of older models that drew one row per image.

Example:
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
import numpy as np
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


def _kind(model: keras.Model) -> str:
    from breastzoo.models.baselines import PatchVoteClassifier, WholeImageClassifier
    from breastzoo.models.selective import SelectiveAttention

    if isinstance(model, SelectiveAttention):
        return "selective"
    if isinstance(model, WholeImageClassifier):
        return "whole"
    if isinstance(model, PatchVoteClassifier):
        if model.mode == "oracle":
            raise ValueError(
                "oracle_roi needs ground-truth lesion centres as a second input and cannot "
                "be served. Received: model mode='oracle'"
            )
        return "patch_vote"
    raise ValueError(
        "Cannot export this model: expected a breastzoo SelectiveAttention, "
        f"WholeImageClassifier or PatchVoteClassifier. Received: model={type(model).__name__}"
    )


def _check_builtin(kind: str, builtin_ops: bool) -> None:
    if builtin_ops and kind == "patch_vote":
        raise ValueError(
            "random_roi draws fresh random crops per call, which needs a random op that "
            "TFLite builtins lack; export it as a SavedModel. Received: model mode='random'"
        )


def has_rois(model: keras.Model) -> bool:
    """Whether the model's serving signature returns ``boxes`` and ``n_rois``.

    Example:
        >>> from breastzoo.models.baselines import WholeImageClassifier
        >>> has_rois(WholeImageClassifier(2, image_size=(64, 48), input_size=32, width=2))
        False
    """
    return _kind(model) != "whole"


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


# ---------------------------------------------------------------------- builtin-op pieces


def _vote(patch_probs: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``breastzoo.models.selective.vote`` with ``tf.argmax`` (no BitwiseAnd)."""
    k_max, num_classes = patch_probs.shape[1], patch_probs.shape[2]
    onehot = tf.one_hot(tf.argmax(patch_probs, axis=-1, output_type=tf.int32), num_classes)
    counts = tf.cumsum(onehot, axis=1)
    top = tf.reduce_max(counts, axis=-1, keepdims=True)
    n_top = tf.reduce_sum(tf.cast(tf.equal(counts, top), tf.int32), axis=-1)
    decisive = tf.equal(n_top, 1)[:, k - 1 :]
    any_decisive = tf.reduce_any(decisive, axis=1)
    first = tf.argmax(tf.cast(decisive, tf.int32), axis=1, output_type=tf.int32)
    idx = tf.where(any_decisive, first + (k - 1), k_max - 1)
    pick = tf.one_hot(idx, k_max)[..., None]
    n = tf.cast(idx + 1, patch_probs.dtype)[:, None]
    final_counts = tf.reduce_sum(counts * pick, axis=1)
    mean_probs = tf.reduce_sum(tf.cumsum(patch_probs, axis=1) * pick, axis=1) / n
    return (final_counts + mean_probs) / (n + 1.0), idx + 1


def _noise_table(model: keras.Model, steps: int, rows: int) -> np.ndarray:
    """``[steps, rows, 2]``: the draws ``SelectiveAttention._rollout`` makes at inference."""
    with tf.init_scope():  # eager even while tracing: the table becomes a graph constant
        return _noise_table_eager(model, steps, rows)


def _noise_table_eager(model: keras.Model, steps: int, rows: int) -> np.ndarray:
    return np.stack(
        [
            keras.ops.convert_to_numpy(
                keras.random.normal((rows, 2), seed=model.seed * 1009 + t)
            ).astype("float32")
            for t in range(steps)
        ]
    )


def _selective_builtin(model: keras.Model, images: tf.Tensor, noise_rows: int) -> dict:
    """``SelectiveAttention.infer`` from builtin ops; same outputs (see module docstring)."""
    x = model._scale(images)
    steps = max(2 * model.k_max, model.max_steps)
    batch = tf.shape(x)[0]
    denet = model.denet
    loc = denet.initial_location(batch, "center")
    lstm_state = denet.initial_state(batch)
    sample = model.inference_locations == "sample"
    if sample:
        table = tf.constant(_noise_table(model, steps, noise_rows))
        rows = tf.math.floormod(tf.range(batch), noise_rows)
    probs_t, p_t, select_t, loc_t = [], [], [], []
    for t in range(steps):
        patch = model._crop(x, loc)
        feats, probs = model.classifier.features_and_probs(patch, training=False)
        pred = tf.argmax(probs, axis=-1, output_type=tf.int32)
        state = denet.make_state(
            feats, model.avg_train_loss, model.best_val_accuracy, model.iteration, pred, None, loc
        )
        p, mu, lstm_state = denet.step(state, lstm_state, training=False)
        select, next_loc, _ = denet.sample(p, mu, None, deterministic=True)
        if sample:
            noise = tf.gather(table[t], rows)
            next_loc = tf.clip_by_value(mu + noise * denet.location_std(), 0.0, 1.0)
        probs_t.append(probs)
        p_t.append(p)
        select_t.append(select)
        loc_t.append(loc)
        loc = next_loc
    probs_all, p_all = tf.stack(probs_t, 1), tf.stack(p_t, 1)
    select_all, loc_all = tf.stack(select_t, 1), tf.stack(loc_t, 1)
    # Voting order as in SelectiveAttention.infer (roi_order): selected glimpses first, in
    # order, then the rest by decreasing select probability; or all by select probability.
    if getattr(model, "roi_order", "selected") == "probability":
        priority = 1.0 - p_all
    else:
        t_idx = tf.range(steps, dtype=tf.float32)[None, :]
        priority = tf.where(select_all > 0.5, t_idx, steps + (1.0 - p_all))
    order = tf.argsort(priority, axis=1)[:, : model.k_max]
    take = tf.one_hot(order, steps)
    patch_probs = tf.einsum("bks,bsc->bkc", take, probs_all)
    locs = tf.einsum("bks,bsc->bkc", take, loc_all)
    out, n_rois = _vote(patch_probs, model.k)
    return {"probs": out, "boxes": model.boxes(locs), "n_rois": n_rois}


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix of ``keras.ops.image.resize(bilinear, antialias=True)`` along
    one axis (that resize is linear and separable): resize every one-hot column at once."""
    eye = np.eye(n_in, dtype="float32")[None, :, None, :]  # [1, n_in, 1, n_in]: channel = basis
    with tf.init_scope():  # eager even while tracing: the matrix becomes a graph constant
        out = keras.ops.image.resize(eye, (n_out, 1), interpolation="bilinear", antialias=True)
        return keras.ops.convert_to_numpy(out)[0, :, 0, :]


def _whole_builtin(model: keras.Model, images: tf.Tensor) -> dict:
    """``WholeImageClassifier`` inference with its resize as two constant matmuls."""
    from breastzoo.models.preprocessing import to_unit_range

    x = to_unit_range(images, model.preprocess)
    if model.input_size:
        height, width = image_hw(model)
        out_h, out_w = model._net_shape
        rows = tf.constant(_resize_matrix(height, out_h))
        cols = tf.constant(_resize_matrix(width, out_w))
        x = tf.einsum("ih,bhwc->biwc", rows, x)
        x = tf.einsum("jw,biwc->bijc", cols, x)
    return {"probs": model.classifier(x, training=False)}


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
        model: ``denet_sanet`` / ``resnet50_roi`` (SelectiveAttention), ``sanet_resize`` /
            ``resnet50_full`` (WholeImageClassifier) or ``random_roi`` (PatchVoteClassifier).
        images: uint8 ``[N, H, W, 3]`` at the model's image size.
        builtin_ops: use only TFLite builtin ops (see module docstring).
        noise_rows: rows of the location-noise table (``builtin_ops`` DeNet only).

    Returns:
        ``{"probabilities", "class"}`` plus ``{"boxes", "n_rois"}`` for ROI models.

    Raises:
        ValueError: an unsupported model (``oracle_roi``), or ``random_roi`` with
            ``builtin_ops`` (its fresh random crops need a random op).

    Example:
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> m = build_model(preset("tiny"), ["a", "b"])
        >>> serving_outputs(m, np.zeros((2, 92, 140, 3), "uint8"))["class"].shape
        TensorShape([2])
    """
    kind = _kind(model)
    if isinstance(noise_rows, bool) or not isinstance(noise_rows, int) or noise_rows < 1:
        raise ValueError(f"noise_rows must be a positive int. Received: noise_rows={noise_rows!r}")
    images = tf.convert_to_tensor(images)
    if kind == "selective":
        out = _selective_builtin(model, images, noise_rows) if builtin_ops else model.infer(images)
    elif kind == "whole":
        if builtin_ops:
            out = _whole_builtin(model, images)
        else:
            out = {"probs": model(images, training=False)}
    else:
        _check_builtin(kind, builtin_ops)
        out = model.infer(images)
    probs = tf.cast(out["probs"], tf.float32)
    result = {
        "probabilities": probs,
        "class": tf.argmax(probs, axis=-1, output_type=tf.int32),
    }
    if "boxes" in out and kind != "whole":
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
        builtin_ops: only TFLite builtin ops (TFLite, ONNX) instead of ``model.infer``.
        batch: fixed batch size of the signature (``None``: any).
        noise_rows: rows of the location-noise table (``builtin_ops`` DeNet only).

    Returns:
        A ``tf.function``; ``.get_concrete_function()`` gives the traced graph.

    Example:
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> fn = serving_function(build_model(preset("tiny"), ["a", "b"]))
        >>> fn.get_concrete_function().structured_outputs["probabilities"].shape
        TensorShape([None, 2])
    """
    _check_builtin(_kind(model), builtin_ops)  # fail before tracing

    @tf.function(input_signature=input_signature(model, batch))
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return serving_outputs(model, images, builtin_ops=builtin_ops, noise_rows=noise_rows)

    return serve
