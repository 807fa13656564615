"""Render one testbed image and its lesion mask: the lesion, the tissue around it, colour.

The diagnostic lesion covers only 3.5-9% of the field (one irregular blob, about 120-190 px
across at 700x460, placed uniformly wherever it fits: :func:`place_lesion`; returned as a
mask), with one common mean H and E density for every subtype
(:func:`~breastzoo.data.testbed.subtypes.equalize_lesion`); the rest is normal breast tissue
drawn from the *same* distribution for every subtype, with a reactive halo around the lesion.
Structures grow about 2x per magnification step (``MAG_SCALE``), so shrinking a 700x460 image
to 112x112 blurs most nuclear detail away.
``size`` sets the canvas in pixels; the pixel scale is fixed by the magnification, so a
smaller image is a smaller field of view, not a down-sampled one.

Each planned image is drawn from
``SeedSequence([seed, subtype, crc32(patient), magnification, sequence])`` and its patient's
appearance from ``SeedSequence([seed, subtype, crc32(patient), 4096])``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from breastzoo.data.breakhis import check_codes
from breastzoo.data.constants import BREAKHIS_IMAGE_SIZE, MAGNIFICATIONS, SUBTYPES
from breastzoo.data.testbed.canvas import Canvas, PatientStyle, patient_style, to_rgb
from breastzoo.data.testbed.paint import blur, fibres, noise
from breastzoo.data.testbed.plan import PlannedImage
from breastzoo.data.testbed.subtypes import LESIONS, equalize_lesion
from breastzoo.data.testbed.tissue import normal_tissue, stroma

# Feature scale per magnification, relative to 40X. Real optics give 2.5x, 2x, 2x; we keep
# roughly 2x per step but cap 400X so that a 112x112 crop still holds several nuclei.
MAG_SCALE: dict[str, float] = {"40X": 1.0, "100X": 2.0, "200X": 3.5, "400X": 6.0}
NUCLEUS_RADIUS_40X = 1.7  # px; a normal nucleus is ~3.4 px across at 40X, ~20 px at 400X
LESION_FRACTION = (0.035, 0.09)  # share of the image covered by the lesion mask

_MIN_SIZE, _MAX_SIZE = 16, 8192


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """Validate a (width, height) image size and return it as two ints.

    Args:
        image_size: (width, height); integral values in [16, 8192].

    Raises:
        ValueError: naming the bad value.

    Example:
        >>> check_image_size((700.0, 460))
        (700, 460)
    """
    try:
        values = tuple(image_size)
    except TypeError:
        values = None
    ok = (
        values is not None
        and len(values) == 2
        and all(isinstance(v, int | np.integer | float) and float(v).is_integer() for v in values)
        and all(_MIN_SIZE <= int(v) <= _MAX_SIZE for v in values)
    )
    if not ok:
        shown = values if values is not None else image_size
        raise ValueError(
            f"Bad image size. Received: image_size={shown!r}; expected (width, height), "
            f"integers in [{_MIN_SIZE}, {_MAX_SIZE}]"
        )
    return int(values[0]), int(values[1])


def _patient_seed(seed: int, subtype: str, patient: str) -> np.random.SeedSequence:
    return np.random.SeedSequence(
        [int(seed), SUBTYPES.index(subtype), zlib.crc32(patient.encode()), 4096]
    )


def _image_seed(seed: int, item: PlannedImage) -> np.random.SeedSequence:
    return np.random.SeedSequence(
        [
            int(seed),
            SUBTYPES.index(item.subtype),
            zlib.crc32(item.patient.encode()),
            MAGNIFICATIONS.index(item.magnification),
            item.seq,
        ]
    )


@dataclass(frozen=True)
class Lesion:
    """Where the lesion of one image lies: its mask and the uniform draw that placed it.

    Args:
        mask: bool (height, width), True on the lesion.
        centre: (x, y) of the centre of the lesion's bounding box, in pixels.
        x_range: (low, high) of the interval the centre's x was drawn from uniformly: every
            position where the lesion fits inside the image.
        y_range: the same for y.

    Example:
        >>> lesion = place_lesion((460, 700), np.random.default_rng(0))
        >>> lesion.x_range[0] <= lesion.centre[0] <= lesion.x_range[1]
        True
    """

    mask: np.ndarray
    centre: tuple[float, float]
    x_range: tuple[float, float]
    y_range: tuple[float, float]


def _offset(extent: tuple[int, int], side: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """Uniform integer shift of a ``[lo, hi]`` pixel extent so that it lies in ``[0, side)``.

    Returns ``(shift, low, high)``: the shift and the range it was drawn from. A lesion wider
    than the image overflows it on both sides instead.
    """
    lo, hi = extent
    a, b = -lo, side - 1 - hi
    if a > b:
        a, b = b, a
    return int(rng.integers(a, b + 1)), a, b


def place_lesion(shape: tuple[int, int], rng: np.random.Generator) -> Lesion:
    """Draw one irregular lesion covering exactly a random share ``LESION_FRACTION`` of the image.

    The blob is built in a box of its own, then shifted by a uniform draw over every position
    where it fits inside the image: there is no centre bias.

    Args:
        shape: (height, width) of the image.
        rng: random generator.

    Returns:
        A :class:`Lesion`.

    Example:
        >>> lesion = place_lesion((64, 96), np.random.default_rng(1))
        >>> bool(0.03 < lesion.mask.mean() < 0.1)
        True
    """
    h, w = shape
    k = max(1, int(round(rng.uniform(*LESION_FRACTION) * h * w)))  # lesion area in pixels
    radius = math.sqrt(k / math.pi)
    el, ang = rng.uniform(1.0, 1.6), rng.uniform(0, math.pi)
    q = max(1, int(radius / 24))  # the level function is smooth: compute it coarse
    g = int(math.ceil(2 * (2.4 * radius * math.sqrt(el) + 2) / q))  # box side, coarse cells
    side = g * q
    ax = (np.arange(g, dtype=np.float32) + 0.5) * q - side / 2
    dx, dy = ax[None, :], ax[:, None]
    u = (dx * math.cos(ang) + dy * math.sin(ang)) / (radius * math.sqrt(el))
    v = (-dx * math.sin(ang) + dy * math.cos(ang)) / (radius / math.sqrt(el))
    t = np.arctan2(v, u)
    # Low harmonics only: a 4th-order term makes blobs look square.
    wobble = 1.0 + sum(
        rng.uniform(0, amp) * np.cos(k_ * t + rng.uniform(0, 2 * math.pi))
        for k_, amp in ((2, 0.22), (3, 0.14), (5, 0.05))
    )
    level = np.sqrt(u * u + v * v) / np.maximum(wobble, 0.4)
    # Lumpy outline at ~1/6 of the blob size.
    level += 0.16 * noise((g, g), max(2.0, 2 * radius / 6 / q), rng)
    local = np.asarray(Image.fromarray(level).resize((side, side), Image.Resampling.BILINEAR))
    # The k lowest levels of the box are the lesion (its area is exact)...
    thr = np.partition(local.ravel(), k - 1)[k - 1] if k <= local.size else np.inf
    rows = np.nonzero((local <= thr).any(1))[0]
    cols = np.nonzero((local <= thr).any(0))[0]
    # ... and its bounding box is shifted uniformly over every place where it fits.
    sy, y_lo, y_hi = _offset((int(rows[0]), int(rows[-1])), h, rng)
    sx, x_lo, x_hi = _offset((int(cols[0]), int(cols[-1])), w, rng)
    full = np.full((h, w), np.inf, np.float32)
    ys, xs = max(0, sy), max(0, sx)
    ye, xe = min(h, sy + side), min(w, sx + side)
    if ye > ys and xe > xs:
        full[ys:ye, xs:xe] = local[ys - sy : ye - sy, xs - sx : xe - sx]
    # Thresholding the placed map keeps the area exact when the lesion fits (the usual case)
    # and as close as possible when the image is too small for it.
    finite = full[np.isfinite(full)]
    kk = min(k, finite.size)
    mask = full <= np.partition(finite, kk - 1)[kk - 1] if kk else np.zeros((h, w), bool)
    mid_x = (cols[0] + cols[-1]) / 2
    mid_y = (rows[0] + rows[-1]) / 2
    return Lesion(
        mask=mask,
        centre=(float(sx + mid_x), float(sy + mid_y)),
        x_range=(float(x_lo + mid_x), float(x_hi + mid_x)),
        y_range=(float(y_lo + mid_y), float(y_hi + mid_y)),
    )


def render_image(
    subtype: str,
    magnification: str,
    rng: np.random.Generator,
    size: tuple[int, int] = BREAKHIS_IMAGE_SIZE,
    stain: PatientStyle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic H&E image of a subtype at a magnification, and its lesion mask.

    Args:
        subtype: ``"A"``, ``"F"``, ``"PT"``, ``"TA"``, ``"DC"``, ``"LC"``, ``"MC"``, ``"PC"``.
        magnification: ``"40X"``, ``"100X"``, ``"200X"`` or ``"400X"`` (sets the pixel scale).
        rng: random generator (everything drawn comes from it).
        size: (width, height) in pixels.
        stain: the patient's appearance (:func:`patient_style`); ``None`` = reference stain.

    Returns:
        ``(image, mask)``: uint8 RGB array of shape (height, width, 3) and a bool array of
        shape (height, width), True on the lesion.

    Raises:
        ValueError: unknown subtype, magnification or bad size.

    Example:
        >>> img, mask = render_image("DC", "100X", np.random.default_rng(0), size=(224, 160))
        >>> img.shape, mask.dtype
        ((160, 224, 3), dtype('bool'))
    """
    check_codes(subtype, magnification)
    w, h = check_image_size(size)
    shape = (h, w)
    style = stain or PatientStyle()
    s = MAG_SCALE[magnification]
    r = NUCLEUS_RADIUS_40X * s
    mask = place_lesion(shape, rng).mask
    # Distance to the lesion, computed at half resolution (only compared with radii).
    half = ndimage.distance_transform_edt(~mask[::2, ::2]).astype(np.float32) * 2
    dist_out = np.repeat(np.repeat(half, 2, 0), 2, 1)[:h, :w] * ~mask
    fib, fib_dir = fibres(shape, 2.0 + 1.3 * s, rng)
    soft = blur(mask.astype(np.float32), 1.5 * r)  # lesion matrix fades in over ~2 nuclei
    c = Canvas(shape, rng, s, r, mask, soft, dist_out, fib, fib_dir, style)
    stroma(c)  # fibrous stroma, denser in the halo around the lesion
    normal_tissue(c)
    LESIONS[subtype](c)
    c.render_nuclei()
    equalize_lesion(c)  # one low-pass H and E level in every lesion: the class is in the detail
    return to_rgb(c, rng), mask


def render_planned(
    item: PlannedImage, seed: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Render one planned image exactly as :func:`synthesize` writes it.

    Args:
        item: an entry of :func:`plan`.
        seed: the testbed seed.
        size: (width, height).

    Returns:
        ``(image, mask)`` as :func:`render_image` returns them.

    Example:
        >>> from breastzoo.data.testbed.plan import plan
        >>> item = plan("tiny")[0]
        >>> img, mask = render_planned(item, 0, (96, 64))
    """
    style = patient_style(np.random.default_rng(_patient_seed(seed, item.subtype, item.patient)))
    rng = np.random.default_rng(_image_seed(seed, item))
    return render_image(item.subtype, item.magnification, rng, size, style)

