"""Training-time augmentation policies of the two papers, in stateless TF ops.

Policies:

* ``"xu2020"`` (paper 000, Xu et al. 2020): "rotation, and horizontal and vertical flips, which
  results in 3 times the original training data". Each draw is a random element of the
  image's symmetry group: horizontal flip, vertical flip (each p = 0.5; both together are the
  180° rotation) and, for square images only, a transpose (p = 0.5), which together give all
  eight rotations by multiples of 90° with or without mirroring. A 90° rotation of a 700x460
  image would change its shape, so non-square images get the four shape-preserving elements.
  Pixels are only moved, never resampled. Expansion factor 3.
* ``"zhu2019"`` (paper 002, Zhu et al. 2019): "random rotation, flipping transformation and
  shearing transformation ... eight images are generated" per training sample. The paper
  gives no ranges; we draw a rotation angle uniformly in [0°, 360°), horizontal and vertical
  flips with p = 0.5 and shear factors along x and y uniformly in
  [-``ZHU2019_MAX_SHEAR``, ``ZHU2019_MAX_SHEAR``] (0.2, i.e. about ±11°). All of it is one
  projective transform (one bilinear resampling pass) about the image centre, same output
  size, corners filled by reflection (Keras ``RandomRotation``'s default). Expansion factor 8.
* ``"none"``: identity, expansion factor 1.

Randomness is stateless: ``augment(image, policy, seed)`` is a pure function of ``seed`` (a
shape-[2] integer tensor or a Python int), so results are reproducible and safe in parallel
``tf.data`` maps. :func:`expand_and_augment` repeats every element ``expansion_factor`` times
with fresh seeds that change every epoch.

Example:
    >>> import numpy as np
    >>> image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    >>> augment(image, "xu2020", seed=0).shape
    TensorShape([4, 6, 3])
    >>> expansion_factor("zhu2019")
    8
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import tensorflow as tf

POLICIES: tuple[str, ...] = ("xu2020", "zhu2019", "none")
_EXPANSION: dict[str, int] = {"xu2020": 3, "zhu2019": 8, "none": 1}
ZHU2019_MAX_SHEAR = 0.2


def _check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(
            f"Unknown augmentation policy. Received: policy={policy!r}; expected one of {POLICIES}."
        )
    return policy


def expansion_factor(policy: str) -> int:
    """How many augmented copies of each training sample the policy's paper used.

    Args:
        policy: ``"xu2020"`` (3), ``"zhu2019"`` (8) or ``"none"`` (1).

    Raises:
        ValueError: unknown policy.

    Example:
        >>> expansion_factor("xu2020")
        3
    """
    return _EXPANSION[_check_policy(policy)]


def _as_seed(seed: Any) -> tf.Tensor:
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int64)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed must be an int or a shape-[2] tensor. Received: seed={seed!r}")
    return tf.cast(seed, tf.int64)


def augment(
    image: tf.Tensor, policy: str, seed: int | tf.Tensor, *, jit_compile: bool = False
) -> tf.Tensor:
    """One random augmentation of one image.

    Args:
        image: ``[H, W, C]`` image of any dtype (uint8 in the pipeline).
        policy: ``"xu2020"``, ``"zhu2019"`` or ``"none"``.
        seed: Python int or shape-[2] integer tensor; same seed, same result.
        jit_compile: run the pixel work as an XLA kernel (2-4x less CPU; one compilation per
            image shape, so meant for fixed-size images such as the pipeline's canvas). The
            random draw happens outside the kernel, so both settings give the same image
            (``"zhu2019"`` up to one grey level of bilinear rounding).

    Returns:
        Tensor with the shape and dtype of ``image``.

    Raises:
        ValueError: unknown policy or a malformed seed.

    Example:
        >>> augment(tf.zeros([8, 8, 3], tf.uint8), "zhu2019", seed=[1, 2]).dtype
        tf.uint8
    """
    _check_policy(policy)
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"Expected one image [H, W, C]. Received: shape={image.shape}")
    if policy == "none":
        return image
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), 5)
    if policy == "xu2020":
        square = _is_square(image)
        if square is None:  # unknown static shape: dynamic ops, no XLA
            return _dihedral_dynamic(image, seeds)
        branch = tf.random.stateless_uniform([], seeds[0], 0, 8 if square else 4, tf.int32)
        apply = _compiled(_dihedral) if jit_compile else _dihedral
        return apply(image, branch)
    transform = _zhu2019_transform(tf.shape(image), seeds)
    apply = _compiled(_warp) if jit_compile else _warp
    return apply(image, transform)


@functools.cache
def _compiled(fn: Callable) -> Callable:
    return tf.function(fn, jit_compile=True)


def _coin(seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed) < 0.5


def _is_square(image: tf.Tensor) -> bool | None:
    height, width = image.shape[0], image.shape[1]
    return None if height is None or width is None else height == width


def _dihedral(image: tf.Tensor, branch: tf.Tensor) -> tf.Tensor:
    """Element ``branch`` of the symmetry group: 0-3 flips (none, rows, columns, both = 180°),
    4-7 the same after a transpose (square images only: the 90° rotations and diagonals)."""
    flips = [
        lambda: image,
        lambda: tf.reverse(image, [0]),
        lambda: tf.reverse(image, [1]),
        lambda: tf.reverse(image, [0, 1]),
    ]
    if _is_square(image):
        turned = tf.transpose(image, [1, 0, 2])
        flips += [
            lambda: turned,
            lambda: tf.reverse(turned, [0]),
            lambda: tf.reverse(turned, [1]),
            lambda: tf.reverse(turned, [0, 1]),
        ]
    return tf.ensure_shape(tf.switch_case(branch, flips), image.shape)


def _dihedral_dynamic(image: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    axes = tf.boolean_mask(tf.constant([0, 1]), tf.stack([_coin(seeds[0]), _coin(seeds[1])]))
    image = tf.reverse(image, axes)
    shape = tf.shape(image)
    transpose = tf.logical_and(_coin(seeds[2]), tf.equal(shape[0], shape[1]))
    return tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)


def _zhu2019_transform(shape: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """The 8-parameter output->input map of one zhu2019 draw (ImageProjectiveTransform form)."""
    angle = tf.random.stateless_uniform([], seeds[0], 0.0, 2.0 * math.pi)
    shear = tf.random.stateless_uniform([2], seeds[1], -ZHU2019_MAX_SHEAR, ZHU2019_MAX_SHEAR)
    flip_x = tf.where(_coin(seeds[2]), -1.0, 1.0)
    flip_y = tf.where(_coin(seeds[3]), -1.0, 1.0)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output pixel p maps to input c + F R S (p - c): flips F, rotation R, shear S about the
    # centre c. The draw is symmetric, so sampling this inverse map samples the forward one.
    m00 = flip_x * (cos - sin * shear[1])
    m01 = flip_x * (cos * shear[0] - sin)
    m10 = flip_y * (sin + cos * shear[1])
    m11 = flip_y * (sin * shear[0] + cos)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    return tf.stack(
        [m00, m01, cx - m00 * cx - m01 * cy, m10, m11, cy - m10 * cx - m11 * cy, 0.0, 0.0]
    )


def _reflect(coord: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    # Half-sample symmetric reflection (d c b a | a b c d | d c b a), ImageProjectiveTransform's
    # and Keras' "reflect".
    period = 2.0 * size
    coord = tf.math.floormod(coord + 0.5, period) - 0.5
    return tf.clip_by_value(
        tf.where(coord > size - 0.5, period - 1.0 - coord, coord), 0.0, size - 1.0
    )


def _warp(image: tf.Tensor, transform: tf.Tensor) -> tf.Tensor:
    """Bilinear affine warp with reflected borders, as gathers (XLA-friendly).

    Same result as ``ImageProjectiveTransformV3(..., "BILINEAR", "REFLECT")`` up to rounding,
    at about a third of its CPU time once XLA-compiled.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ys, xs = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    sx = _reflect(transform[0] * xs + transform[1] * ys + transform[2], w)
    sy = _reflect(transform[3] * xs + transform[4] * ys + transform[5], h)
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)
    flat = tf.reshape(tf.cast(image, tf.float32), [-1, shape[2]])

    def pick(yy: tf.Tensor, xx: tf.Tensor) -> tf.Tensor:
        return tf.gather(flat, yy * width + xx)

    top = pick(y0, x0) * (1.0 - fx) + pick(y0, x1) * fx
    bottom = pick(y1, x0) * (1.0 - fx) + pick(y1, x1) * fx
    out = top * (1.0 - fy) + bottom * fy
    if image.dtype.is_integer:
        out = tf.clip_by_value(tf.round(out), image.dtype.min, image.dtype.max)
    return tf.ensure_shape(tf.cast(out, image.dtype), image.shape)


