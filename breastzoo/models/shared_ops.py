"""Graph ops the breastzoo models share: the vote, the ROI crop, the antialiased resize.

Each op that has one takes ``builtin_ops``: ``False`` (training, evaluation, SavedModel) is
the model's own Keras computation; ``True`` gives the same numbers from ops in TFLite's
builtin set, which is what the TFLite and ONNX exports trace
(:mod:`breastzoo.export.serving`). Two Keras ops are not builtins:

* ``keras.ops.argmax`` on floats emits ``BitwiseAnd`` (it tests the sign bit to order -0.0
  before 0.0); the builtin form is ``tf.argmax``. The two differ only on -0.0, which softmax
  probabilities never are.
* ``keras.ops.image.resize(..., antialias=True)`` emits ``ScaleAndTranslate``; the resize is
  linear and separable, so its builtin form applies its filter taps along each axis: a
  gather of the few input rows (columns) each output row (column) reads, weighted and summed.

Example:
    >>> import numpy as np
    >>> p = np.eye(3, dtype="float32")[[0, 0, 1, 1, 2, 1]][None]  # 2-2-1 tie, then 1
    >>> [int(v) for v in vote(p, k=5, builtin_ops=True)[1]]
    [6]
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = [
    "argmax",
    "crop_scaled",
    "random_dihedral",
    "image_boxes",
    "resize_antialiased",
    "resize_matrix",
    "resize_taps",
    "vote",
]


def argmax(x: Any, axis: int = -1, *, builtin_ops: bool = False) -> Any:
    """int32 ``argmax`` along ``axis``: ``keras.ops.argmax``, or ``tf.argmax`` (a builtin).

    Example:
        >>> int(argmax(np.array([0.2, 0.8], "float32"), builtin_ops=True))
        1
    """
    if not builtin_ops:
        return ops.argmax(x, axis=axis)
    import tensorflow as tf

    return tf.argmax(x, axis=axis, output_type=tf.int32)


def vote(patch_probs: Any, k: int, *, builtin_ops: bool = False) -> tuple[Any, Any]:
    """Majority vote over ordered ROIs with the paper's tie-break.

    Used by DeNet + SaNet (its ROIs), the patch baselines, the hybrid's ``"max"`` local rule
    (its grid patches) and the ensemble's Max rule (its members).

    Args:
        patch_probs: ``[B, K_max, C]`` probabilities of the ROIs in selection order.
        k: ROIs that vote first; on a tie, ROI k+1, k+2, ... join until one class has a strict
            plurality (or all ``K_max`` have voted).
        builtin_ops: take each ROI's class with ``tf.argmax`` (see the module docstring).

    Returns:
        ``(probs [B, C], n_rois [B] int32)``: ``(votes + mean probs) / (n + 1)`` over the
        first ``n`` ROIs, and ``n``.

    Raises:
        ValueError: ``k`` outside ``[1, K_max]``.

    Example:
        >>> p = np.eye(3, dtype="float32")[[0, 0, 1, 1, 2, 1]][None]  # 2-2-1 tie, then 1
        >>> probs, n = vote(p, k=5)
        >>> int(np.argmax(probs[0])), int(n[0])
        (1, 6)
    """
    patch_probs = ops.convert_to_tensor(patch_probs)
    k_max = patch_probs.shape[1]
    num_classes = patch_probs.shape[2]
    if not 1 <= k <= k_max:
        raise ValueError(f"Need 1 <= k <= K_max. Received: k={k}, K_max={k_max}")
    onehot = ops.one_hot(argmax(patch_probs, -1, builtin_ops=builtin_ops), num_classes)
    counts = ops.cumsum(onehot, axis=1)  # [B, K_max, C] votes after j+1 ROIs
    top = ops.max(counts, axis=-1, keepdims=True)
    n_top = ops.sum(ops.cast(ops.equal(counts, top), "int32"), axis=-1)  # [B, K_max]
    decisive = ops.equal(n_top, 1)[:, k - 1 :]
    # First decisive position at or after k; the last one if none is.
    any_decisive = ops.any(decisive, axis=1)
    first = ops.argmax(ops.cast(decisive, "int32"), axis=1)  # ints: a plain ArgMax
    idx = ops.where(any_decisive, first + (k - 1), k_max - 1)
    pick = ops.one_hot(idx, k_max)[..., None]  # [B, K_max, 1]
    n = ops.cast(idx + 1, patch_probs.dtype)[:, None]
    final_counts = ops.sum(counts * pick, axis=1)
    mean_probs = ops.sum(ops.cumsum(patch_probs, axis=1) * pick, axis=1) / n
    return (final_counts + mean_probs) / (n + 1.0), ops.cast(idx + 1, "int32")


def crop_scaled(images: Any, centres: Any, patch_size: int, scale: int = 1) -> Any:
    """``[B, K, patch_size, patch_size, C]`` patches whose windows are ``patch_size * scale``
    pixels wide, centred at ``centres`` (pixel ``(y, x)``, ``[B, K, 2]``), shifted inside the
    image, and average-pooled by ``scale``.

    ``scale=1`` is paper 000's full-resolution ROI. A larger scale gives the classifier more
    tissue at the same input size (and cost): on real BreaKHis at 100X a 112-pixel window
    holds a few dozen nuclei, and models trained on such windows learned the training
    patients' cells rather than benign vs malignant (docs/models.md). Average pooling by an
    integer factor is exact area resampling and a TFLite builtin, and the crop itself is a
    gather, so exports keep working.

    Args:
        images: ``[B, H, W, C]`` float images.
        centres: ``[B, K, 2]`` pixel centres of the windows.
        patch_size: output side.
        scale: integer window / output ratio (>= 1).

    Example:
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


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix of ``keras.ops.image.resize(bilinear, antialias=True)`` along
    one axis (that resize is linear and separable): every one-hot column resized at once.

    Computed eagerly even while a graph is being traced, so it becomes a graph constant.

    Example:
        >>> m = resize_matrix(4, 2)  # each output row: weights over the 4 inputs, summing to 1
        >>> m.shape, m.sum(axis=1).round(3).tolist()
        ((2, 4), [1.0, 1.0])
    """
    import tensorflow as tf

    eye = np.eye(n_in, dtype="float32")[None, :, None, :]  # [1, n_in, 1, n_in]: channel = basis
    with tf.init_scope():
        out = ops.image.resize(eye, (n_out, 1), interpolation="bilinear", antialias=True)
        return keras.ops.convert_to_numpy(out)[0, :, 0, :]


def resize_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero band of :func:`resize_matrix`: ``(index, weight)``, each ``[n_out, K]``.

    Output ``i`` is ``sum_k weight[i, k] * input[index[i, k]]``, the same terms as row ``i``
    of the matrix without its zeros (``K``: the widest filter span; shorter spans are padded
    with weight 0 on their last input). A bilinear antialiased filter covers about
    ``2 * n_in / n_out`` inputs, so the taps hold a few percent of the matrix's values:
    a 460x700 image's 40x56 thumbnail needs 2,320 taps instead of 57,600 matrix entries.

    Example:
        >>> index, weight = resize_taps(8, 2)
        >>> index.shape == weight.shape, weight.sum(axis=1).round(3).tolist()
        (True, [1.0, 1.0])
        >>> x = np.arange(8.0)
        >>> bool(np.allclose((weight * x[index]).sum(1), resize_matrix(8, 2) @ x))
        True
    """
    matrix = resize_matrix(n_in, n_out)
    nonzero = matrix != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    last = np.where(nonzero.any(axis=1), n_in - 1 - nonzero[:, ::-1].argmax(axis=1), 0)
    taps = int((last - first).max()) + 1
    span = first[:, None] + np.arange(taps)[None, :]
    index = np.minimum(span, n_in - 1).astype("int32")
    rows = np.arange(n_out)[:, None]
    weight = np.where(span <= last[:, None], matrix[rows, index], 0.0).astype("float32")
    return index, weight


