"""The canvas an image is drawn on: patient appearance, stain densities, nuclei, RGB.

Every image is H&E-like: hematoxylin and eosin optical-density maps mixed by Beer-Lambert
with per-patient stain vectors, scales and shifts, plus per-image illumination and noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from breastzoo.data.testbed.paint import accumulate, noise, stamps

# Reference stain optical-density vectors (RGB absorbance per unit concentration), the usual
# Macenko reference; patients perturb them slightly.
_H_REF = np.array([0.5626, 0.7201, 0.4062], dtype=np.float32)
_E_REF = np.array([0.2159, 0.8012, 0.5581], dtype=np.float32)


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


@dataclass
class Canvas:
    """One image being drawn: H and E density maps plus nuclei, rendered at the end.

    Layers are composited with :meth:`paint`; nuclei are collected with :meth:`add_nuclei`
    and drawn together by :meth:`render_nuclei`; :func:`to_rgb` turns the densities into
    an RGB image with the patient's stain.

    Args:
        shape: (height, width) in pixels.
        rng: random generator of this image.
        s: magnification scale (``MAG_SCALE``).
        r: radius of a normal nucleus in pixels.
        mask: lesion mask (bool).
        m: soft lesion mask (float32, fades in over about two nuclei).
        dist_out: distance to the lesion in pixels, 0 inside.
        fib: collagen texture in [0, 1] (:func:`~breastzoo.data.testbed.paint.fibres`).
        fib_dir: local fibre direction in radians.
        style: the patient's appearance.

    Example:
        >>> z = np.zeros((8, 8), np.float32)
        >>> c = Canvas((8, 8), np.random.default_rng(0), 1.0, 1.7, z > 0, z, z, z, z,
        ...            PatientStyle())
        >>> c.paint(np.ones((8, 8), np.float32), 0.1, 0.2)
        >>> to_rgb(c, np.random.default_rng(0)).shape
        (8, 8, 3)
    """

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
        grain = noise(self.shape, max(1.0, 0.3 * self.r), self.rng).ravel() * np.float32(0.45)
        vesicular = p["vesic"] > 0
        for ves_group in (False, True):
            sel = np.nonzero(vesicular == ves_group)[0]
            for flat, edge, u, v, obj in stamps(
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
                nuc += accumulate(self.shape, flat, val)
                cov += accumulate(self.shape, flat, edge)
        cov = np.minimum(cov, 1.0).astype(np.float32)
        self.h = self.h * (1.0 - 0.5 * cov) + np.minimum(nuc, 2.4).astype(np.float32)
        self.e *= 1.0 - 0.6 * cov

def to_rgb(c: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Stain densities to RGB: Beer-Lambert with the patient's stain, illumination and noise.

    Args:
        c: the canvas (its ``h``, ``e`` maps and ``style``).
        rng: the image's random generator (slide wobble, illumination, sensor noise).

    Returns:
        uint8 array of shape (height, width, 3).

    Example:
        See :class:`Canvas`.
    """
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