def expand_and_augment(
    dataset: tf.data.Dataset,
    policy: str,
    seed: int | None = None,
    *,
    copies: int | None = None,
    cycle_length: int = 16,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    jit_compile: bool = True,
    color_jitter: float = 0.0,
) -> tf.data.Dataset:
    """Repeat each element ``copies`` times, each copy with its own random augmentation.

    Elements must be tuples whose first component is one image ``[H, W, C]`` (other
    components, such as labels, are passed through). Copies of one image are interleaved with
    ``cycle_length - 1`` other images, so a batch of up to ``cycle_length`` images never holds
    two views of the same image. Seeds come from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``: reproducible for a given ``seed``, different every
    epoch.

    Args:
        dataset: unbatched dataset of ``(image, ...)`` tuples.
        policy: augmentation policy (see module docstring).
        seed: base seed; ``None`` for non-reproducible draws.
        copies: copies per element; default ``expansion_factor(policy)``.
        cycle_length: how many source images are interleaved.
        num_parallel_calls: parallelism of the augmentation map.
        jit_compile: XLA-compile the pixel work (see :func:`augment`); images of unknown
            static shape fall back to plain ops.
        color_jitter: strength of :func:`hed_jitter` applied after the geometric policy
            (0 = off; ignored with ``policy="none"``).

    Returns:
        The expanded, augmented dataset (same element structure).

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices((tf.zeros([2, 4, 4, 3], tf.uint8), [0, 1]))
        >>> len(list(expand_and_augment(ds, "xu2020", seed=0)))
        6
    """
    copies = expansion_factor(policy) if copies is None else int(copies)
    if copies < 1:
        raise ValueError(f"copies must be >= 1. Received: copies={copies!r}")
    if not isinstance(dataset.element_spec, tuple):
        raise ValueError(
            "Expected a dataset of (image, ...) tuples. Received: element_spec="
            f"{dataset.element_spec!r}"
        )
    if copies > 1:
        dataset = dataset.interleave(
            lambda *element: tf.data.Dataset.from_tensors(element).repeat(copies),
            cycle_length=cycle_length,
            block_length=1,
        )
    if policy == "none":
        return dataset
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def apply(element: tuple, pair: tf.Tensor) -> tuple:
        image = augment(element[0], policy, pair, jit_compile=jit_compile)
        if color_jitter > 0:
            image = hed_jitter(image, tf.random.experimental.stateless_fold_in(pair, 7),
                               color_jitter)
        return (image, *element[1:])

    return tf.data.Dataset.zip((dataset, seeds)).map(
        apply, num_parallel_calls=num_parallel_calls, deterministic=True
    )