def _apply_taps(x: Any, n_in: int, n_out: int) -> Any:
    """``[N, n_in, D]`` -> ``[N, n_out, D]``: :func:`resize_taps` along axis 1 (a gather, a
    multiply and a sum: TFLite builtins, constants of ``n_out * K`` values)."""
    import tensorflow as tf

    index, weight = resize_taps(n_in, n_out)
    taps = index.shape[1]
    picked = tf.gather(x, tf.constant(index.reshape(-1)), axis=1)  # [N, n_out * K, D]
    picked = tf.reshape(picked, [-1, n_out, taps, int(x.shape[-1])])
    return tf.reduce_sum(picked * tf.constant(weight[None, :, :, None]), axis=2)


def resize_antialiased(x: Any, size: tuple[int, int], *, builtin_ops: bool = False) -> Any:
    """Bilinear antialiased resize of ``[B, H, W, C]`` float images to ``size`` = (h, w).

    ``builtin_ops=False`` is ``keras.ops.image.resize(..., antialias=True)``; ``True``
    applies the same filter taps (:func:`resize_taps`) along rows, then columns, with TFLite
    builtins only: the same numbers to float32 rounding.

    Why taps rather than the two dense matrices of :func:`resize_matrix` (the first builtin
    form): a matrix holds ``n_out * n_in`` float32 constants, nearly all zeros, which int8
    weight quantization leaves float (the DeNet thumbnail's two matrices were 230 KB of the
    demo model's TFLite file, the hybrid's 2.7 MB), and multiplies every one of them.

    Example:
        >>> x = np.random.default_rng(0).random((1, 6, 8, 3)).astype("float32")
        >>> a = resize_antialiased(x, (3, 4))
        >>> b = resize_antialiased(x, (3, 4), builtin_ops=True)
        >>> bool(np.abs(np.asarray(a) - np.asarray(b)).max() < 1e-6)
        True
    """
    out_h, out_w = int(size[0]), int(size[1])
    if not builtin_ops:
        return ops.image.resize(x, (out_h, out_w), interpolation="bilinear", antialias=True)
    import tensorflow as tf

    height, width, channels = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    # Rows with the pixel rows as axis 1 ([B, H, W*C]), then columns with the batch and
    # output rows merged ([B*out_h, W, C]): reshapes that keep C innermost, no transpose,
    # and a dynamic batch only ever in the leading axis. (An einsum of the matrices lowered
    # to shapes TFLite's interpreter rejected when the batch is dynamic: "BytesRequired
    # number of elements overflowed".)
    x = _apply_taps(tf.reshape(x, [-1, height, width * channels]), height, out_h)
    x = _apply_taps(tf.reshape(x, [-1, width, channels]), width, out_w)
    return tf.reshape(x, [-1, out_h, out_w, channels])


