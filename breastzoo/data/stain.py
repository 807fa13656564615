"""Stain (colour) normalisation of H&E images in TensorFlow ops: Reinhard and Macenko.

Paper 002 (Zhu et al. 2019) normalises every image with the colour transfer of Reinhard et al.
("Color transfer between images", 2001): convert to a decorrelated colour space, then shift and
scale each channel so that its mean and standard deviation equal those of a reference image.
Everything here is written in TF ops (matrix products, ``log``/``exp``, ``where``), so the same
code runs inside ``tf.data`` (CPU) and inside a saved model or TF Serving signature via the
:class:`StainNormalization` layer; there is no ``numpy_function`` and no Lambda layer.

Colour spaces for Reinhard (``color_space``):

* ``"lalphabeta"`` (default): Reinhard's own lαβ space, RGB (0..255) -> LMS (3x3 matrix) ->
  natural log -> lαβ (orthonormal 3x3 matrix), exactly as HistomicsTK's ``rgb_to_lab``. This is
  the space of the method paper 002 cites and the cheapest one (one ``log`` and one ``exp`` per
  channel). LMS values are floored at 1.0 (one grey level) before the log, so that pure-black
  pixels do not become -36 outliers that dominate the standard deviation.
* ``"lab"``: CIE L*a*b* (sRGB, D65, 2° observer), numerically identical to
  ``skimage.color.rgb2lab`` / ``lab2rgb`` (L in 0..100).

Reference statistics are plain Python floats (they go into ``get_config``):

* ``DEFAULT_REINHARD`` (lαβ): mean ``(8.63234435, -0.11501964, 0.03868433)``, std
  ``(0.57506023, 0.10403329, 0.01364062)``: the published default reference of HistomicsTK's
  Reinhard normalisation (an H&E TCGA slide), widely reused in histopathology code.
* ``DEFAULT_REINHARD_LAB`` (CIE Lab): mean ``(59.5264, 25.5544, -14.9123)``, std
  ``(16.9840, 11.0114, 12.6491)``: the Lab statistics of 65,536 pixels drawn (numpy seed 0) from
  independent normals with the lαβ reference's means and stds, converted to RGB and rounded to
  uint8 (see :func:`_derive_default_lab_reference`), so both defaults describe the same colours.
* ``DEFAULT_MACENKO``: stain matrix columns H ``(0.5626, 0.7201, 0.4062)`` and E
  ``(0.2159, 0.8012, 0.5581)`` (optical density), 99th-percentile concentrations
  ``(1.9705, 1.0308)``: the reference of Macenko et al.'s reference implementation.

Statistics of the image being normalised are computed on every ``subsample``-th row and
column (default 4, i.e. 1/16 of the pixels): on a 700x460 image this changes the means by
well under one grey level and keeps the statistics pass cheap; the colour transform itself is
applied to every pixel.

Example:
    >>> import numpy as np
    >>> layer = StainNormalization("reinhard")
    >>> out = layer(np.full((1, 8, 8, 3), 200, np.uint8))
    >>> tuple(out.shape), out.dtype.name
    ((1, 8, 8, 3), 'float32')
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

METHODS: tuple[str, ...] = ("reinhard", "macenko", "none")
COLOR_SPACES: tuple[str, ...] = ("lalphabeta", "lab")


class ReinhardStats(NamedTuple):
    """Per-channel mean and standard deviation of a reference image in ``color_space``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_space: str = "lalphabeta"


class MacenkoStats(NamedTuple):
    """Macenko reference: 3x2 optical-density stain matrix (rows R, G, B; columns H, E) and the
    99th-percentile concentration of each stain."""

    stain_matrix: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    max_concentration: tuple[float, float]


DEFAULT_REINHARD = ReinhardStats(
    mean=(8.63234435, -0.11501964, 0.03868433),
    std=(0.57506023, 0.10403329, 0.01364062),
    color_space="lalphabeta",
)
DEFAULT_REINHARD_LAB = ReinhardStats(
    mean=(59.5264, 25.5544, -14.9123),
    std=(16.9840, 11.0114, 12.6491),
    color_space="lab",
)
DEFAULT_MACENKO = MacenkoStats(
    stain_matrix=((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581)),
    max_concentration=(1.9705, 1.0308),
)

# Macenko parameters of the original method: transmitted light, tissue OD threshold, angle
# percentile.
MACENKO_IO = 240.0
MACENKO_BETA = 0.15
MACENKO_ALPHA = 1.0
MACENKO_MIN_TISSUE = 16