# Stain vectors of haematoxylin, eosin and DAB in optical density (Ruifrok & Johnston 2001;
# the same matrix as skimage.color.rgb_from_hed), rows normalised to unit length.
_RGB_FROM_HED = (
    (0.65, 0.70, 0.29),
    (0.07, 0.99, 0.11),
    (0.27, 0.57, 0.78),
)


def hed_jitter(image: tf.Tensor, seed: int | tf.Tensor, strength: float = 0.05) -> tf.Tensor:
    """Random stain variation in HED space (Tellez et al. 2018, "HED-light" at 0.05).

    The image is unmixed into haematoxylin, eosin and DAB concentrations by colour
    deconvolution; each concentration ``c`` becomes ``c * a + b`` with ``a ~ U(1 - s, 1 + s)``
    and ``b ~ U(-s, s)`` drawn once per image and channel; then it is mixed back. Real
    H&E varies exactly along these axes between labs, scanners and staining batches, so the
    model sees plausible stains rather than arbitrary RGB shifts. White background (zero
    concentration) moves only by ``b``.

    Args:
        image: ``[H, W, 3]`` uint8 (or float in [0, 255]) RGB image.
        seed: Python int or shape-[2] integer tensor; same seed, same result.
        strength: ``s`` above; 0 returns the image unchanged.

    Returns:
        Tensor with the shape and dtype of ``image``.

    Example:
        >>> hed_jitter(tf.fill([4, 4, 3], tf.constant(200, tf.uint8)), seed=0).dtype
        tf.uint8
    """
    image = tf.convert_to_tensor(image)
    if strength <= 0:
        return image
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), 2)
    alpha = tf.random.stateless_uniform([3], seeds[0], 1.0 - strength, 1.0 + strength)
    beta = tf.random.stateless_uniform([3], seeds[1], -strength, strength)
    m = tf.math.l2_normalize(tf.constant(_RGB_FROM_HED, tf.float32), axis=1)
    rgb = tf.cast(image, tf.float32)
    od = -tf.math.log((rgb + 1.0) / 256.0)  # optical density, 0 for white
    conc = tf.tensordot(od, tf.linalg.inv(m), axes=1)
    od = tf.tensordot(conc * alpha + beta, m, axes=1)
    out = tf.clip_by_value(256.0 * tf.exp(-od) - 1.0, 0.0, 255.0)
    if image.dtype == tf.uint8:
        return tf.cast(out + 0.5, tf.uint8)
    return tf.cast(out, image.dtype)
