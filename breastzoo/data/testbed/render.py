"""Render one testbed image and its lesion mask: the lesion, the tissue around it, colour.

The diagnostic lesion covers only 12-32% of the field (one or two irregular blobs at a random
place, returned as a mask); the rest is normal breast tissue drawn from the *same*
distribution for every subtype. Structures grow about 2x per magnification step
(``MAG_SCALE``), so shrinking a 700x460 image to 112x112 blurs most nuclear detail away.
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

import numpy as np
from PIL import Image
from scipy import ndimage

from breastzoo.data.breakhis import check_codes
from breastzoo.data.constants import BREAKHIS_IMAGE_SIZE, MAGNIFICATIONS, SUBTYPES
from breastzoo.data.testbed.canvas import Canvas, PatientStyle, patient_style, to_rgb
from breastzoo.data.testbed.paint import blur, fibres, noise
from breastzoo.data.testbed.plan import PlannedImage
from breastzoo.data.testbed.subtypes import LESIONS
from breastzoo.data.testbed.tissue import normal_tissue

# Feature scale per magnification, relative to 40X. Real optics give 2.5x, 2x, 2x; we keep
# roughly 2x per step but cap 400X so that a 112x112 crop still holds several nuclei.
MAG_SCALE: dict[str, float] = {"40X": 1.0, "100X": 2.0, "200X": 3.5, "400X": 6.0}
NUCLEUS_RADIUS_40X = 1.7  # px; a normal nucleus is ~3.4 px across at 40X, ~20 px at 400X
LESION_FRACTION = (0.12, 0.32)  # share of the image covered by the lesion mask

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


def _lesion_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One or two irregular blobs covering exactly a random 12-32% of the image."""
    h, w = shape
    fraction = rng.uniform(*LESION_FRACTION)
    q = max(1, min(h, w) // 96)  # the level function is smooth: compute it coarse
    gh, gw = int(math.ceil(h / q)), int(math.ceil(w / q))
    yy = (np.arange(gh, dtype=np.float32)[:, None] + 0.5) * q
    xx = (np.arange(gw, dtype=np.float32)[None, :] + 0.5) * q
    level = np.full((gh, gw), np.inf, np.float32)
    n_blobs = 1 if rng.random() < 0.6 else 2
    for i in range(n_blobs):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        radius = math.sqrt(fraction * h * w / math.pi / n_blobs) * (
            1.0 if i == 0 else rng.uniform(0.6, 0.9)
        )
        el, ang = rng.uniform(1.0, 1.8), rng.uniform(0, math.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * math.cos(ang) + dy * math.sin(ang)) / (radius * math.sqrt(el))
        v = (-dx * math.sin(ang) + dy * math.cos(ang)) / (radius / math.sqrt(el))
        t = np.arctan2(v, u)
        # Low harmonics only: a 4th-order term makes blobs look square.
        wobble = 1.0 + sum(
            rng.uniform(0, amp) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
            for k, amp in ((2, 0.22), (3, 0.14), (5, 0.05))
        )
        level = np.minimum(level, np.sqrt(u * u + v * v) / np.maximum(wobble, 0.4))
    # Lumpy outline at ~1/6 of the blob size, then a little pixel-scale raggedness.
    lump = math.sqrt(fraction * h * w) / 6 / q
    level += 0.16 * noise((gh, gw), max(2.0, lump), rng)
    full = np.asarray(Image.fromarray(level).resize((gw * q, gh * q), Image.Resampling.BILINEAR))
    full = full[:h, :w]
    # The quantile makes the lesion area exact, whatever the blobs' shapes.
    return full <= np.quantile(full, fraction)


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
    mask = _lesion_mask(shape, rng)
    # Distance to the lesion, computed at half resolution (only compared with radii).
    half = ndimage.distance_transform_edt(~mask[::2, ::2]).astype(np.float32) * 2
    dist_out = np.repeat(np.repeat(half, 2, 0), 2, 1)[:h, :w] * ~mask
    fib, fib_dir = fibres(shape, 2.0 + 1.3 * s, rng)
    soft = blur(mask.astype(np.float32), 1.5 * r)  # lesion matrix fades in over ~2 nuclei
    c = Canvas(shape, rng, s, r, mask, soft, dist_out, fib, fib_dir, style)
    low = noise(shape, 40 * r, rng)
    c.e[:] = 0.68 * (0.25 + 0.85 * fib) * (1.0 + 0.12 * low)  # normal fibrous stroma
    c.h[:] = 0.045 * (1.0 + 0.2 * low)
    normal_tissue(c)
    LESIONS[subtype](c)
    c.render_nuclei()
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