# Reinhard's lαβ: RGB -> LMS, and the orthonormal log-LMS -> lαβ matrix.
_RGB2LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
_LMS2LAB = np.diag([1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
# CIE Lab, same constants as scikit-image.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# Lab = f(xyz / white) @ _F2LAB + _F2LAB_BIAS (linear in f, so Reinhard's affine map in Lab is
# an affine map in f).
_F2LAB = np.array([[0.0, 500.0, 0.0], [116.0, -500.0, 200.0], [0.0, 0.0, -200.0]])
_F2LAB_BIAS = np.array([-16.0, 0.0, 0.0])

# Below this a source channel counts as constant (a flat image), so it is not blown up.
_STD_FLOOR = 1e-4


def _const(array: np.ndarray) -> tf.Tensor:
    return tf.constant(np.asarray(array, np.float32))


def _to_float(images: tf.Tensor) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    return images if images.dtype == tf.float32 else tf.cast(images, tf.float32)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(
            f"Unknown stain method. Received: method={method!r}; expected one of {METHODS}."
        )
    return method


def _check_color_space(color_space: str) -> str:
    if color_space not in COLOR_SPACES:
        raise ValueError(
            f"Unknown colour space. Received: color_space={color_space!r}; "
            f"expected one of {COLOR_SPACES}."
        )
    return color_space


# --------------------------------------------------------------------------- colour spaces


# Set while tracing a function for XLA (see xla_products); read by _mat3.
_XLA_PRODUCTS: contextvars.ContextVar[bool] = contextvars.ContextVar("xla_products", default=False)


@contextlib.contextmanager
def xla_products() -> Iterator[None]:
    """Trace the colour products in this block for XLA (see :func:`_mat3`).

    Example:
        >>> with xla_products():
        ...     fn = tf.function(lambda x: rgb_to_lalphabeta(x), jit_compile=True)
        ...     _ = fn(tf.zeros([2, 2, 3]))
    """
    token = _XLA_PRODUCTS.set(True)
    try:
        yield
    finally:
        _XLA_PRODUCTS.reset(token)


def _mat3(x: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """``x @ m`` for a trailing axis of 3 (``[N, 3] @ [3, 3]`` or ``[B, N, 3] @ [B, 3, 3]``).

    Under :func:`xla_products` it is written as broadcast multiply-adds of column slices: XLA
    then fuses the products into the neighbouring element-wise loops instead of materialising
    every intermediate through a separate dot (Reinhard: 3 passes over the image instead of 7,
    ~20% less CPU). Outside XLA that form is ~3x slower than one MatMul, so MatMul it is.
    """
    if not _XLA_PRODUCTS.get():
        return tf.matmul(x, m)  # [N, 3] @ [3, 3] or [B, N, 3] @ [B, 3, 3]
    if m.shape.rank == 3:
        m = m[:, None]  # [B, 1, 3, 3] against [B, N, 3]
    return x[..., 0:1] * m[..., 0, :] + x[..., 1:2] * m[..., 1, :] + x[..., 2:3] * m[..., 2, :]


def _to_working(flat: tf.Tensor, color_space: str) -> tf.Tensor:
    """RGB ``[N, 3]`` (0..255) to the working space in which Reinhard's map is affine.

    lαβ: log-LMS (lαβ = z Aᵀ). CIE Lab: f = cbrt-like(XYZ / white) (Lab = f K + k0).
    """
    if color_space == "lalphabeta":
        return tf.math.log(tf.maximum(_mat3(flat, _const(_RGB2LMS.T)), 1.0))
    x = flat / 255.0
    lin = tf.where(x > 0.04045, tf.pow((x + 0.055) / 1.055, 2.4), x / 12.92)
    xyz = _mat3(lin, _const(_XYZ_FROM_RGB.T / _D65_WHITE[None, :]))
    cube_root = tf.pow(tf.maximum(xyz, 0.008856), 1.0 / 3.0)
    return tf.where(xyz > 0.008856, cube_root, 7.787 * xyz + 16 / 116)


def _from_working(z: tf.Tensor, color_space: str) -> tf.Tensor:
    """Inverse of :func:`_to_working`: ``[N, 3]`` to RGB float32 clipped to [0, 255]."""
    if color_space == "lalphabeta":
        rgb = _mat3(tf.exp(z), _const(np.linalg.inv(_RGB2LMS).T))
        return tf.clip_by_value(rgb, 0.0, 255.0)
    # skimage clips a negative z (the only channel that can go below zero) before cubing.
    f = tf.concat([z[:, :2], tf.maximum(z[:, 2:], 0.0)], axis=-1)
    t = tf.where(f > 0.2068966, f * f * f, (f - 16 / 116) / 7.787)
    lin = _mat3(t, _const((np.linalg.inv(_XYZ_FROM_RGB) * _D65_WHITE[None, :]).T))
    srgb = tf.where(
        lin > 0.0031308,
        1.055 * tf.pow(tf.maximum(lin, 0.0031308), 1 / 2.4) - 0.055,
        12.92 * lin,
    )
    return tf.clip_by_value(srgb, 0.0, 1.0) * 255.0


# Working space -> colour space: space = z @ K + k0.
_WORKING_TO_SPACE: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "lalphabeta": (_LMS2LAB.T, np.zeros(3)),
    "lab": (_F2LAB, _F2LAB_BIAS),
}


def _space_from_working(z: tf.Tensor, color_space: str) -> tf.Tensor:
    k, k0 = _WORKING_TO_SPACE[color_space]
    return _mat3(z, _const(k)) + _const(k0)


def _working_from_space(v: tf.Tensor, color_space: str) -> tf.Tensor:
    k, k0 = _WORKING_TO_SPACE[color_space]
    return _mat3(v - _const(k0), _const(np.linalg.inv(k)))


def rgb_to_lab(rgb: tf.Tensor) -> tf.Tensor:
    """sRGB (uint8, or float in [0, 255]) to CIE L*a*b* (D65, 2°), as ``skimage.color.rgb2lab``.

    Args:
        rgb: ``[..., 3]`` tensor, values in 0..255.

    Returns:
        float32 ``[..., 3]``: L in [0, 100], a and b roughly in [-128, 127].

    Example:
        >>> rgb_to_lab(tf.constant([[255, 255, 255]], tf.uint8)).numpy().round(2)
        array([[100.,  -0.,   0.]], dtype=float32)
    """
    x = _to_float(rgb)
    lab = _space_from_working(_to_working(_flat3(x), "lab"), "lab")
    return tf.reshape(lab, tf.shape(x))


def lab_to_rgb(lab: tf.Tensor) -> tf.Tensor:
    """CIE L*a*b* to sRGB float32 in [0, 255] (clipped), as ``skimage.color.lab2rgb`` x 255.

    Args:
        lab: ``[..., 3]`` float tensor.

    Returns:
        float32 ``[..., 3]`` in [0, 255].

    Example:
        >>> lab_to_rgb(tf.constant([[100.0, 0.0, 0.0]])).numpy().round()
        array([[255., 255., 255.]], dtype=float32)
    """
    lab = _to_float(lab)
    rgb = _from_working(_working_from_space(_flat3(lab), "lab"), "lab")
    return tf.reshape(rgb, tf.shape(lab))


def rgb_to_lalphabeta(rgb: tf.Tensor) -> tf.Tensor:
    """RGB (0..255) to Reinhard's lαβ (natural log, HistomicsTK convention, LMS floored at 1).

    Args:
        rgb: ``[..., 3]`` tensor, values in 0..255.

    Returns:
        float32 ``[..., 3]``.

    Example:
        >>> rgb_to_lalphabeta(tf.constant([[255, 255, 255]], tf.uint8)).numpy().round(2)
        array([[9.6, 0. , 0. ]], dtype=float32)
    """
    x = _to_float(rgb)
    lab = _space_from_working(_to_working(_flat3(x), "lalphabeta"), "lalphabeta")
    return tf.reshape(lab, tf.shape(x))


def lalphabeta_to_rgb(lab: tf.Tensor) -> tf.Tensor:
    """Reinhard lαβ to RGB float32 in [0, 255] (clipped); inverse of :func:`rgb_to_lalphabeta`.

    Example:
        >>> lalphabeta_to_rgb(rgb_to_lalphabeta(tf.constant([[10, 100, 200]]))).numpy().round()
        array([[ 10., 100., 200.]], dtype=float32)
    """
    lab = _to_float(lab)
    rgb = _from_working(_working_from_space(_flat3(lab), "lalphabeta"), "lalphabeta")
    return tf.reshape(rgb, tf.shape(lab))


def _flat3(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [-1, 3])


# --------------------------------------------------------------------------- Reinhard


def _as_batch(images: tf.Tensor) -> tuple[tf.Tensor, bool]:
    images = _to_float(images)
    if images.shape.rank == 3:
        return images[None], True
    if images.shape.rank != 4:
        raise ValueError(
            f"Expected an image [H, W, 3] or a batch [B, H, W, 3]. Received: shape={images.shape}"
        )
    return images, False


def _subsample(images: tf.Tensor, step: int) -> tf.Tensor:
    """Every ``step``-th row and column of ``[B, H, W, C]``.

    Two gathers instead of ``images[:, ::step, ::step]``: TF's strided-slice kernel is slow for
    uint8 (about 1 ms on a 700x460 image, four times the gathers).
    """
    if step == 1:
        return images
    shape = tf.shape(images)
    rows = tf.gather(images, tf.range(0, shape[1], step), axis=1)
    return tf.gather(rows, tf.range(0, shape[2], step), axis=2)


def reinhard_coefficients(
    images: tf.Tensor,
    reference: ReinhardStats = DEFAULT_REINHARD,
    subsample: int = 4,
    weights: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image affine map, in the working space, that performs Reinhard's transfer.

    In both colour spaces the space is an affine function of a working space (lαβ = z Aᵀ with
    z = log LMS; Lab = f K + k0), so "match mean and std per channel" is ``z' = z @ mix + bias``
    with ``mix = K diag(d) K⁻¹``: one 3x3 matrix product per pixel instead of a round trip
    through the colour space. Split from :func:`apply_reinhard` so the statistics can come from
    the whole image and the map be applied to a crop or a padded canvas.

    Args:
        images: uint8 (or float in [0, 255]) ``[H, W, 3]`` or ``[B, H, W, 3]``.
        reference: target statistics (its ``color_space`` is used).
        subsample: statistics use every ``subsample``-th row and column.
        weights: optional ``[H, W]`` or ``[B, H, W]`` mask (bool or 0/1) of the pixels that
            count in the statistics, e.g. excluding padding or background.

    Returns:
        ``(mix [B, 3, 3], bias [B, 1, 3])`` float32 (``B = 1`` for a single image).

    Example:
        >>> mix, bias = reinhard_coefficients(tf.zeros([8, 8, 3], tf.uint8))
        >>> mix.shape, bias.shape
        (TensorShape([1, 3, 3]), TensorShape([1, 1, 3]))
    """
    reference = _as_reinhard_stats(reference)
    space = reference.color_space
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[None]
    # Subsample before casting: casting the whole image first would cost more than the stats.
    sub = _to_float(_subsample(images, subsample))
    grid = tf.shape(sub)  # [B, h, w, 3]
    batch = grid[0]
    sub = tf.reshape(sub, [-1, 3])
    values = tf.reshape(_space_from_working(_to_working(sub, space), space), [batch, -1, 3])
    if weights is None:
        # Short sums of centred values (per row, then over rows) rather than one float32 sum
        # of ~20k values: runtimes add in different orders (TF vs ONNX Runtime, and by batch
        # size), and a 5e-6 relative error in the log-space mean moved a DeNet location across
        # a rounding tie in the ONNX export (tests/export/test_int8_demo.py).
        rows = tf.reshape(values, grid)
        centre = tf.reduce_mean(rows[:, :1], axis=(1, 2))  # first row's mean, [B, 3]
        centred = rows - centre[:, None, None]
        mu_c = tf.reduce_mean(tf.reduce_mean(centred, axis=2), axis=1)
        mu_s = mu_c + centre
        sd_s = tf.sqrt(tf.reduce_mean(tf.reduce_mean(
            tf.square(centred - mu_c[:, None, None]), axis=2), axis=1))
    else:
        w = tf.cast(tf.convert_to_tensor(weights), tf.float32)
        w = w[None] if w.shape.rank == 2 else w
        w = tf.reshape(_subsample(w[..., None], subsample), [tf.shape(w)[0], -1, 1])
        total = tf.maximum(tf.reduce_sum(w, axis=1), 1.0)  # [B or 1, 1]
        mu_s = tf.reduce_sum(values * w, axis=1) / total
        var = tf.reduce_sum(tf.square(values - mu_s[:, None]) * w, axis=1) / total
        sd_s = tf.sqrt(var)
    mu_t, sd_t = _const(reference.mean), _const(reference.std)
    scale = sd_t / tf.maximum(sd_s, _STD_FLOOR)  # [B, 3]
    k, k0 = _WORKING_TO_SPACE[space]
    k, k_inv, k0 = _const(k), _const(np.linalg.inv(k)), _const(k0)
    mix = tf.matmul(k[None] * scale[:, None, :], k_inv[None])
    shift = k0 * scale + mu_t - mu_s * scale - k0  # [B, 3]
    bias = tf.matmul(shift[:, None, :], k_inv[None])
    return mix, bias


def apply_reinhard(
    images: tf.Tensor, mix: tf.Tensor, bias: tf.Tensor, color_space: str = "lalphabeta"
) -> tf.Tensor:
    """Apply :func:`reinhard_coefficients` to ``images`` (float32 [0, 255] out, not rounded).

    Example:
        >>> image = tf.fill([4, 4, 3], tf.constant(90, tf.uint8))
        >>> apply_reinhard(image, *reinhard_coefficients(image)).shape
        TensorShape([4, 4, 3])
    """
    _check_color_space(color_space)
    x, single = _as_batch(images)
    shape = tf.shape(x)
    z = _to_working(tf.reshape(x, [-1, 3]), color_space)
    z = _mat3(tf.reshape(z, [shape[0], -1, 3]), mix) + bias
    out = tf.reshape(_from_working(tf.reshape(z, [-1, 3]), color_space), shape)
    return out[0] if single else out


def reinhard(
    images: tf.Tensor, reference: ReinhardStats = DEFAULT_REINHARD, subsample: int = 4
) -> tf.Tensor:
    """Reinhard colour transfer of each image to ``reference``.

    Args:
        images: uint8 (or float in [0, 255]) ``[H, W, 3]`` or ``[B, H, W, 3]``.
        reference: target statistics; its ``color_space`` picks lαβ or CIE Lab.
        subsample: statistics use every ``subsample``-th row and column (1 = all pixels).

    Returns:
        float32 in [0, 255], same shape as ``images`` (not rounded).

    Example:
        >>> out = reinhard(tf.fill([4, 4, 3], tf.constant(128, tf.uint8)))
        >>> out.shape
        TensorShape([4, 4, 3])
    """
    reference = _as_reinhard_stats(reference)
    mix, bias = reinhard_coefficients(images, reference, subsample)
    return apply_reinhard(images, mix, bias, reference.color_space)


def _as_reinhard_stats(reference: Any) -> ReinhardStats:
    if isinstance(reference, ReinhardStats):
        stats = reference
    elif isinstance(reference, Mapping):
        stats = ReinhardStats(
            mean=tuple(float(v) for v in reference["mean"]),
            std=tuple(float(v) for v in reference["std"]),
            color_space=str(reference.get("color_space", "lalphabeta")),
        )
    else:
        raise ValueError(
            "Expected ReinhardStats or a dict with 'mean' and 'std'. "
            f"Received: reference={reference!r}"
        )
    _check_color_space(stats.color_space)
    if len(stats.mean) != 3 or len(stats.std) != 3:
        raise ValueError(f"Reinhard stats need 3 means and 3 stds. Received: reference={stats!r}")
    if min(stats.std) <= 0:
        raise ValueError(f"Reference stds must be positive. Received: std={stats.std!r}")
    return stats


# --------------------------------------------------------------------------- Macenko


def _masked_percentile(values: tf.Tensor, mask: tf.Tensor, q: float) -> tf.Tensor:
    """Nearest-rank percentile of ``values[mask]`` (1-D), sort based (no tfp dependency)."""
    count = tf.reduce_sum(tf.cast(mask, tf.int32))
    ordered = tf.sort(tf.where(mask, values, tf.fill(tf.shape(values), np.float32(np.inf))))
    index = tf.cast(tf.round(q / 100.0 * tf.cast(tf.maximum(count - 1, 0), tf.float32)), tf.int32)
    return tf.gather(ordered, index)


def _stain_matrix(od: tf.Tensor, tissue: tf.Tensor) -> tf.Tensor:
    """Macenko's H&E optical-density stain matrix ``[3, 2]`` from tissue pixels of ``od``."""
    weight = tf.cast(tissue, tf.float32)[:, None]
    count = tf.reduce_sum(weight)
    mean = tf.reduce_sum(od * weight, 0) / count
    centred = (od - mean) * weight
    cov = tf.matmul(centred, centred, transpose_a=True) / tf.maximum(count - 1.0, 1.0)
    _, vectors = tf.linalg.eigh(cov)
    plane = vectors[:, 1:3]  # the two largest eigenvalues
    # Eigenvector signs are arbitrary; make each point into positive optical density.
    plane = plane * tf.where(tf.reduce_sum(plane, 0, keepdims=True) < 0, -1.0, 1.0)
    proj = tf.matmul(od, plane)
    phi = tf.atan2(proj[:, 1], proj[:, 0])
    lo = _masked_percentile(phi, tissue, MACENKO_ALPHA)
    hi = _masked_percentile(phi, tissue, 100.0 - MACENKO_ALPHA)
    v_lo = tf.linalg.matvec(plane, tf.stack([tf.cos(lo), tf.sin(lo)]))
    v_hi = tf.linalg.matvec(plane, tf.stack([tf.cos(hi), tf.sin(hi)]))
    # Haematoxylin is the vector with the larger red OD.
    he = tf.where(v_lo[0] > v_hi[0], tf.stack([v_lo, v_hi], 1), tf.stack([v_hi, v_lo], 1))
    return he / tf.norm(he, axis=0, keepdims=True)


def _pinv_t(he: tf.Tensor) -> tf.Tensor:
    """``pinv(he)ᵀ`` for a 3x2 matrix via an explicit 2x2 inverse (no MatrixInverse op)."""
    g = tf.matmul(he, he, transpose_a=True)
    det = g[0, 0] * g[1, 1] - g[0, 1] * g[1, 0]
    g_inv = tf.stack([tf.stack([g[1, 1], -g[0, 1]]), tf.stack([-g[1, 0], g[0, 0]])]) / det
    return tf.matmul(he, g_inv)


def _max_concentration(od: tf.Tensor, pinv_t: tf.Tensor) -> tf.Tensor:
    conc = tf.matmul(od, pinv_t)
    every = tf.ones_like(conc[:, 0], tf.bool)
    return tf.stack(
        [_masked_percentile(conc[:, 0], every, 99.0), _masked_percentile(conc[:, 1], every, 99.0)]
    )


def _optical_density(rgb: tf.Tensor) -> tf.Tensor:
    return -tf.math.log((tf.reshape(rgb, [-1, 3]) + 1.0) / MACENKO_IO)


def _macenko_one(image: tf.Tensor, reference: MacenkoStats, subsample: int) -> tf.Tensor:
    od_sub = _optical_density(_subsample(image[None], subsample)[0])
    tissue = tf.reduce_all(od_sub >= MACENKO_BETA, axis=-1)
    count = tf.reduce_sum(tf.cast(tissue, tf.int32))

    def normalise() -> tf.Tensor:
        pinv_t = _pinv_t(_stain_matrix(od_sub, tissue))
        max_c = _max_concentration(od_sub, pinv_t)
        scale = _const(reference.max_concentration) / tf.maximum(max_c, 1e-6)
        od = _optical_density(image)
        # Negative amounts are unmixing noise (a green-tinted lumen reads as +H, -E); a
        # stain cannot be less than absent.
        conc = tf.maximum(tf.matmul(od, pinv_t), 0.0) * scale
        he_ref = _const(reference.stain_matrix)
        out = MACENKO_IO * tf.exp(-tf.matmul(conc, he_ref, transpose_b=True))
        # Background (glass, lumen) carries no stain to normalise, but its tint still unmixes
        # into some haematoxylin, which the scale then amplifies into a blue lumen on real
        # BreaKHis slides (docs/img/real_stain.png). Keep it as it was, fading in the
        # normalised colour as the optical density rises to the tissue threshold.
        # Tissue is Macenko's own definition (OD >= beta in every channel); the ramp starts
        # at beta / 2 so faint tissue edges do not get a hard seam.
        weight = tf.clip_by_value(
            (tf.reduce_min(od, axis=-1, keepdims=True) - 0.5 * MACENKO_BETA)
            / (0.5 * MACENKO_BETA), 0.0, 1.0)
        out = weight * out + (1.0 - weight) * tf.reshape(tf.cast(image, tf.float32), [-1, 3])
        return tf.reshape(tf.clip_by_value(out, 0.0, 255.0), tf.shape(image))

    # Too little tissue to estimate two stain vectors: leave the image as it is.
    return tf.cond(count >= MACENKO_MIN_TISSUE, normalise, lambda: image)


def macenko(
    images: tf.Tensor, reference: MacenkoStats = DEFAULT_MACENKO, subsample: int = 4
) -> tf.Tensor:
    """Macenko stain normalisation of each image to ``reference``.

    Stain vectors and the 99th-percentile concentrations are estimated on every
    ``subsample``-th row/column; images with fewer than 16 tissue pixels (OD >= 0.15 in all
    channels) are returned unchanged.

    Args:
        images: uint8 (or float in [0, 255]) ``[H, W, 3]`` or ``[B, H, W, 3]``.
        reference: target stain matrix and maximum concentrations.
        subsample: estimation stride (1 = all pixels).

    Returns:
        float32 in [0, 255], same shape as ``images``.

    Example:
        >>> macenko(tf.fill([4, 4, 3], tf.constant(250, tf.uint8))).shape
        TensorShape([4, 4, 3])
    """
    reference = _as_macenko_stats(reference)
    x, single = _as_batch(images)
    out = tf.map_fn(
        lambda im: _macenko_one(im, reference, subsample),
        x,
        fn_output_signature=tf.TensorSpec(x.shape[1:], tf.float32),
    )
    return out[0] if single else out


def _as_macenko_stats(reference: Any) -> MacenkoStats:
    if isinstance(reference, MacenkoStats):
        stats = reference
    elif isinstance(reference, Mapping):
        stats = MacenkoStats(
            stain_matrix=tuple(tuple(float(v) for v in row) for row in reference["stain_matrix"]),
            max_concentration=tuple(float(v) for v in reference["max_concentration"]),
        )
    else:
        raise ValueError(
            "Expected MacenkoStats or a dict with 'stain_matrix' and 'max_concentration'. "
            f"Received: reference={reference!r}"
        )
    if np.shape(stats.stain_matrix) != (3, 2) or len(stats.max_concentration) != 2:
        raise ValueError(
            f"Macenko stats need a 3x2 stain matrix and 2 concentrations. Received: {stats!r}"
        )
    return stats


# --------------------------------------------------------------------------- references


def fit_reference(
    images: np.ndarray | Sequence[np.ndarray],
    method: str = "reinhard",
    color_space: str = "lalphabeta",
) -> ReinhardStats | MacenkoStats:
    """Reference statistics of one RGB uint8 image (or several, pooled).

    Args:
        images: ``[H, W, 3]`` uint8 array, or a sequence of them (pixels are pooled).
        method: ``"reinhard"`` or ``"macenko"``.
        color_space: Reinhard colour space, ``"lalphabeta"`` or ``"lab"``.

    Returns:
        :class:`ReinhardStats` or :class:`MacenkoStats` holding plain floats.

    Raises:
        ValueError: unknown method or colour space, or not RGB images.

    Example:
        >>> import numpy as np
        >>> stats = fit_reference(np.full((8, 8, 3), 200, np.uint8), color_space="lab")
        >>> round(stats.mean[0], 1), stats.color_space
        (80.6, 'lab')
    """
    _check_method(method)
    if method == "none":
        raise ValueError("method='none' has no reference. Received: method='none'")
    arrays = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    if not arrays or any(np.ndim(a) != 3 or np.shape(a)[-1] != 3 for a in arrays):
        raise ValueError(
            f"Expected RGB images [H, W, 3]. Received: shapes={[np.shape(a) for a in arrays]}"
        )
    pixels = np.concatenate([np.asarray(a).reshape(-1, 3) for a in arrays]).astype(np.float32)
    if method == "reinhard":
        _check_color_space(color_space)
        convert = rgb_to_lalphabeta if color_space == "lalphabeta" else rgb_to_lab
        values = convert(tf.constant(pixels)).numpy().astype(np.float64)
        return ReinhardStats(
            mean=tuple(float(v) for v in values.mean(0)),
            std=tuple(float(v) for v in values.std(0)),
            color_space=color_space,
        )
    return _fit_macenko(pixels)


def _fit_macenko(pixels: np.ndarray) -> MacenkoStats:
    od = _optical_density(tf.constant(pixels))
    tissue = tf.reduce_all(od >= MACENKO_BETA, axis=-1)
    if int(tf.reduce_sum(tf.cast(tissue, tf.int32))) < MACENKO_MIN_TISSUE:
        raise ValueError(
            f"Too little tissue to fit a Macenko reference (fewer than {MACENKO_MIN_TISSUE} "
            f"pixels with optical density >= {MACENKO_BETA}). Received: {len(pixels)} pixels"
        )
    he = _stain_matrix(od, tissue)
    max_c = _max_concentration(od, _pinv_t(he))
    return MacenkoStats(
        stain_matrix=tuple(tuple(float(v) for v in row) for row in he.numpy()),
        max_concentration=tuple(float(v) for v in max_c.numpy()),
    )


def _derive_default_lab_reference(n: int = 65536, seed: int = 0) -> ReinhardStats:
    """Recompute ``DEFAULT_REINHARD_LAB`` from ``DEFAULT_REINHARD`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    lab = rng.normal(DEFAULT_REINHARD.mean, DEFAULT_REINHARD.std, size=(n, 3)).astype(np.float32)
    rgb = np.round(lalphabeta_to_rgb(tf.constant(lab)).numpy()).astype(np.uint8)
    return fit_reference(rgb.reshape(1, -1, 3), "reinhard", "lab")


def default_reference(
    method: str, color_space: str = "lalphabeta"
) -> ReinhardStats | MacenkoStats | None:
    """The documented default reference for ``method`` (``None`` for ``"none"``).

    Example:
        >>> default_reference("reinhard").color_space
        'lalphabeta'
    """
    _check_method(method)
    if method == "macenko":
        return DEFAULT_MACENKO
    if method == "none":
        return None
    return (
        DEFAULT_REINHARD
        if _check_color_space(color_space) == "lalphabeta"
        else DEFAULT_REINHARD_LAB
    )


def normalize_stain(
    images: tf.Tensor,
    method: str = "reinhard",
    reference: ReinhardStats | MacenkoStats | Mapping | None = None,
    subsample: int = 4,
) -> tf.Tensor:
    """Functional form of :class:`StainNormalization` (float32 in [0, 255] out).

    Example:
        >>> normalize_stain(tf.zeros([2, 4, 4, 3], tf.uint8), "none").dtype
        tf.float32
    """
    _check_method(method)
    if method == "none":
        return _to_float(images)
    if reference is None:
        reference = default_reference(method)
    if method == "reinhard":
        return reinhard(images, _as_reinhard_stats(reference), subsample)
    return macenko(images, _as_macenko_stats(reference), subsample)


# --------------------------------------------------------------------------- Keras layer


@keras.saving.register_keras_serializable(package="breastzoo")
class StainNormalization(keras.layers.Layer):
    """Stain normalisation as a Keras 3 layer (usable in ``tf.data`` and inside models).

    Input: uint8 or float RGB in [0, 255], ``[H, W, 3]`` or ``[B, H, W, 3]``. Output: float32
    in [0, 255] (not rounded), same shape. The reference statistics live in ``get_config`` as
    plain floats, so a model that contains this layer carries its colour normalisation
    reference with it and reloads with ``safe_mode=True``.

    Args:
        method: ``"reinhard"`` (default), ``"macenko"`` or ``"none"`` (identity, cast only).
        reference: :class:`ReinhardStats` / :class:`MacenkoStats` (or their dict form);
            ``None`` picks the documented default for ``method`` and ``color_space``.
        color_space: Reinhard colour space when ``reference`` is ``None``: ``"lalphabeta"``
            (default) or ``"lab"``. Must agree with ``reference.color_space`` if both given.
        subsample: statistics stride (1 = every pixel).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> import numpy as np
        >>> ref = fit_reference(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8))
        >>> layer = StainNormalization("reinhard", reference=ref)
        >>> layer(np.zeros((1, 16, 16, 3), np.uint8)).shape
        TensorShape([1, 16, 16, 3])
    """

    def __init__(
        self,
        method: str = "reinhard",
        reference: ReinhardStats | MacenkoStats | Mapping | None = None,
        color_space: str | None = None,
        subsample: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.method = _check_method(method)
        if int(subsample) < 1:
            raise ValueError(f"subsample must be >= 1. Received: subsample={subsample!r}")
        self.subsample = int(subsample)
        if method == "none":
            self.reference = None
        elif method == "reinhard":
            if reference is None:
                reference = default_reference("reinhard", color_space or "lalphabeta")
            stats = _as_reinhard_stats(reference)
            if color_space is not None and _check_color_space(color_space) != stats.color_space:
                raise ValueError(
                    f"color_space disagrees with the reference. Received: color_space="
                    f"{color_space!r}, reference.color_space={stats.color_space!r}"
                )
            self.reference = stats
        else:
            self.reference = _as_macenko_stats(reference or DEFAULT_MACENKO)
        self.color_space = self.reference.color_space if self.method == "reinhard" else None

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] is not None and input_shape[-1] != 3:
            raise ValueError(f"Expected 3 colour channels. Received: input_shape={input_shape}")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return normalize_stain(inputs, self.method, self.reference, self.subsample)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def compute_output_spec(self, inputs: Any) -> keras.KerasTensor:
        return keras.KerasTensor(inputs.shape, dtype="float32")

    def get_config(self) -> dict:
        config = super().get_config()
        reference: dict | None
        if self.reference is None:
            reference = None
        elif isinstance(self.reference, ReinhardStats):
            reference = {
                "mean": [float(v) for v in self.reference.mean],
                "std": [float(v) for v in self.reference.std],
                "color_space": self.reference.color_space,
            }
        else:
            reference = {
                "stain_matrix": [[float(v) for v in row] for row in self.reference.stain_matrix],
                "max_concentration": [float(v) for v in self.reference.max_concentration],
            }
        config.update(
            {
                "method": self.method,
                "reference": reference,
                "color_space": self.color_space,
                "subsample": self.subsample,
            }
        )
        return config
