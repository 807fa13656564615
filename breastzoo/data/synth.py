"""Synthetic BreaKHis-format testbed: the built-in demo data and a controlled test of paper 000.

No real dataset can be downloaded everywhere, so breastzoo writes one that has the exact
BreaKHis archive layout and file-name grammar::

    OUT/BreaKHis_v1/histology_slides/breast/{benign,malignant}/SOB/<subtype folder>/
        SOB_<B|M>_<CODE>_<patient>/<MAG>/SOB_<B|M>_<CODE>-<patient>-<mag>-<seq>.png
    OUT/masks/BreaKHis_v1/...same relative path...png     ground-truth lesion masks (0/255)
    OUT/testbed.json                                      manifest (see read_manifest)

It is a *controlled* testbed for paper 000's premise (hard attention: a 112x112 crop at full
resolution in the right place beats resizing the whole image):

* every image is H&E-like: hematoxylin and eosin optical-density maps mixed by Beer-Lambert
  with per-patient stain vectors, scales and shifts, plus per-image illumination and noise;
* the diagnostic lesion covers only 12-32% of the field (one or two irregular blobs at a
  random place, returned as a mask); the rest is normal breast tissue (fibrous stroma,
  fibroblasts, lymphocytes, vessels, ducts, lobules, fat) drawn from the *same* distribution
  for every subtype, so a crop off the lesion carries little class signal;
* the 8 subtypes differ by morphology (nuclear size, pleomorphism, shape, arrangement,
  matrix), on a scale set by the magnification (structures about 2x larger per step), so
  shrinking a 700x460 image to 112x112 blurs most of the nuclear detail away.

Subtype designs (``r`` = radius of a normal nucleus, 1.7 px at 40X; see ``MAG_SCALE``):

====  =======================================================================================
A     crowded small elongated glands with a myoepithelial layer in dense pink stroma
F     compressed slit-like branching ducts (two cell layers) in pale, paucicellular stroma
PT    long leaf-like clefts with bulges, one cell layer, hypercellular spindle-cell stroma
TA    closely packed uniform round tubules, tiny lumens, little stroma
DC    nests and sheets of large pleomorphic hyperchromatic nuclei in desmoplastic stroma
LC    smaller uniform nuclei in single-file rows ("Indian files") infiltrating stroma
MC    small clusters of tumour cells floating in pale blue-grey mucin, thin septa
PC    branching papillary fronds: fibrovascular core lined by columnar nuclei, pale spaces
====  =======================================================================================

DC/LC (both dense malignant nuclei, differing in size and arrangement) and MC/PC (both cell
groups in pale spaces) are the closest pairs, as in the papers. ``image_size`` sets the canvas
in pixels; the pixel scale is fixed by the magnification, so a smaller image is a smaller
field of view, not a down-sampled one.

Everything is deterministic for a seed: each image is drawn from
``SeedSequence([seed, subtype, crc32(patient), magnification, sequence])``, so the bytes do
not depend on the number of worker processes.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from breastzoo.data.constants import (
    BREAKHIS_COUNTS,
    BREAKHIS_IMAGE_SIZE,
    CLASS_LETTER,
    MAGNIFICATIONS,
    SUBTYPE_CLASS,
    SUBTYPE_NAMES,
    SUBTYPES,
)

SYNTH_VERSION = 1
GENERATOR = "breastzoo.data.synth"
MANIFEST_NAME = "testbed.json"
ARCHIVE_NAME = "BreaKHis_v1"
MASKS_NAME = "masks"

# Feature scale per magnification, relative to 40X. Real optics give 2.5x, 2x, 2x; we keep
# roughly 2x per step but cap 400X so that a 112x112 crop still holds several nuclei.
MAG_SCALE: dict[str, float] = {"40X": 1.0, "100X": 2.0, "200X": 3.5, "400X": 6.0}
NUCLEUS_RADIUS_40X = 1.7  # px; a normal nucleus is ~3.4 px across at 40X, ~20 px at 400X
LESION_FRACTION = (0.12, 0.32)  # share of the image covered by the lesion mask

# Reference stain optical-density vectors (RGB absorbance per unit concentration), the usual
# Macenko reference; patients perturb them slightly.
_H_REF = np.array([0.5626, 0.7201, 0.4062], dtype=np.float32)
_E_REF = np.array([0.2159, 0.8012, 0.5581], dtype=np.float32)

_MIN_SIZE, _MAX_SIZE = 16, 8192


# ----------------------------------------------------------------------------------------
# Presets and the plan of files
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """How many patients and images a testbed has.

    Args:
        name: preset name.
        description: one line for ``--help`` and the docs.
        counts: subtype -> (patients, images per magnification 40X/100X/200X/400X).
        spread: log-normal sigma of per-patient image weights (0 = every patient equal).
        group_rate: chance that a patient beyond the third of a subtype joins another
            patient's numeric core (``14-22549AB`` / ``14-22549CD``).
        min_share: each patient gets at least this share of the mean images per patient.
    """

    name: str
    description: str
    counts: dict[str, tuple[int, tuple[int, int, int, int]]]
    spread: float = 0.5
    group_rate: float = 0.25
    min_share: float = 0.35

    @property
    def images(self) -> int:
        """Total number of images."""
        return sum(sum(per_mag) for _, per_mag in self.counts.values())

    @property
    def patients(self) -> int:
        """Total number of patients."""
        return sum(n for n, _ in self.counts.values())


def _full_counts() -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    return {s: (int(c["patients"]), tuple(c["images"])) for s, c in BREAKHIS_COUNTS.items()}


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        "for tests: 3-4 patients per subtype, 2 images per patient and magnification",
        # A and DC get a fourth patient sharing a numeric core with another one, so the
        # grouping of related slides is exercised while every subtype keeps 3 groups.
        {s: ((4, (8, 8, 8, 8)) if s in ("A", "DC") else (3, (6, 6, 6, 6))) for s in SUBTYPES},
        spread=0.0,
        group_rate=1.0,
        min_share=1.0,
    ),
    "demo": Preset(
        "demo",
        "what `make demo` trains on: 6 patients per subtype, 304 images per magnification",
        {s: (6, (38, 38, 38, 38)) for s in SUBTYPES},
        spread=0.4,
        group_rate=0.25,
        min_share=0.4,
    ),
    "full": Preset(
        "full",
        "the exact BreaKHis counts: 82 patients, 7909 images (1995/2081/2013/1820)",
        _full_counts(),
        spread=0.5,
        group_rate=0.25,
        min_share=0.35,
    ),
}


@dataclass(frozen=True)
class PlannedImage:
    """One file of a testbed (what :func:`plan` returns).

    Args:
        subtype: subtype code (``"DC"``).
        patient: patient id (``"14-22549AB"``).
        magnification: ``"40X"`` .. ``"400X"``.
        seq: sequence number within the patient and magnification (1-based).
        relpath: path relative to the testbed root, starting with ``BreaKHis_v1/``.
    """

    subtype: str
    patient: str
    magnification: str
    seq: int
    relpath: str


def _check_preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise ValueError(
            f"Unknown preset. Received: preset={preset!r}; expected one of {', '.join(PRESETS)}"
        )
    return PRESETS[preset]


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
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


def _check_mag(magnification: str) -> str:
    if magnification not in MAG_SCALE:
        raise ValueError(
            f"Unknown magnification. Received: magnification={magnification!r}; expected one "
            f"of {', '.join(MAGNIFICATIONS)}"
        )
    return magnification


def _check_subtype(subtype: str) -> str:
    if subtype not in SUBTYPES:
        raise ValueError(
            f"Unknown subtype. Received: subtype={subtype!r}; expected one of {', '.join(SUBTYPES)}"
        )
    return subtype


def relpath_for(subtype: str, patient: str, magnification: str, seq: int) -> str:
    """Archive-relative path of one image, exactly as BreaKHis names it.

    Args:
        subtype: subtype code (``"A"`` .. ``"PC"``).
        patient: patient id (``"14-22549AB"``).
        magnification: ``"40X"`` .. ``"400X"``.
        seq: 1-based sequence number (written with 3 digits).

    Example:
        >>> relpath_for("A", "14-22549AB", "40X", 1).split("/")[-1]
        'SOB_B_A-14-22549AB-40-001.png'
    """
    cls = SUBTYPE_CLASS[subtype]
    letter = CLASS_LETTER[cls]
    folder = f"SOB_{letter}_{subtype}_{patient}"
    name = f"SOB_{letter}_{subtype}-{patient}-{magnification[:-1]}-{seq:03d}.png"
    return "/".join(
        (
            ARCHIVE_NAME,
            "histology_slides",
            "breast",
            cls,
            "SOB",
            SUBTYPE_NAMES[subtype],
            folder,
            magnification,
            name,
        )
    )


# Suffix patterns seen in real BreaKHis ids (14-22549AB / 14-22549CD / 14-22549G, 14-14134 /
# 14-14134E, ...). Members of a group share year and numeric core.
_GROUP_SUFFIXES = (("AB", "CD", "G"), ("", "E", "F"), ("A", "B", "C"), ("CD", "EF", "GH"))
_SINGLE_SUFFIXES = ("", "", "", "", "", "AB", "CD", "E", "F", "G", "D")


def _patient_ids(preset: Preset, rng: np.random.Generator) -> dict[str, list[str]]:
    """Patient ids per subtype, with some groups sharing a numeric core within a subtype."""
    used_cores: set[int] = set()
    out: dict[str, list[str]] = {}
    for subtype in SUBTYPES:
        n = preset.counts[subtype][0]
        base = min(n, 3)  # at least 3 independent groups, so train/val/test all get one
        extra = int(rng.binomial(n - base, preset.group_rate)) if n > base else 0
        n_groups = n - extra
        sizes = [1] * n_groups
        for _ in range(extra):
            # Groups of at most 3 related slides, as in the real archive.
            candidates = [i for i, k in enumerate(sizes) if k < 3]
            sizes[int(rng.choice(candidates))] += 1
        ids: list[str] = []
        for size in sizes:
            while True:
                digits = int(rng.integers(3, 6))
                core = int(rng.integers(10 ** (digits - 1), 10**digits))
                if core not in used_cores:
                    used_cores.add(core)
                    break
            year = str(rng.choice(["13", "14", "14", "14", "15"]))
            if size == 1:
                suffixes: tuple[str, ...] = (str(rng.choice(_SINGLE_SUFFIXES)),)
            else:
                pattern = _GROUP_SUFFIXES[int(rng.integers(len(_GROUP_SUFFIXES)))]
                suffixes = pattern[:size]
            ids.extend(f"{year}-{core}{suffix}" for suffix in suffixes)
        out[subtype] = ids
    return out


def _allocate(total: int, weights: np.ndarray, minimum: int) -> list[int]:
    """Split ``total`` into integer parts >= ``minimum`` proportional to ``weights``."""
    n = len(weights)
    minimum = min(minimum, total // n)
    rest = total - minimum * n
    share = weights / weights.sum() * rest
    parts = np.floor(share).astype(int)
    # Largest remainders get the leftover images (ties broken by index: deterministic).
    order = np.argsort(-(share - parts), kind="stable")
    parts[order[: rest - int(parts.sum())]] += 1
    return [int(p) + minimum for p in parts]


def plan(preset: str = "demo", seed: int = 0) -> list[PlannedImage]:
    """Every file a testbed will contain, without rendering anything.

    Args:
        preset: ``"tiny"``, ``"demo"`` or ``"full"``.
        seed: generator seed (patient ids and per-patient counts depend on it).

    Returns:
        Planned images sorted by path. Counts per subtype and magnification are exactly the
        preset's; images are spread unevenly over a subtype's patients (except ``tiny``).

    Raises:
        ValueError: unknown preset.

    Example:
        >>> len(plan("full"))
        7909
    """
    spec = _check_preset(preset)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    ids = _patient_ids(spec, rng)
    out: list[PlannedImage] = []
    for subtype in SUBTYPES:
        patients = ids[subtype]
        n, per_mag = spec.counts[subtype]
        weights = np.exp(rng.normal(0.0, spec.spread, n)) if spec.spread > 0 else np.ones(n)
        for m, mag in enumerate(MAGNIFICATIONS):
            # The same patients are large everywhere, with a little per-magnification jitter.
            w = weights * (np.exp(rng.normal(0.0, 0.15, n)) if spec.spread > 0 else 1.0)
            minimum = max(1, int(spec.min_share * per_mag[m] / n))
            for patient, count in zip(patients, _allocate(per_mag[m], w, minimum), strict=True):
                for seq in range(1, count + 1):
                    out.append(
                        PlannedImage(
                            subtype, patient, mag, seq, relpath_for(subtype, patient, mag, seq)
                        )
                    )
    out.sort(key=lambda p: p.relpath)
    return out


# ----------------------------------------------------------------------------------------
# Per-patient appearance
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientStyle:
    """Per-patient appearance: stain (vectors, scale, shift, background) and mild morphology.

    Slides of one patient share a staining batch and a tumour, so their images look alike;
    this is what makes patient-wise splitting matter. The default is the reference stain.

    Args:
        h_vec, e_vec: hematoxylin / eosin optical-density vectors (unit length, RGB).
        h_scale, e_scale: multipliers of the stain densities.
        h_shift, e_shift: additive density offsets (background tint).
        background: RGB transmitted light of an empty field, in [0, 1].
        size: multiplier of nuclear and structural size of the lesion.
        spacing: multiplier of the spacing of lesion structures (inverse density).

    Example:
        >>> style = patient_style(np.random.default_rng(0))
        >>> 0.7 < style.h_scale < 1.3
        True
    """

    h_vec: tuple[float, float, float] = tuple(float(v) for v in _H_REF)  # type: ignore[assignment]
    e_vec: tuple[float, float, float] = tuple(float(v) for v in _E_REF)  # type: ignore[assignment]
    h_scale: float = 1.0
    e_scale: float = 1.0
    h_shift: float = 0.0
    e_shift: float = 0.0
    background: tuple[float, float, float] = (0.96, 0.95, 0.97)
    size: float = 1.0
    spacing: float = 1.0


def patient_style(rng: np.random.Generator) -> PatientStyle:
    """Draw one patient's stain and morphology jitter.

    Args:
        rng: random generator.

    Example:
        >>> patient_style(np.random.default_rng(1)).size > 0
        True
    """

    def vec(ref: np.ndarray) -> tuple[float, float, float]:
        v = np.abs(ref + rng.normal(0.0, 0.035, 3))  # slight hue change
        v /= np.linalg.norm(v)
        return tuple(float(x) for x in v)  # type: ignore[return-value]

    bg = np.clip(0.95 + rng.normal(0.0, 0.015, 3), 0.88, 1.0)
    return PatientStyle(
        h_vec=vec(_H_REF),
        e_vec=vec(_E_REF),
        # BreaKHis comes from one laboratory: patient-to-patient stain spread is moderate.
        h_scale=float(rng.uniform(0.85, 1.15)),
        e_scale=float(rng.uniform(0.82, 1.18)),
        h_shift=float(rng.uniform(-0.01, 0.025)),
        e_shift=float(rng.uniform(-0.02, 0.03)),
        background=tuple(float(x) for x in bg),  # type: ignore[arg-type]
        size=float(np.exp(rng.normal(0.0, 0.06))),
        spacing=float(np.exp(rng.normal(0.0, 0.06))),
    )


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


# ----------------------------------------------------------------------------------------
# Drawing primitives (all vectorised; float32 maps of shape (H, W))
# ----------------------------------------------------------------------------------------


def _noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth Gaussian noise, roughly unit variance, correlation length ~``scale`` px."""
    h, w = shape
    if scale <= 3.0:
        sigma = max(scale / 2.0, 0.5)
        n = ndimage.gaussian_filter(
            rng.standard_normal(shape, dtype=np.float32), sigma, truncate=3.0
        )
        return n * np.float32(2.0 * math.sqrt(math.pi) * sigma)
    # Draw on a coarse grid and upsample: cost is independent of the scale.
    step = scale / 2.0
    lh, lw = int(math.ceil(h / step)) + 3, int(math.ceil(w / step)) + 3
    low = ndimage.gaussian_filter(rng.standard_normal((lh, lw), dtype=np.float32), 1.0)
    low *= np.float32(2.0 * math.sqrt(math.pi) * 1.1)  # ~unit std after bilinear smoothing
    # Bicubic: bilinear upsampling leaves visible kinks when the field is used as a warp.
    big = Image.fromarray(low).resize(
        (int(round(lw * step)), int(round(lh * step))), Image.Resampling.BICUBIC
    )
    oy, ox = int(rng.integers(0, int(step) + 1)), int(rng.integers(0, int(step) + 1))
    return np.asarray(big, dtype=np.float32)[oy : oy + h, ox : ox + w]