def image_boxes(batch: Any, boxes: Any) -> Any:
    """``[batch, k, 4]`` float32: the same pixel boxes ``(y0, x0, y1, x1)`` for every image.

    Args:
        batch: batch size (an int or a scalar tensor).
        boxes: ``[k, 4]`` boxes, e.g. ``[[0, 0, height, width]]`` for the whole image.

    Example:
        >>> image_boxes(2, [[0.0, 0.0, 46.0, 70.0]]).shape
        TensorShape([2, 1, 4])
    """
    box = ops.convert_to_tensor(np.asarray(boxes, "float32")[None])
    return ops.tile(box, (batch, 1, 1))


def random_dihedral(patches: Any, seed_generator: Any) -> Any:
    """Each square patch turned by one of the 8 symmetries of the square, drawn uniformly.

    Training-time augmentation of the patches a classifier sees. Whole-image augmentation
    cannot rotate a 700x460 image by 90 degrees (``breastzoo.data.augment``), and tissue has
    no preferred orientation, so the patch classifier gets the missing rotations here.

    Args:
        patches: ``[N, S, S, C]`` square patches.
        seed_generator: a ``keras.random.SeedGenerator`` (the model's own).

    Returns:
        The patches, each transposed with probability 1/2, then flipped along rows and along
        columns with probability 1/2 each (together: the 4 rotations and 4 reflections).

    Example:
        >>> import numpy as np
        >>> x = np.arange(2 * 4 * 4 * 1, dtype="float32").reshape(2, 4, 4, 1)
        >>> y = random_dihedral(x, keras.random.SeedGenerator(0))
        >>> sorted(np.asarray(y[0]).ravel().tolist()) == sorted(x[0].ravel().tolist())
        True
    """
    n = ops.shape(patches)[0]
    coins = keras.random.uniform((3, n), seed=seed_generator) < 0.5

    def pick(coin: Any, turned: Any, same: Any) -> Any:
        return ops.where(coin[:, None, None, None], turned, same)

    x = pick(coins[0], ops.transpose(patches, (0, 2, 1, 3)), patches)
    x = pick(coins[1], ops.flip(x, axis=1), x)
    return pick(coins[2], ops.flip(x, axis=2), x)
