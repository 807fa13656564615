"""The tf.data input pipeline: decode, stain-normalise, fit to a common size, augment, batch.

Data flow of :func:`make_dataset` (one record = one image file)::

    (path, label, patient)            shuffled here (cheap: strings) unless caching
      -> decode_image                 PNG/JPEG/BMP/GIF natively, TIFF via PIL; uint8 RGB
      -> fit to image_size            centred crop/pad (white), never rescaled
      -> stain normalisation          optional; Reinhard statistics ignore the padding
      -> resize                       optional bilinear rescale (global-branch inputs)
      -> ignore_errors                unreadable files are dropped with a logged warning
      -> cache                        optional ("memory" or a file prefix)
      -> shuffle (if cached) / repeat
      -> expand_and_augment           k augmented views per image (training only)
      -> batch -> prefetch

Images stay uint8 end to end: a quarter of the memory of float32 in caches and prefetch
buffers, and the model owns scaling (conventions: preprocessing that inference needs lives in
the model). Stain normalisation is rounded back to uint8. Reinhard and the augmentations run
as XLA kernels on the fixed-size canvas (one compilation per shape): see docs/pipeline.md.

Example:
    >>> from breastzoo.data.records import ImageRecord
    >>> recs = [ImageRecord("/data/a.png", "folder", "a", "benign", "x")]
    >>> ds = make_dataset(recs, ["x"], image_size=(64, 48))  # doctest: +SKIP
    >>> images, labels = next(iter(ds))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from breastzoo.data.augment import expand_and_augment, expansion_factor
from breastzoo.data.constants import BACH_IMAGE_SIZE, BREAKHIS_IMAGE_SIZE
from breastzoo.data.records import ImageRecord
from breastzoo.data.stain import (
    ReinhardStats,
    StainNormalization,
    apply_reinhard,
    reinhard_coefficients,
    xla_products,
)

TASKS: tuple[str, ...] = ("subtype", "binary")
# Slide background is white, so padding with white adds no artificial tissue edge.
PAD_VALUE = 255
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Reinhard in the pipeline runs as an XLA kernel (see _xla); bench/pipeline.py flips this to
# measure the plain-graph version.
_REINHARD_XLA = True


# --------------------------------------------------------------------------- decoding


def _to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Any decoded raster (gray, gray+alpha, RGB, RGBA; 8/16/32-bit or float) -> uint8 RGB."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar TIFF
    if array.ndim != 3:
        raise ValueError(f"Not a 2-D image. Received: shape={array.shape}")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array) * scale + 0.5, 0, 255).astype(np.uint8)
    elif array.dtype == np.uint16 or (
        np.issubdtype(array.dtype, np.integer) and int(array.max(initial=0)) > 255
    ):
        # 16-bit (also PIL's 32-bit "I" mode holding 16-bit data): rounded rescale.
        wide = np.clip(array.astype(np.int64), 0, 65535)
        array = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    else:
        array = np.clip(array, 0, 255).astype(np.uint8)
    channels = array.shape[-1]
    if channels in (1, 2):  # gray (+ alpha)
        array = np.repeat(array[..., :1], 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _decode_tiff_bytes(data: bytes | np.ndarray) -> np.ndarray:
    from PIL import Image

    if isinstance(data, np.ndarray):  # eager numpy_function hands over a 0-d object array
        data = data.item()

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                image = image.convert("RGB")
            return _to_rgb_uint8(np.asarray(image))
    except Exception as pil_error:  # noqa: BLE001 - PIL raises many types; try tifffile next
        try:
            import tifffile

            return _to_rgb_uint8(tifffile.imread(io.BytesIO(data)))
        except Exception:  # noqa: BLE001
            raise ValueError(f"Cannot decode TIFF: {pil_error}") from pil_error


def decode_image(path: str | tf.Tensor) -> tf.Tensor:
    """Read and decode one image file to uint8 RGB ``[H, W, 3]``.

    PNG, JPEG, BMP and GIF (first frame) use ``tf.io.decode_image``; TIFF (recognised by its
    magic bytes, not its name) goes through PIL, falling back to ``tifffile``, inside a
    ``tf.numpy_function``. Grayscale becomes RGB, alpha is dropped, 16-bit data is rescaled to
    8 bits (``v * 255 / 65535``; PNG via TF's decoder, which may differ by 1).

    Args:
        path: file path (Python string or scalar string tensor).

    Returns:
        uint8 tensor ``[H, W, 3]``. Works eagerly and inside ``tf.data``/``tf.function``;
        undecodable files raise ``tf.errors.InvalidArgumentError`` (or ``UnknownError``).

    Example:
        >>> decode_image("slide.png").shape  # doctest: +SKIP
        TensorShape([460, 700, 3])
    """
    contents = tf.io.read_file(path)
    magic = tf.strings.substr(contents, 0, 4)
    is_tiff = tf.logical_or(tf.equal(magic, _TIFF_MAGIC[0]), tf.equal(magic, _TIFF_MAGIC[1]))

    def tiff() -> tf.Tensor:
        return tf.numpy_function(_decode_tiff_bytes, [contents], tf.uint8, stateful=False)

    def other() -> tf.Tensor:
        return tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)

    image = tf.cond(is_tiff, tiff, other)
    return tf.ensure_shape(image, [None, None, 3])


# --------------------------------------------------------------------------- geometry


def fit_to_size(image: tf.Tensor, size: tuple[int, int], fill: int = PAD_VALUE) -> tf.Tensor:
    """Centre-crop or pad ``image`` ``[H, W, C]`` to ``size = (width, height)``; no rescaling.

    Example:
        >>> fit_to_size(tf.zeros([456, 700, 3], tf.uint8), (700, 460)).shape
        TensorShape([460, 700, 3])
    """
    width, height = size
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    top = tf.maximum(h - height, 0) // 2
    left = tf.maximum(w - width, 0) // 2
    image = image[top : top + height, left : left + width]
    ch, cw = tf.minimum(h, height), tf.minimum(w, width)
    pad_top = (height - ch) // 2
    pad_left = (width - cw) // 2
    paddings = [[pad_top, height - ch - pad_top], [pad_left, width - cw - pad_left], [0, 0]]
    image = tf.pad(image, paddings, constant_values=tf.cast(fill, image.dtype))
    return tf.ensure_shape(image, [height, width, image.shape[-1]])


def crop_at(
    images: tf.Tensor,
    centers: tf.Tensor,
    size: int,
    *,
    normalized: bool = True,
    border: str = "pad",
    pad_value: int | float = 0,
) -> tf.Tensor:
    """Crop ``size`` x ``size`` patches at full resolution around given centres.

    Coordinates are ``(y, x)``. With ``normalized=True`` (the default) they are in [0, 1]:
    the centre pixel is ``round(y * (H - 1)), round(x * (W - 1))``, so 0 is the first and 1
    the last row/column. With ``normalized=False`` they are integer pixel indices. A patch
    covers rows ``cy - size // 2 .. cy - size // 2 + size - 1`` (same for columns), exactly
    ``image[top:top + size, left:left + size]`` where it lies inside the image. Float pixel
    centres are rounded; centres outside the image are first clipped onto its edge.

    Borders: ``"pad"`` keeps the patch centred and fills outside pixels with ``pad_value``;
    ``"clamp"`` shifts the window inside the image (then padded only if ``size`` exceeds the
    image). ``"clamp"`` on images of known static size >= ``size`` is two gathers; otherwise
    the batch is padded once (a copy of the images) first. Only pad/gather/clip ops are used
    (no ``crop_and_resize``), so it converts to TFLite builtins (checked for uint8
    ``[1, 460, 700, 3]`` with 5 patches of 112, both border modes).

    Args:
        images: ``[H, W, C]`` or ``[B, H, W, C]``.
        centers: ``[K, 2]`` (single image) or ``[B, K, 2]``.
        size: patch side in pixels.
        normalized: centres in [0, 1] (default) or pixels.
        border: ``"pad"`` or ``"clamp"``.
        pad_value: fill value outside the image.

    Returns:
        ``[K, size, size, C]`` or ``[B, K, size, size, C]``, dtype of ``images``.

    Example:
        >>> image = tf.reshape(tf.range(10 * 12 * 1), [10, 12, 1])
        >>> crop_at(image, [[0.5, 0.5]], 4).shape
        TensorShape([1, 4, 4, 1])
    """
    if border not in ("pad", "clamp"):
        raise ValueError(
            f"Unknown border mode. Received: border={border!r}; expected 'pad' or 'clamp'."
        )
    if int(size) < 1:
        raise ValueError(f"size must be >= 1. Received: size={size!r}")
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    if single:
        images = images[None]
        centers = tf.convert_to_tensor(centers)[None]
    if images.shape.rank != 4:
        raise ValueError(f"Expected [H, W, C] or [B, H, W, C]. Received: shape={images.shape}")
    centers = tf.convert_to_tensor(centers)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    dims = tf.stack([height, width])
    if normalized:
        scale = tf.cast(dims - 1, tf.float32)
        pixel = tf.cast(tf.floor(tf.cast(centers, tf.float32) * scale + 0.5), tf.int32)
    elif centers.dtype.is_floating:
        pixel = tf.cast(tf.floor(centers + 0.5), tf.int32)
    else:
        pixel = tf.cast(centers, tf.int32)
    pixel = tf.clip_by_value(pixel, 0, dims - 1)
    start = pixel - size // 2  # [B, K, 2]
    static_h, static_w = images.shape[1], images.shape[2]
    fits = static_h is not None and static_w is not None and min(static_h, static_w) >= size
    if border == "clamp":
        start = tf.clip_by_value(start, 0, tf.maximum(dims - size, 0))
    if border == "pad" or not fits:
        # Pad (PADV2) so every window lies inside; then plain gathers cut it out. A masked
        # select instead of the pad does not convert to TFLite builtins for uint8.
        before = size // 2
        images = tf.pad(
            images,
            [[0, 0], [before, size], [before, size], [0, 0]],
            constant_values=tf.cast(pad_value, images.dtype),
        )
        start = start + before
    offsets = tf.range(size)
    rows = start[..., 0:1] + offsets  # [B, K, size]
    cols = start[..., 1:2] + offsets
    batch, count = tf.shape(rows)[0], tf.shape(rows)[1]
    strips = tf.gather(images, tf.reshape(rows, [batch, count * size]), axis=1, batch_dims=1)
    strips = tf.reshape(strips, [batch, count, size, tf.shape(images)[2], shape[3]])
    patches = tf.gather(strips, cols, axis=3, batch_dims=2)  # [B, K, size, size, C]
    return patches[0] if single else patches


# --------------------------------------------------------------------------- dataset


def record_labels(
    records: Sequence[ImageRecord], class_names: Sequence[str], task: str
) -> list[int]:
    """Class index of each record for ``task`` (subtype or benign/malignant).

    Args:
        records: index records.
        class_names: ordered classes.
        task: ``"subtype"`` or ``"binary"``.

    Raises:
        ValueError: unknown task, or a record whose class is not in ``class_names``.

    Example:
        >>> record_labels([ImageRecord("a.png", "folder", "a", "benign", "x")], ["x"], "subtype")
        [0]
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task. Received: task={task!r}; expected one of {TASKS}.")
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for record in records:
        name = record.subtype if task == "subtype" else record.label
        if name not in index:
            raise ValueError(
                f"Record class is not in class_names. Received: class={name!r} (task={task!r}, "
                f"path={record.path!r}); class_names={list(class_names)}"
            )
        labels.append(index[name])
    return labels


def default_image_size(records: Sequence[ImageRecord]) -> tuple[int, int]:
    """(width, height) canvas for ``records``: BACH's 2048x1536 if all are BACH, else 700x460.

    Example:
        >>> default_image_size([])
        (700, 460)
    """
    if records and all(r.dataset == "bach" for r in records):
        return BACH_IMAGE_SIZE
    return BREAKHIS_IMAGE_SIZE


def _check_size(name: str, value: Any) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (width, height). Received: {name}={value!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"{name} must be positive. Received: {name}={value!r}")
    return width, height


def _reinhard_uint8(
    image: tf.Tensor, mix: tf.Tensor, bias: tf.Tensor, color_space: str
) -> tf.Tensor:
    out = apply_reinhard(image, mix, bias, color_space)
    return tf.cast(out + 0.5, tf.uint8)


def _reinhard_masked(
    canvas: tf.Tensor, content: tf.Tensor, reference: ReinhardStats, subsample: int
) -> tf.Tensor:
    mix, bias = reinhard_coefficients(canvas, reference, subsample, content)
    return _reinhard_uint8(canvas, mix, bias, reference.color_space)


@functools.cache
def _xla(fn: Callable, *static: Any) -> Callable:
    """``fn(x, ..., *static)`` as an XLA kernel (compiled once per input shape).

    Reinhard unfused is ~12 passes over the image (casts, three 3x3 products, log, exp, clip)
    and TF's strided slice for the statistics costs as much as the statistics; fused, its CPU
    cost per 700x460 image drops by more than half (numbers in docs/pipeline.md).
    """

    @tf.function(jit_compile=True)
    def run(*args: tf.Tensor) -> Any:
        with xla_products():
            return fn(*args, *static)

    return run


def _fit_and_resize(
    image: tf.Tensor, size: tuple[int, int], out_size: tuple[int, int] | None
) -> tf.Tensor:
    image = fit_to_size(image, size)
    return image if out_size is None else _resize(image, out_size)


def _resize(image: tf.Tensor, out_size: tuple[int, int]) -> tf.Tensor:
    resized = tf.image.resize(image, (out_size[1], out_size[0]), antialias=True)
    return tf.cast(tf.clip_by_value(resized, 0.0, 255.0) + 0.5, tf.uint8)


def _fit_with_mask(image: tf.Tensor, size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`fit_to_size` plus a bool ``[height, width]`` mask of the non-padding pixels."""
    width, height = size
    shape = tf.shape(image)
    ch, cw = tf.minimum(shape[0], height), tf.minimum(shape[1], width)
    top, left = (height - ch) // 2, (width - cw) // 2
    rows = tf.range(height)
    cols = tf.range(width)
    row_in = tf.logical_and(rows >= top, rows < top + ch)
    col_in = tf.logical_and(cols >= left, cols < left + cw)
    return fit_to_size(image, size), tf.logical_and(row_in[:, None], col_in[None, :])


def _as_normalizer(normalizer: Any) -> StainNormalization | None:
    if normalizer is None or normalizer == "none":
        return None
    if isinstance(normalizer, str):
        return StainNormalization(normalizer)
    if isinstance(normalizer, StainNormalization):
        return None if normalizer.method == "none" else normalizer
    raise ValueError(
        "normalizer must be None, a method name or a StainNormalization layer. Received: "
        f"normalizer={normalizer!r}"
    )


def make_dataset(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    *,
    task: str = "subtype",
    batch_size: int | None = 16,
    shuffle: bool = False,
    seed: int | None = 0,
    augment: str = "none",
    expand: bool = True,
    normalizer: StainNormalization | str | None = None,
    image_size: tuple[int, int] | None = None,
    resize: tuple[int, int] | None = None,
    cache: str | None = None,
    shuffle_buffer: int = 512,
    cycle_length: int = 16,
    repeat: bool = False,
    drop_remainder: bool = False,
    with_path: bool = False,
    balance: bool = False,
    color_jitter: float = 0.0,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of uint8 images and int32 labels for a list of records.

    Elements: ``(images, labels)``: images uint8 ``[B, H, W, 3]`` (``H, W`` from
    ``image_size`` or ``resize``), labels int32 ``[B]`` (index into ``class_names``). With
    ``with_path=True``: ``(images, labels, {"path": string [B], "patient": string [B]})`` for
    evaluation loops (do not pass that form to ``Model.fit``: Keras would read the third
    element as sample weights). ``batch_size=None`` yields single examples.

    Images of different sizes are centre-cropped/padded (white) to ``image_size`` at full
    resolution, never rescaled (BreaKHis' few 700x456 images get two white rows); ``resize``
    then rescales (bilinear, antialiased) when a model wants a fixed small input.
    Unreadable or corrupt files are dropped with a logged warning, never ending an epoch.

    Args:
        records: images to serve.
        class_names: ordered classes; ``record.subtype`` (task ``"subtype"``) or
            ``record.label`` (``"binary"``) must be one of them.
        task: ``"subtype"`` or ``"binary"``.
        batch_size: batch size, or ``None`` for unbatched elements.
        shuffle: reshuffle every epoch (file order; after the cache when caching).
        seed: seed for shuffling and augmentation (``None``: non-deterministic).
        augment: ``"none"``, ``"xu2020"`` or ``"zhu2019"`` (see :mod:`breastzoo.data.augment`).
        expand: with augmentation, yield ``expansion_factor(augment)`` views per image per
            epoch (the papers' 3x / 8x); ``False`` yields one random view.
        normalizer: ``None``, ``"reinhard"``/``"macenko"`` (default reference) or a
            :class:`StainNormalization` layer; applied before caching. Reinhard takes its
            statistics from the image content (padding excluded) and maps the canvas, or the
            resized image when ``resize`` is set; Macenko runs on the native image.
        image_size: common ``(width, height)``; default :func:`default_image_size`.
        resize: optional ``(width, height)`` rescale after fitting to ``image_size``.
        cache: ``None``, ``"memory"`` or a file prefix for ``Dataset.cache``; holds decoded,
            normalised images, so later epochs skip decoding.
        shuffle_buffer: shuffle buffer (in images) after a cache.
        cycle_length: interleave width of augmented copies (see ``expand_and_augment``).
        repeat: repeat forever.
        drop_remainder: drop the last partial batch.
        with_path: also yield paths and patient ids.
        balance: class-balanced sampling (training): every class present in ``records`` is
            drawn with the same probability, each class's images reshuffled every pass.
            Needs ``repeat=True`` (the stream is endless; an epoch is ``steps_per_epoch``
            batches). Full BreaKHis is 31% benign; without this a small model learns the
            majority class first and often stays there.
        color_jitter: with ``augment`` other than ``"none"``, random stain variation in HED
            space of this strength (see :func:`breastzoo.data.augment.hed_jitter`); 0 = off.

    Returns:
        The dataset, prefetched.

    Raises:
        ValueError: bad task, policy, sizes, cache, normaliser, empty records, or a record
            whose class is not in ``class_names`` (the message names it).

    Example:
        >>> ds = make_dataset(  # doctest: +SKIP
        ...     index.records, index.classes(), shuffle=True, augment="xu2020",
        ...     normalizer="reinhard")
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task. Received: task={task!r}; expected one of {TASKS}.")
    factor = expansion_factor(augment)
    records = list(records)
    if not records:
        raise ValueError("No records to build a dataset from. Received: records=[]")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 or None. Received: batch_size={batch_size!r}")
    if cache is not None and not isinstance(cache, str | os.PathLike):
        raise ValueError(f"cache must be None, 'memory' or a path. Received: cache={cache!r}")
    labels = record_labels(records, class_names, task)
    size = _check_size("image_size", image_size or default_image_size(records))
    out_size = _check_size("resize", resize) if resize is not None else None
    norm = _as_normalizer(normalizer)

    if balance and not repeat:
        raise ValueError("balance=True samples an endless stream; it needs repeat=True. "
                         "Received: repeat=False")

    def load(path: tf.Tensor, label: tf.Tensor, patient: tf.Tensor) -> tuple:
        image = decode_image(path)
        if norm is not None and norm.method == "reinhard":
            # Fit first, then normalise the fixed-size canvas: the XLA kernels then compile
            # once, whatever the native sizes. Padding is masked out of the statistics.
            canvas, content = _fit_with_mask(image, size)
            ref, space = norm.reference, norm.reference.color_space
            if out_size is None and _REINHARD_XLA:
                image = _xla(_reinhard_masked, ref, norm.subsample)(canvas, content)
            elif out_size is None:
                image = _reinhard_masked(canvas, content, ref, norm.subsample)
            else:
                # The map is per pixel: applying it after the resize equals applying it
                # before, up to resampling rounding, and costs only the small image's pixels.
                mix, bias = reinhard_coefficients(canvas, ref, norm.subsample, content)
                image = _resize(canvas, out_size)
                if _REINHARD_XLA:
                    image = _xla(_reinhard_uint8, space)(image, mix, bias)
                else:
                    image = _reinhard_uint8(image, mix, bias, space)
        else:
            if norm is not None:
                # +0.5 then truncation rounds; the layer already clipped to [0, 255].
                image = tf.cast(norm(image) + 0.5, tf.uint8)
            image = _fit_and_resize(image, size, out_size)
        return image, label, path, patient

    def source(indices: Sequence[int], stream_seed: int | None) -> tf.data.Dataset:
        """Decoded (image, label, path, patient) of ``records[indices]``, shuffled, cached
        and repeated as asked."""
        ds = tf.data.Dataset.from_tensor_slices((
            tf.constant([records[i].path for i in indices]),
            tf.constant([labels[i] for i in indices], tf.int32),
            tf.constant([records[i].patient for i in indices]),
        ))
        if shuffle and cache is None:
            ds = ds.shuffle(len(indices), seed=stream_seed, reshuffle_each_iteration=True)
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors(log_warning=True)
        if cache is not None:
            if cache == "memory":
                ds = ds.cache()
            else:
                os.makedirs(os.path.dirname(os.path.abspath(os.fspath(cache))), exist_ok=True)
                suffix = "" if stream_seed == seed else f".class{indices[0]}"
                ds = ds.cache(os.fspath(cache) + suffix)
            if shuffle:
                buffer = max(1, min(len(indices), int(shuffle_buffer)))
                ds = ds.shuffle(buffer, seed=stream_seed, reshuffle_each_iteration=True)
        return ds.repeat() if repeat else ds

    if balance:
        by_class: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            by_class.setdefault(label, []).append(i)
        classes = sorted(by_class)
        streams = [
            source(by_class[c], None if seed is None else seed + 1000 * (j + 1))
            for j, c in enumerate(classes)
        ]
        ds = tf.data.Dataset.sample_from_datasets(
            streams, weights=[1.0 / len(classes)] * len(classes), seed=seed,
            stop_on_empty_dataset=False,
        ) if len(streams) > 1 else streams[0]
    else:
        ds = source(range(len(records)), seed)
    if augment != "none":
        aug_seed = None if seed is None else seed + 1
        copies = factor if expand else 1
        ds = expand_and_augment(ds, augment, aug_seed, copies=copies, cycle_length=cycle_length,
                                color_jitter=color_jitter)

    def structure(image: tf.Tensor, label: tf.Tensor, path: tf.Tensor, patient: tf.Tensor):
        if with_path:
            return image, label, {"path": path, "patient": patient}
        return image, label

    ds = ds.map(structure, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