_TILES: dict[tuple[float, int], tuple[np.ndarray, np.ndarray]] = {}


def _fibre_tile(period: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A square collagen texture (values in [0, 1]) and its local fibre direction.

    Streaks are white noise smoothed much more along x than across, then bent by a smooth
    displacement field so bundles wave and change direction. Built once per process and
    size from a fixed seed (so it is identical in every worker); images take random crops
    and mirror/transpose variants of it, which is far cheaper than filtering per image.
    """
    key = (round(period, 3), n)
    if key in _TILES:
        return _TILES[key]
    zoom = max(1.0, period / 3.3)
    if zoom > 1.05:
        # Coarse fibres are smooth: build at period 3.3 px and upsample (10x cheaper at 400X).
        small_n = int(math.ceil(n / zoom)) + 2
        fib_s, dir_s = _fibre_tile(period / zoom, small_n)
        del _TILES[(round(period / zoom, 3), small_n)]
        size = (int(round(small_n * zoom)),) * 2
        fib = np.asarray(Image.fromarray(fib_s).resize(size, Image.Resampling.BILINEAR))
        direction = np.asarray(Image.fromarray(dir_s).resize(size, Image.Resampling.BILINEAR))
        _TILES[key] = (np.ascontiguousarray(fib[:n, :n]), np.ascontiguousarray(direction[:n, :n]))
        return _TILES[key]
    rng = np.random.default_rng(np.random.SeedSequence([0xF1B, n, int(period * 1000)]))
    m = n + 2 * int(20 * period)  # margin so warped look-ups stay inside
    wn = rng.standard_normal((m, m)).astype(np.float32)
    streak = ndimage.gaussian_filter(wn, (0.35 * period, 2.2 * period))
    streak /= streak.std() + 1e-6
    fine = ndimage.gaussian_filter(wn[::-1], (0.18 * period, 1.2 * period))
    streak += 0.7 * fine / (fine.std() + 1e-6)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    # Bending: slopes of the warp of order 1, so bundles turn by tens of degrees.
    dy = _noise((n, n), 25 * period, rng) * np.float32(6 * period)
    dy += _noise((n, n), 6 * period, rng) * np.float32(0.8 * period)  # small waviness
    dx = _noise((n, n), 25 * period, rng) * np.float32(3 * period)
    off = (m - n) / 2
    warped = ndimage.map_coordinates(
        streak,
        [yy + off + np.clip(dy, -off, off), xx + off + np.clip(dx, -off, off)],
        order=1,
        mode="reflect",
    )
    fib = 1.0 / (1.0 + np.exp(-1.8 * warped))
    fib *= 0.72 + 0.28 * np.tanh(_noise((n, n), 6 * period, rng))  # bundles vs loose areas
    # Fibres follow level sets of the source row y + dy(y, x).
    direction = np.arctan2(-np.gradient(dy, axis=1), 1.0 + np.gradient(dy, axis=0))
    _TILES[key] = (fib.astype(np.float32), direction.astype(np.float32))
    return _TILES[key]


def _fibres(
    shape: tuple[int, int], period: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Collagen texture in [0, 1] for one image and the local fibre direction (radians)."""
    h, w = shape
    n = int(math.ceil((max(h, w) + 256) / 256) * 256)
    fib, direction = _fibre_tile(period, n)
    k = int(rng.integers(8))  # one of the 8 mirror / transpose variants
    if k & 4:
        fib, direction = fib.T, np.pi / 2 - direction
    if k & 1:
        fib, direction = fib[:, ::-1], -direction
    if k & 2:
        fib, direction = fib[::-1], -direction
    oy, ox = int(rng.integers(0, n - h + 1)), int(rng.integers(0, n - w + 1))
    return (
        np.ascontiguousarray(fib[oy : oy + h, ox : ox + w]),
        np.ascontiguousarray(direction[oy : oy + h, ox : ox + w]),
    )


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones are done on a coarse grid (the result is smooth anyway)."""
    if sigma <= 3.0:
        return ndimage.gaussian_filter(img, sigma)
    q = int(sigma / 1.5)
    h, w = img.shape
    small = ndimage.gaussian_filter(img[::q, ::q], sigma / q)
    big = Image.fromarray(small.astype(np.float32)).resize(
        (small.shape[1] * q, small.shape[0] * q), Image.Resampling.BILINEAR
    )
    return np.asarray(big, dtype=np.float32)[:h, :w]


def _stamps(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    soft: float = 0.7,
    need_uv: bool = True,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Rasterise ellipses; yield (flat pixel index, edge coverage, u, v, object index).

    ``u``, ``v`` are the pixel's coordinates in the ellipse's own frame, normalised by its
    semi-axes (``u**2 + v**2 == 1`` on the outline). Objects are grouped by size so small
    ones do not pay for big stamps, and chunked to bound memory.
    """
    h, w = shape
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    a = np.maximum(np.asarray(a, np.float32), 0.3)
    b = np.maximum(np.asarray(b, np.float32), 0.3)
    theta = np.asarray(theta, np.float32)
    if x.size == 0:
        return
    radius = np.ceil(np.maximum(a, b) + soft + 1.0).astype(np.int64)
    bucket = np.ceil(np.log2(radius)).astype(np.int64)
    for bk in np.unique(bucket):
        sel_all = np.nonzero(bucket == bk)[0]
        k = int(radius[sel_all].max())
        side = 2 * k + 1
        per_chunk = max(1, 1_500_000 // (side * side))
        off = np.arange(-k, k + 1, dtype=np.int64)
        for start in range(0, sel_all.size, per_chunk):
            sel = sel_all[start : start + per_chunk]
            xi = np.floor(x[sel]).astype(np.int64)
            yi = np.floor(y[sel]).astype(np.int64)
            dx = off.astype(np.float32)[None, None, :] - (x[sel] - xi)[:, None, None]
            dy = off.astype(np.float32)[None, :, None] - (y[sel] - yi)[:, None, None]
            c = np.cos(theta[sel])[:, None, None]
            s = np.sin(theta[sel])[:, None, None]
            u = (dx * c + dy * s) / a[sel][:, None, None]
            v = (-dx * s + dy * c) / b[sel][:, None, None]
            d = np.sqrt(u * u + v * v)
            # (1 - d) * minor axis ~ distance to the outline in px: a ~soft px wide ramp.
            edge = np.clip(
                (1.0 - d) * np.minimum(a[sel], b[sel])[:, None, None] / soft + 0.5, 0.0, 1.0
            )
            px = xi[:, None, None] + off[None, None, :]
            py = yi[:, None, None] + off[None, :, None]
            inb = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            # Out-of-bounds pixels get weight 0 at a clamped index: cheaper than gathering.
            edge = np.where(inb, edge, np.float32(0)).ravel()
            flat = (np.clip(py, 0, h - 1) * w + np.clip(px, 0, w - 1)).ravel()
            if not need_uv:
                yield flat, edge, None, None, None
                continue
            obj = np.broadcast_to(sel[:, None, None], inb.shape).ravel()
            yield flat, edge, u.ravel(), v.ravel(), obj


def _accumulate(shape: tuple[int, int], flat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.bincount(flat, weights=weights, minlength=shape[0] * shape[1]).reshape(shape)


def _cover(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray | None = None,
    theta: np.ndarray | None = None,
    soft: float = 0.8,
) -> np.ndarray:
    """Coverage map in [0, 1] of a union of (soft-edged) ellipses or discs."""
    x = np.asarray(x, np.float32)
    a = np.broadcast_to(np.asarray(a, np.float32), x.shape)
    b = a if b is None else np.broadcast_to(np.asarray(b, np.float32), x.shape)
    theta = np.zeros_like(x) if theta is None else np.broadcast_to(theta, x.shape)
    out = np.zeros(shape, np.float64)
    for flat, edge, _u, _v, _obj in _stamps(shape, x, y, a, b, theta, soft, need_uv=False):
        out += _accumulate(shape, flat, edge)
    return np.minimum(out, 1.0).astype(np.float32)


def _sample(region: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of a (H, W) map at float points (nearest pixel, clamped)."""
    h, w = region.shape
    xi = np.clip(np.asarray(x).astype(np.int64), 0, w - 1)
    yi = np.clip(np.asarray(y).astype(np.int64), 0, h - 1)
    return region[yi, xi]


def _hex(
    shape: tuple[int, int], spacing: float, jitter: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Jittered hexagonal grid of points over the image (random phase)."""
    h, w = shape
    spacing = max(float(spacing), 1.0)
    dy = spacing * math.sqrt(3) / 2
    rows = np.arange(-1, int(h / dy) + 2)
    cols = np.arange(-1, int(w / spacing) + 2)
    gx = cols[None, :] * spacing + (rows[:, None] % 2) * spacing / 2 + rng.uniform(0, spacing)
    gy = np.broadcast_to(rows[:, None] * dy + rng.uniform(0, dy), gx.shape)
    px = gx.ravel() + rng.normal(0, jitter * spacing, gx.size)
    py = gy.ravel() + rng.normal(0, jitter * spacing, gx.size)
    keep = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    return px[keep].astype(np.float32), py[keep].astype(np.float32)


def _walk(
    x0: float,
    y0: float,
    heading: float,
    length: float,
    step: float,
    turn: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random path: points every ``step`` px, heading diffusing ``turn`` rad/sqrt(px)."""
    n = max(2, int(length / step))
    dh = rng.normal(0.0, turn * math.sqrt(step), n)
    dh = ndimage.gaussian_filter1d(dh, 3.0) * 2.0  # smooth bends, not jitter
    dh[0] = 0.0
    h = heading + np.cumsum(dh)
    x = x0 + np.concatenate([[0.0], np.cumsum(step * np.cos(h[:-1]))])
    y = y0 + np.concatenate([[0.0], np.cumsum(step * np.sin(h[:-1]))])
    return x.astype(np.float32), y.astype(np.float32), h.astype(np.float32)


@dataclass
class _Paths:
    """Concatenated polylines: points, headings, arc length and path id."""

    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    arc: np.ndarray
    pid: np.ndarray

    def select(self, keep: np.ndarray) -> _Paths:
        return _Paths(self.x[keep], self.y[keep], self.h[keep], self.arc[keep], self.pid[keep])

    def side(self, offset: np.ndarray | float, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """Points at ``offset`` px to the left (+1) or right (-1) of the path."""
        return (self.x - sign * offset * np.sin(self.h), self.y + sign * offset * np.cos(self.h))

    def every(self, spacing: float, step: float, rng: np.random.Generator) -> _Paths:
        """Subsample to about one point per ``spacing`` px (random phase)."""
        k = max(1, int(round(spacing / step)))
        keep = (np.arange(self.x.size) + int(rng.integers(k))) % k == 0
        return self.select(keep)


def _trees(
    starts: tuple[np.ndarray, np.ndarray],
    length: tuple[float, float],
    step: float,
    turn: float,
    branch_p: float,
    rng: np.random.Generator,
) -> _Paths:
    """Branching paths from each start point (one level of side branches)."""
    xs, ys, hs, arcs, pids = [], [], [], [], []
    pid = 0
    for x0, y0 in zip(*starts, strict=True):
        main_len = rng.uniform(*length)
        x, y, h = _walk(x0, y0, rng.uniform(0, 2 * math.pi), main_len, step, turn, rng)
        paths = [(x, y, h)]
        n_branch = rng.binomial(2, branch_p)
        for _ in range(n_branch):
            i = int(rng.integers(x.size // 4, max(x.size // 4 + 1, 3 * x.size // 4)))
            heading = h[i] + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
            paths.append(
                _walk(x[i], y[i], heading, main_len * rng.uniform(0.3, 0.7), step, turn, rng)
            )
        for px, py, ph in paths:
            xs.append(px)
            ys.append(py)
            hs.append(ph)
            arcs.append(np.arange(px.size, dtype=np.float32) * step)
            pids.append(np.full(px.size, pid))
            pid += 1
    if not xs:
        e = np.zeros(0, np.float32)
        return _Paths(e, e, e, e, np.zeros(0, np.int64))
    return _Paths(*(np.concatenate(v) for v in (xs, ys, hs, arcs, pids)))


def _ring(
    cx: np.ndarray,
    cy: np.ndarray,
    ax: np.ndarray,
    ay: np.ndarray,
    ang: np.ndarray,
    spacing: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ~``spacing`` px around ellipses; returns x, y and the outward normal."""
    if cx.size == 0:
        e = np.zeros(0, np.float32)
        return e, e, e
    perim = np.pi * (3 * (ax + ay) - np.sqrt((3 * ax + ay) * (ax + 3 * ay)))
    n = np.maximum(3, np.round(perim / spacing)).astype(np.int64)
    g = np.repeat(np.arange(cx.size), n)
    first = np.cumsum(n) - n
    k = np.arange(g.size) - first[g]
    t = 2 * np.pi * (k + rng.uniform(-0.15, 0.15, g.size)) / n[g] + rng.uniform(0, 6.3, cx.size)[g]
    ex, ey = ax[g] * np.cos(t), ay[g] * np.sin(t)
    c, s = np.cos(ang[g]), np.sin(ang[g])
    x = cx[g] + ex * c - ey * s
    y = cy[g] + ex * s + ey * c
    nx, ny = np.cos(t) / ax[g], np.sin(t) / ay[g]
    normal = np.arctan2(nx * s + ny * c, nx * c - ny * s)
    return x.astype(np.float32), y.astype(np.float32), normal.astype(np.float32)


# ----------------------------------------------------------------------------------------
# The canvas: stain density maps plus a list of nuclei rendered at the end
# ----------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    shape: tuple[int, int]
    rng: np.random.Generator
    s: float  # magnification scale
    r: float  # normal nuclear radius (px)
    mask: np.ndarray  # lesion (bool)
    m: np.ndarray  # soft lesion mask (float32)
    dist_out: np.ndarray  # distance to the lesion (px), 0 inside
    fib: np.ndarray
    fib_dir: np.ndarray
    style: PatientStyle
    h: np.ndarray = field(init=False)
    e: np.ndarray = field(init=False)
    busy: np.ndarray = field(init=False)
    nuclei: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.h = np.zeros(self.shape, np.float32)
        self.e = np.zeros(self.shape, np.float32)
        self.busy = np.zeros(self.shape, np.float32)

    def paint(
        self, cov: np.ndarray, h: float | np.ndarray, e: float | np.ndarray, busy: bool = False
    ) -> None:
        """Composite a layer over the canvas: X = X (1 - cov) + cov value."""
        self.h += cov * (h - self.h)
        self.e += cov * (e - self.e)
        if busy:
            np.maximum(self.busy, cov, out=self.busy)

    def add_nuclei(
        self,
        x: np.ndarray,
        y: np.ndarray,
        rad: float,
        *,
        theta: np.ndarray | None = None,
        cv: float = 0.1,
        elong: float = 1.1,
        elong_sd: float = 0.1,
        amp: float = 1.0,
        chrom: float = 0.3,
        vesic: float = 0.0,
    ) -> None:
        """Add a population of nuclei (elongation is along ``theta``; random if None)."""
        n = np.asarray(x).size
        if n == 0:
            return
        rng = self.rng
        size = rad * np.exp(rng.normal(0.0, cv, n))
        el = elong * np.exp(np.abs(rng.normal(0.0, elong_sd, n)))
        th = (
            rng.uniform(0, np.pi, n)
            if theta is None
            else np.asarray(theta) + rng.normal(0.0, 0.15, n)
        )
        self.nuclei.append(
            {
                "x": np.asarray(x, np.float32),
                "y": np.asarray(y, np.float32),
                "a": (size * np.sqrt(el)).astype(np.float32),
                "b": (size / np.sqrt(el)).astype(np.float32),
                "t": th.astype(np.float32),
                "amp": (amp * np.exp(rng.normal(0.0, 0.07, n))).astype(np.float32),
                "chrom": np.full(n, chrom, np.float32),
                "vesic": np.where(rng.random(n) < vesic, rng.uniform(0.5, 1.0, n), 0.0).astype(
                    np.float32
                ),
                "nu": rng.uniform(-0.3, 0.3, (n, 2)).astype(np.float32),
            }
        )

    def render_nuclei(self) -> None:
        """Draw all nuclei: hematoxylin with chromatin texture, rim and nucleolus if vesicular."""
        if not self.nuclei:
            return
        p = {k: np.concatenate([d[k] for d in self.nuclei]) for k in self.nuclei[0]}
        nuc = np.zeros(self.shape, np.float64)
        cov = np.zeros(self.shape, np.float64)
        # Chromatin granules: one texture field, sampled under each nucleus with its strength.
        grain = _noise(self.shape, max(1.0, 0.3 * self.r), self.rng).ravel() * np.float32(0.45)
        vesicular = p["vesic"] > 0
        for ves_group in (False, True):
            sel = np.nonzero(vesicular == ves_group)[0]
            for flat, edge, u, v, obj in _stamps(
                self.shape,
                p["x"][sel],
                p["y"][sel],
                p["a"][sel],
                p["b"][sel],
                p["t"][sel],
                soft=0.6,
            ):
                obj = sel[obj]
                val = p["amp"][obj] * edge * (1.0 + p["chrom"][obj] * grain[flat])
                if ves_group:
                    # Vesicular nuclei: pale centre, dark membrane, a nucleolus off-centre.
                    ves = p["vesic"][obj]
                    d2 = u * u + v * v
                    nu = p["nu"][obj]
                    nucleolus = np.exp(-((u - nu[:, 0]) ** 2 + (v - nu[:, 1]) ** 2) / 0.045)
                    val *= (1.0 - ves) + ves * (0.35 + 0.65 * d2 * d2) + ves * 1.1 * nucleolus
                nuc += _accumulate(self.shape, flat, val)
                cov += _accumulate(self.shape, flat, edge)
        cov = np.minimum(cov, 1.0).astype(np.float32)
        self.h = self.h * (1.0 - 0.5 * cov) + np.minimum(nuc, 2.4).astype(np.float32)
        self.e *= 1.0 - 0.6 * cov


# ----------------------------------------------------------------------------------------
# Normal tissue (identical in distribution for every subtype)
# ----------------------------------------------------------------------------------------


def _glands(
    c: _Ctx,
    x: np.ndarray,
    y: np.ndarray,
    la: np.ndarray,
    lb: np.ndarray,
    ang: np.ndarray,
    rad: float,
    *,
    wall: float,
    myo: bool,
    amp: float = 0.95,
    band_h: float = 0.2,
    band_e: float = 0.26,
    lumen_h: float = 0.015,
    lumen_e: float = 0.025,
) -> None:
    """Glands: a lumen with semi-axes (la, lb) inside epithelium ``wall`` px thick."""
    if x.size == 0:
        return
    ga, gb = la + wall, lb + wall
    c.paint(_cover(c.shape, x, y, ga, gb, ang), band_h, band_e, busy=True)
    c.paint(_cover(c.shape, x, y, la, lb, ang), lumen_h, lumen_e, busy=True)
    # Nuclei sit basally (towards the outer edge), cytoplasm faces the lumen.
    off = np.maximum(wall - 1.05 * rad, 0.9 * rad)
    px, py, normal = _ring(x, y, la + off, lb + off, ang, 2.1 * rad, c.rng)
    c.add_nuclei(px, py, rad, theta=normal, elong=1.2, cv=0.08, amp=amp, chrom=0.25)
    if myo:  # flattened myoepithelial nuclei just outside the epithelium
        mx, my, mn = _ring(x, y, ga + 0.3 * rad, gb + 0.3 * rad, ang, 3.4 * rad, c.rng)
        c.add_nuclei(mx, my, 0.8 * rad, theta=mn + np.pi / 2, elong=3.0, amp=0.85 * amp, chrom=0.1)


def _normal_tissue(c: _Ctx) -> None:
    """Fat, ducts, lobules, vessels, fibroblasts and lymphocytes outside the lesion."""
    rng, r, shape = c.rng, c.r, c.shape
    h, w = shape
    area = h * w
    # Fat: white adipocytes with thin pink membranes (a cell network from noise zero-crossings).
    if rng.random() < 0.4:
        region = _noise(shape, min(30 * r, 0.5 * min(h, w)), rng) > 0.6
        fat = (region & (c.dist_out > 2 * r)).astype(np.float32)
        membrane = (np.abs(_noise(shape, 7 * r, rng)) < 0.09).astype(np.float32)
        c.paint(fat, 0.01, 0.015, busy=True)
        c.paint(fat * membrane, 0.03, 0.32)
    # Ducts and terminal lobular units, away from the lesion.
    n_ducts = rng.poisson(area / (90 * r) ** 2)
    if n_ducts:
        x, y = rng.uniform(0, w, n_ducts), rng.uniform(0, h, n_ducts)
        la = rng.uniform(1.2, 3.0, n_ducts) * r
        lb = la * rng.uniform(0.5, 1.0, n_ducts)
        ok = _sample(c.dist_out, x, y) > la + 5 * r
        _glands(
            c,
            x[ok],
            y[ok],
            la[ok],
            lb[ok],
            rng.uniform(0, np.pi, n_ducts)[ok],
            r,
            wall=2.3 * r,
            myo=True,
        )
    n_lob = rng.poisson(area / (130 * r) ** 2)
    for _ in range(n_lob):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if _sample(c.dist_out, cx, cy) < 12 * r:
            continue
        k = int(rng.integers(6, 15))
        rr = 8 * r * np.sqrt(rng.random(k))
        t = rng.uniform(0, 2 * np.pi, k)
        c.paint(_cover(shape, [cx], [cy], [9.5 * r]), 0.07, 0.26)  # loose intralobular stroma
        la = rng.uniform(0.35, 0.7, k) * r
        _glands(
            c,
            cx + rr * np.cos(t),
            cy + rr * np.sin(t),
            la,
            la * rng.uniform(0.7, 1.0, k),
            rng.uniform(0, np.pi, k),
            0.95 * r,
            wall=1.9 * r,
            myo=False,
        )
    # Capillaries with red cells.
    n_vessels = rng.poisson(area / (70 * r) ** 2)
    if n_vessels:
        x, y = rng.uniform(0, w, n_vessels), rng.uniform(0, h, n_vessels)
        lr = rng.uniform(0.6, 1.6, n_vessels) * r
        ok = _sample(c.dist_out, x, y) > lr + r
        x, y, lr = x[ok], y[ok], lr[ok]
        c.paint(_cover(shape, x, y, lr), 0.01, 0.02, busy=True)
        fill = rng.random(x.size) < 0.6
        c.paint(_cover(shape, x[fill], y[fill], 0.7 * lr[fill]), 0.02, 0.85)
        ex, ey, en = _ring(x, y, lr + 0.3 * r, lr + 0.3 * r, np.zeros_like(x), 4 * r, rng)
        c.add_nuclei(ex, ey, 0.8 * r, theta=en + np.pi / 2, elong=3.0, amp=0.85, chrom=0.1)
    # Fibroblasts along the fibres, lymphocytes here and there.
    x, y = _hex(shape, 5.0 * r, 0.5, rng)
    ok = (_sample(c.dist_out, x, y) > 0) & (_sample(c.busy, x, y) < 0.3)
    ok &= rng.random(x.size) < 0.35
    c.add_nuclei(
        x[ok],
        y[ok],
        0.9 * r,
        theta=_sample(c.fib_dir, x[ok], y[ok]),
        elong=3.5,
        amp=0.75,
        chrom=0.15,
    )
    x, y = _hex(shape, 13 * r, 0.5, rng)
    ok = (_sample(c.dist_out, x, y) > 0) & (_sample(c.busy, x, y) < 0.3)
    c.add_nuclei(x[ok], y[ok], 0.75 * r, elong=1.05, amp=1.35, chrom=0.1, cv=0.06)


# ----------------------------------------------------------------------------------------
# Lesions, one renderer per subtype
# ----------------------------------------------------------------------------------------


def _inside(c: _Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _sample(c.mask, x, y).astype(bool)


def _stroma(c: _Ctx, density: float, contrast: float = 0.6) -> np.ndarray:
    """Eosin density of collagenous stroma: ``contrast`` sets how fibrous it looks."""
    return density * ((1.0 - contrast) + contrast * 1.25 * c.fib)


def _swirl(c: _Ctx, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    field_ = _noise(c.shape, 20 * c.r, c.rng)
    return _sample(field_, x, y) * 1.6


def _lesion_area(c: _Ctx) -> float:
    return float(c.mask.sum())


def _starts(c: _Ctx, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points inside the lesion."""
    ys, xs = np.nonzero(c.mask)
    if xs.size == 0 or n <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    i = c.rng.integers(0, xs.size, n)
    return xs[i] + c.rng.random(n), ys[i] + c.rng.random(n)


def _adenosis(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.05, _stroma(c, 0.72))  # sclerotic stroma
    x, y = _hex(c.shape, 7.6 * r * c.style.spacing, 0.25, rng)
    ok = _inside(c, x, y)
    x, y = x[ok], y[ok]
    n = x.size
    la = rng.uniform(0.8, 1.9, n) * r  # elongated, variable, some compressed to a slit
    lb = rng.uniform(0.35, 0.75, n) * r
    solid = rng.random(n) < 0.2
    la[solid] *= 0.3
    lb[solid] *= 0.3
    ang = _swirl(c, x, y) + rng.normal(0, 0.35, n)
    _glands(c, x, y, la, lb, ang, 0.95 * r, wall=2.2 * r, myo=True, amp=0.95)


def _tubular_adenoma(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.06, _stroma(c, 0.52, contrast=0.3))
    x, y = _hex(c.shape, 7.4 * r * c.style.spacing, 0.07, rng)
    ok = _inside(c, x, y)
    x, y = x[ok], y[ok]
    n = x.size
    la = rng.uniform(1.0, 1.35, n) * r  # uniform round tubules, small open lumens
    _glands(
        c,
        x,
        y,
        la,
        la * rng.uniform(0.85, 1.0, n),
        rng.uniform(0, np.pi, n),
        1.0 * r,
        wall=2.6 * r,
        myo=False,
        amp=1.0,
    )


def _ducts_in_stroma(
    c: _Ctx,
    *,
    cover: float,
    length: tuple[float, float],
    turn: float,
    branch_p: float,
    lumen: Callable[[_Paths], np.ndarray],
    lumen_min: float,
    layers: int,
    rad: float,
) -> _Paths:
    """Branching slit/cleft ducts (F, PT): band of epithelium around a lumen.

    ``lumen(paths)`` gives the lumen half-width at every path point; ``lumen_min`` (its
    narrowest value) sizes the number of ducts and the sampling step.
    """
    rng = c.rng
    wall = (2.1 if layers == 2 else 1.25) * rad
    mean_lumen = float(np.float32(lumen_min))  # lumen widths are float32
    mean_len = 0.5 * (length[0] + length[1]) * (1 + branch_p)
    n = int(round(cover * _lesion_area(c) / (mean_len * 2 * (mean_lumen + wall))))
    step = max(0.6, 0.35 * min(rad, max(mean_lumen, 0.5)))
    paths = _trees(_starts(c, max(n, 1)), length, step, turn, branch_p, rng)
    paths = paths.select(_inside(c, paths.x, paths.y))
    wl = lumen(paths)
    band = max(1, int(round(0.4 * (wl.mean() + wall) / step))) if wl.size else 1
    sub = np.arange(paths.x.size) % band == 0
    c.paint(_cover(c.shape, paths.x[sub], paths.y[sub], (wl + wall)[sub]), 0.13, 0.30, busy=True)
    lum = _cover(c.shape, paths.x, paths.y, wl)
    c.paint(lum, 0.02, 0.03, busy=True)
    k = max(1, int(round(2.0 * rad / step)))
    for sign in (1.0, -1.0):
        sel = (np.arange(paths.x.size) + int(rng.integers(k))) % k == 0
        p = paths.select(sel)
        nx, ny = p.side(wl[sel] + rad, sign)
        keep = _sample(lum, nx, ny) < 0.3
        c.add_nuclei(
            nx[keep], ny[keep], rad, theta=p.h[keep] + np.pi / 2, elong=1.25, amp=0.95, chrom=0.25
        )
        if layers == 2:
            sel = (np.arange(paths.x.size) + int(rng.integers(k))) % (2 * k) == 0
            p = paths.select(sel)
            mx, my = p.side(wl[sel] + wall - 0.45 * rad, sign)
            keep = _sample(lum, mx, my) < 0.3
            c.add_nuclei(
                mx[keep], my[keep], 0.8 * rad, theta=p.h[keep], elong=3.0, amp=0.8, chrom=0.1
            )
    return paths


def _fibroadenoma(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.09, _stroma(c, 0.32, contrast=0.3))  # pale myxoid stroma
    _ducts_in_stroma(
        c,
        cover=0.30,
        length=(12 * r, 30 * r),
        turn=0.35 / math.sqrt(r),
        branch_p=0.5,
        lumen=lambda p: np.full(p.x.size, 0.45 * r, np.float32),
        lumen_min=0.45 * r,
        layers=2,
        rad=0.95 * r,
    )
    x, y = _hex(c.shape, 6.5 * r * c.style.spacing, 0.5, rng)
    ok = _inside(c, x, y) & (_sample(c.busy, x, y) < 0.3)
    c.add_nuclei(
        x[ok], y[ok], 0.9 * r, theta=_sample(c.fib_dir, x[ok], y[ok]), elong=3.2, amp=0.8, chrom=0.1
    )


def _phyllodes(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.08, _stroma(c, 0.48, contrast=0.45))  # cellular stroma
    bulge = rng.uniform(6, 10) * r
    _ducts_in_stroma(
        c,
        cover=0.25,
        length=(25 * r, 45 * r),
        turn=0.2 / math.sqrt(r),
        branch_p=0.6,
        lumen=lambda p: (r * (0.45 + 0.6 * np.abs(np.sin(p.arc * np.pi / bulge + p.pid)))).astype(
            np.float32
        ),
        lumen_min=0.45 * r,
        layers=1,
        rad=1.0 * r,
    )
    # Hypercellular spindle stroma, condensed around the clefts (periductal).
    x, y = _hex(c.shape, 2.9 * r * c.style.spacing, 0.45, rng)
    ok = _inside(c, x, y) & (_sample(c.busy, x, y) < 0.3)
    q = 4
    near = ndimage.gaussian_filter(c.busy[::q, ::q], 3 * r / q)
    p_keep = 0.5 + 0.5 * np.clip(_sample(near, x / q, y / q) * 4, 0, 1)
    ok &= rng.random(x.size) < p_keep
    c.add_nuclei(
        x[ok],
        y[ok],
        1.05 * r,
        theta=_sample(c.fib_dir, x[ok], y[ok]),
        elong=2.8,
        amp=0.95,
        chrom=0.3,
        cv=0.12,
    )


def _ductal(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.06, _stroma(c, 0.62))  # desmoplastic stroma
    rad = 1.6 * r
    field_ = _noise(c.shape, 7 * r * c.style.spacing, rng)
    inside = field_[c.mask]
    thr = float(np.quantile(inside, 0.42)) if inside.size else 0.0
    nest = (field_ > thr) & c.mask
    c.paint(ndimage.gaussian_filter(nest.astype(np.float32), 0.7), 0.17, 0.27, busy=True)
    lum = np.zeros(c.shape, np.float32)
    if rng.random() < 0.5:  # cribriform spaces in some nests
        x, y = _hex(c.shape, 6 * r, 0.3, rng)
        ok = (_sample(field_, x, y) > thr + 0.6) & _inside(c, x, y) & (rng.random(x.size) < 0.4)
        lum = _cover(c.shape, x[ok], y[ok], rng.uniform(0.5, 1.0, int(ok.sum())) * r)
        c.paint(lum, 0.02, 0.03)
    x, y = _hex(c.shape, 2.45 * rad * c.style.spacing, 0.3, rng)
    ok = _sample(nest, x, y) & (_sample(lum, x, y) < 0.3)
    c.add_nuclei(
        x[ok], y[ok], rad, cv=0.25, elong=1.25, elong_sd=0.2, amp=1.25, chrom=0.6, vesic=0.45
    )
    x, y = _hex(c.shape, 6 * r, 0.5, rng)  # lymphocytes in the stroma between nests
    ok = _inside(c, x, y) & ~_sample(nest, x, y) & (rng.random(x.size) < 0.35)
    c.add_nuclei(x[ok], y[ok], 0.75 * r, elong=1.05, amp=1.35, chrom=0.1, cv=0.06)


def _lobular(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.06, _stroma(c, 0.6))
    rad = 1.4 * r
    along, across = 2.25 * rad, 5.5 * rad * c.style.spacing
    heading = rng.uniform(0, np.pi)
    length = (4 * along, 12 * along)
    n = int(round(_lesion_area(c) / (across * 8 * along) * 1.2))
    xs, ys = [], []
    for x0, y0 in zip(*_starts(c, n), strict=True):
        # Files run roughly parallel (they follow the stromal planes), gently curved.
        x, y, _h = _walk(
            x0,
            y0,
            heading + rng.normal(0, 0.25) + rng.choice([0, np.pi]),
            rng.uniform(*length),
            along,
            0.05 / math.sqrt(along),
            rng,
        )
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs) if xs else np.zeros(0, np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.float32)
    sx, sy = _hex(c.shape, 7 * rad, 0.5, rng)  # scattered single (discohesive) cells
    single = rng.random(sx.size) < 0.25
    x, y = np.concatenate([x, sx[single]]), np.concatenate([y, sy[single]])
    ok = _inside(c, x, y)
    x, y = x[ok], y[ok]
    c.paint(0.7 * _cover(c.shape, x, y, 1.55 * rad), 0.12, 0.22, busy=True)  # thin cytoplasm
    c.add_nuclei(x, y, rad, cv=0.12, elong=1.1, amp=1.15, chrom=0.4, vesic=0.15)


def _mucinous(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    wisp, _ = _fibres(c.shape, 2.0 + 1.3 * c.s, rng)  # another crop of the stroma texture
    c.paint(c.m, 0.13 * (0.55 + 0.6 * wisp), 0.07 + 0.03 * wisp)  # pale blue-grey mucin
    septa = (np.abs(_noise(c.shape, 9 * r, rng)) < 0.09) & c.mask
    c.paint(septa.astype(np.float32), 0.05, 0.42)
    x, y = _hex(c.shape, 6.5 * r * c.style.spacing, 0.45, rng)
    ok = _inside(c, x, y) & ~_sample(septa, x, y) & (rng.random(x.size) < 0.5)
    x, y = x[ok], y[ok]
    n = x.size
    rc = rng.uniform(1.5, 3.2, n) * r
    el = rng.uniform(1.0, 2.2, n)
    clusters = _cover(c.shape, x, y, rc * np.sqrt(el), rc / np.sqrt(el), rng.uniform(0, np.pi, n))
    c.paint(clusters, 0.16, 0.28, busy=True)
    rad = 1.3 * r
    nx, ny = _hex(c.shape, 2.3 * rad, 0.3, rng)
    ok = _sample(clusters, nx, ny) > 0.55
    c.add_nuclei(nx[ok], ny[ok], rad, cv=0.18, elong=1.15, amp=1.05, chrom=0.4, vesic=0.25)


def _papillary(c: _Ctx) -> None:
    r, rng = c.r * c.style.size, c.rng
    wisp, _ = _fibres(c.shape, 2.0 + 1.3 * c.s, rng)
    # Pale spaces with thin secretion: close to mucin in colour (MC vs PC is a hard pair).
    c.paint(c.m, 0.11 * (0.55 + 0.6 * wisp), 0.08 + 0.03 * wisp)
    rad = 1.2 * r
    step = max(0.6, 0.3 * r)
    length = (10 * r, 28 * r)
    core_w = 1.5 * r
    wall = 2.2 * rad
    n = int(round(0.5 * _lesion_area(c) / (19 * r * 1.7 * 2 * (core_w + wall))))
    paths = _trees(_starts(c, max(n, 1)), length, step, 0.2 / math.sqrt(r), 0.7, rng)
    paths = paths.select(_inside(c, paths.x, paths.y))
    wc = (core_w * (1 + 0.3 * np.sin(paths.arc / (3 * r) + paths.pid))).astype(np.float32)
    c.paint(_cover(c.shape, paths.x, paths.y, wc + wall), 0.16, 0.27, busy=True)
    c.paint(_cover(c.shape, paths.x, paths.y, wc), 0.06, _stroma(c, 0.55))  # fibrovascular core
    vessel = (paths.pid % 2) == 0
    c.paint(_cover(c.shape, paths.x[vessel], paths.y[vessel], 0.3 * r), 0.02, 0.85)
    k = max(1, int(round(1.75 * rad / step)))
    strat = rng.random(int(paths.pid.max()) + 1 if paths.pid.size else 1) < 0.4
    for sign in (1.0, -1.0):
        sel = (np.arange(paths.x.size) + int(rng.integers(k))) % k == 0
        p = paths.select(sel)
        nx, ny = p.side(wc[sel] + 1.05 * rad, sign)
        c.add_nuclei(nx, ny, rad, theta=p.h + np.pi / 2, elong=1.9, amp=1.1, chrom=0.4)
        sel2 = sel & strat[paths.pid]
        p = paths.select(sel2)
        nx, ny = p.side(wc[sel2] + 2.6 * rad, sign)
        c.add_nuclei(nx, ny, rad, theta=p.h + np.pi / 2, elong=1.7, amp=1.1, chrom=0.4)


_LESIONS: dict[str, Callable[[_Ctx], None]] = {
    "A": _adenosis,
    "F": _fibroadenoma,
    "PT": _phyllodes,
    "TA": _tubular_adenoma,
    "DC": _ductal,
    "LC": _lobular,
    "MC": _mucinous,
    "PC": _papillary,
}


# ----------------------------------------------------------------------------------------
# Lesion mask, colour, and the public renderer
# ----------------------------------------------------------------------------------------


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
    level += 0.16 * _noise((gh, gw), max(2.0, lump), rng)
    full = np.asarray(Image.fromarray(level).resize((gw * q, gh * q), Image.Resampling.BILINEAR))
    full = full[:h, :w]
    # The quantile makes the lesion area exact, whatever the blobs' shapes.
    return full <= np.quantile(full, fraction)


def _to_rgb(c: _Ctx, rng: np.random.Generator) -> np.ndarray:
    st = c.style
    # Slides of one patient differ a little too (section thickness, staining time).
    wobble = np.exp(rng.normal(0.0, 0.03, 2))
    hmap = np.clip(c.h * (st.h_scale * wobble[0]) + st.h_shift, 0, None)
    emap = np.clip(c.e * (st.e_scale * wobble[1]) + st.e_shift, 0, None)
    hmap = ndimage.gaussian_filter(hmap, 0.6, truncate=2.5)  # optical blur
    emap = ndimage.gaussian_filter(emap, 0.6, truncate=2.5)
    od = hmap[..., None] * np.asarray(st.h_vec, np.float32) + emap[..., None] * np.asarray(
        st.e_vec, np.float32
    )
    h, w = c.shape
    yy = (np.arange(h, dtype=np.float32)[:, None] / h - 0.5) * 2
    xx = (np.arange(w, dtype=np.float32)[None, :] / w - 0.5) * 2
    # Uneven illumination: a little vignetting and a slow gradient, different per image.
    illum = (
        1.0
        - 0.05 * (xx * xx + yy * yy) * rng.uniform(0.3, 1.0)
        + 0.02 * (rng.normal() * xx + rng.normal() * yy)
    )
    rgb = 255.0 * np.asarray(st.background, np.float32) * np.exp(-od) * illum[..., None]
    # Sensor noise: uniform integers in [-4, 4] (std 2.6 grey levels), 4x cheaper than normals.
    rgb += rng.integers(-4, 5, rgb.shape, dtype=np.int8)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


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
    _check_subtype(subtype)
    _check_mag(magnification)
    w, h = _check_size(size)
    shape = (h, w)
    style = stain or PatientStyle()
    s = MAG_SCALE[magnification]
    r = NUCLEUS_RADIUS_40X * s
    mask = _lesion_mask(shape, rng)
    # Distance to the lesion, computed at half resolution (only compared with radii).
    half = ndimage.distance_transform_edt(~mask[::2, ::2]).astype(np.float32) * 2
    dist_out = np.repeat(np.repeat(half, 2, 0), 2, 1)[:h, :w] * ~mask
    fib, fib_dir = _fibres(shape, 2.0 + 1.3 * s, rng)
    soft = _blur(mask.astype(np.float32), 1.5 * r)  # lesion matrix fades in over ~2 nuclei
    c = _Ctx(shape, rng, s, r, mask, soft, dist_out, fib, fib_dir, style)
    low = _noise(shape, 40 * r, rng)
    c.e[:] = 0.68 * (0.25 + 0.85 * fib) * (1.0 + 0.12 * low)  # normal fibrous stroma
    c.h[:] = 0.045 * (1.0 + 0.2 * low)
    _normal_tissue(c)
    _LESIONS[subtype](c)
    c.render_nuclei()
    return _to_rgb(c, rng), mask


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
        >>> item = plan("tiny")[0]
        >>> img, mask = render_planned(item, 0, (96, 64))
    """
    style = patient_style(np.random.default_rng(_patient_seed(seed, item.subtype, item.patient)))
    rng = np.random.default_rng(_image_seed(seed, item))
    return render_image(item.subtype, item.magnification, rng, size, style)


# ----------------------------------------------------------------------------------------
# Writing a testbed
# ----------------------------------------------------------------------------------------


def mask_path(image_path: str | Path, data_root: str | Path) -> Path:
    """Ground-truth lesion mask of an image of a synthetic tree.

    Masks mirror the archive under ``<testbed root>/masks/``, so they stay out of the
    BreaKHis tree that indexers walk.

    Args:
        image_path: an image path (absolute, or relative to ``data_root``).
        data_root: the testbed root, or any folder of it (for example ``.../BreaKHis_v1``).

    Returns:
        The mask's path (it may not exist if the tree is not a testbed).

    Example:
        >>> str(mask_path("/t/BreaKHis_v1/x/a.png", "/t"))
        '/t/masks/BreaKHis_v1/x/a.png'
    """
    image_path = Path(image_path)
    if not image_path.is_absolute():
        image_path = Path(data_root) / image_path
    parts = image_path.parts
    lowered = [p.lower() for p in parts]
    if ARCHIVE_NAME.lower() in lowered:
        i = len(lowered) - 1 - lowered[::-1].index(ARCHIVE_NAME.lower())
        return Path(*parts[:i], MASKS_NAME, *parts[i:])
    root = Path(data_root)
    return root / MASKS_NAME / image_path.relative_to(root)


def _manifest_candidates(data_root: Path) -> list[Path]:
    out = [data_root / MANIFEST_NAME]
    lowered = [p.lower() for p in data_root.parts]
    if ARCHIVE_NAME.lower() in lowered:
        i = lowered.index(ARCHIVE_NAME.lower())
        out.append(Path(*data_root.parts[:i]) / MANIFEST_NAME)
    return out


def read_manifest(data_root: str | Path) -> dict | None:
    """The testbed manifest of a data folder, or ``None`` if it is not a synthetic testbed.

    Args:
        data_root: the testbed root, or ``BreaKHis_v1`` / any folder inside it.

    Returns:
        The parsed ``testbed.json`` (``generator``, ``version``, ``preset``, ``seed``,
        ``image_size``, ``images``, ``patients``, ``counts``, ...) or ``None``.

    Example:
        >>> read_manifest("/nonexistent") is None
        True
    """
    for path in _manifest_candidates(Path(data_root)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("generator") == GENERATOR:
            return data
    return None


def _manifest(preset: Preset, seed: int, size: tuple[int, int], items: list[PlannedImage]) -> dict:
    counts: dict[str, dict] = {}
    for s in SUBTYPES:
        mine = [p for p in items if p.subtype == s]
        counts[s] = {
            "patients": len({p.patient for p in mine}),
            "images": {m: sum(p.magnification == m for p in mine) for m in MAGNIFICATIONS},
        }
    return {
        "generator": GENERATOR,
        "version": SYNTH_VERSION,
        "preset": preset.name,
        "seed": int(seed),
        "image_size": list(size),
        "images": len(items),
        "patients": len({p.patient for p in items}),
        "archive": ARCHIVE_NAME,
        "masks": f"{MASKS_NAME}/{ARCHIVE_NAME}",
        "magnification_scale": MAG_SCALE,
        "lesion_fraction": list(LESION_FRACTION),
        "counts": counts,
        "note": "synthetic BreaKHis-format testbed; not BreaKHis",
    }


_IDENTITY = ("generator", "version", "preset", "seed", "image_size")


def _summary(out: Path, manifest: dict, seconds: float, cached: bool) -> dict:
    return {
        "root": str(out),
        "archive": str(out / ARCHIVE_NAME),
        "preset": manifest["preset"],
        "seed": manifest["seed"],
        "image_size": tuple(manifest["image_size"]),
        "images": manifest["images"],
        "patients": manifest["patients"],
        "seconds": round(seconds, 3),
        "cached": cached,
    }


def _write_batch(root: str, seed: int, size: tuple[int, int], batch: list[PlannedImage]) -> int:
    """Worker: render and write a batch of images and masks (PNG)."""
    base = Path(root)
    for item in batch:
        img, mask = render_planned(item, seed, size)
        path = base / item.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        # Fast zlib level: files ~15% larger than level 6, written 3x faster.
        Image.fromarray(img).save(path, compress_level=1)
        mpath = base / MASKS_NAME / item.relpath
        mpath.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mpath, compress_level=6)
    return len(batch)


def _batches(items: list[PlannedImage], size: int) -> list[list[PlannedImage]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork is fastest, but unsafe once TensorFlow (threads) is loaded: then use spawn.
    import sys

    if sys.platform == "linux" and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def synthesize(
    out: str | Path,
    preset: str = "demo",
    seed: int = 0,
    image_size: tuple[int, int] = BREAKHIS_IMAGE_SIZE,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a synthetic BreaKHis-format testbed (images, masks, manifest) into ``out``.

    The tree is built in a temporary sibling folder and renamed to ``out`` at the end, so an
    interrupted run leaves nothing at ``out``. If ``out`` already holds the same testbed
    (same generator version, preset, seed and size) it is returned as is: this is the cache
    behind ``--data demo``.

    Args:
        out: testbed root to create (must not exist, be empty, or hold the same testbed).
        preset: ``"tiny"`` (tests), ``"demo"`` (``make demo``) or ``"full"`` (BreaKHis counts).
        seed: random seed; the same seed gives the same bytes whatever ``workers`` is.
        image_size: (width, height) of every image; BreaKHis is (700, 460).
        workers: processes to render with (default ``os.cpu_count()``; 1 = in-process).
        progress: optional ``callback(done, total)`` called as images are written.

    Returns:
        ``{"root", "archive", "preset", "seed", "image_size", "images", "patients",
        "seconds", "cached"}``.

    Raises:
        ValueError: unknown preset, bad size, or ``out`` is a non-empty folder that is not
            this testbed.

    Example:
        >>> summary = synthesize("/tmp/tb", preset="tiny", image_size=(96, 64))  # doctest: +SKIP
        >>> summary["images"]  # doctest: +SKIP
        208
    """
    start = time.perf_counter()
    spec = _check_preset(preset)
    size = _check_size(image_size)
    out = Path(out).expanduser().absolute()
    items = plan(preset, seed)
    manifest = _manifest(spec, seed, size, items)

    def existing() -> dict | None:
        if not out.exists():
            return None
        if out.is_dir() and not any(out.iterdir()):
            return None
        found = read_manifest(out) if out.is_dir() else None
        if found is not None and all(found.get(k) == manifest[k] for k in _IDENTITY):
            return _summary(out, found, time.perf_counter() - start, cached=True)
        what = (
            f"a different testbed (preset={found.get('preset')!r}, seed={found.get('seed')!r}, "
            f"image_size={found.get('image_size')!r}, version={found.get('version')!r})"
            if found is not None
            else "files that are not this testbed"
        )
        raise ValueError(
            f"Refusing to write the testbed into a non-empty folder. Received: out={str(out)!r} "
            f"holding {what}; expected a new or empty folder (or the same preset, seed and "
            "size, which is reused)."
        )

    cached = existing()
    if cached is not None:
        if progress is not None:
            progress(manifest["images"], manifest["images"])
        return cached

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        n_workers = max(1, int(workers or os.cpu_count() or 1))
        total = len(items)
        done = 0
        if progress is not None:
            progress(0, total)
        if n_workers == 1 or total <= 8:
            for batch in _batches(items, 8):
                done += _write_batch(str(tmp), seed, size, batch)
                if progress is not None:
                    progress(done, total)
        else:
            # Small batches keep every worker busy to the end and progress smooth.
            per = max(1, min(32, total // (n_workers * 8) or 1))
            with ProcessPoolExecutor(n_workers, mp_context=_mp_context()) as pool:
                futures = [
                    pool.submit(_write_batch, str(tmp), seed, size, b) for b in _batches(items, per)
                ]
                for fut in as_completed(futures):
                    done += fut.result()
                    if progress is not None:
                        progress(done, total)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # only an empty folder gets here
        try:
            tmp.rename(out)
        except OSError:
            # Another process finished the same testbed first: use theirs.
            cached = existing()
            if cached is None:
                raise
            return cached
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _summary(out, manifest, time.perf_counter() - start, cached=False)
