"""Normal breast tissue around the lesion, identical in distribution for every subtype.

Fibrous stroma with fibroblasts and lymphocytes, vessels, ducts, lobules and fat, and a
reactive *halo* around the lesion: denser stroma and a lymphocytic infiltrate whose density
(:func:`halo_density`) falls off smoothly over 100-200 px from the lesion's edge. The halo
depends only on the distance to the lesion, never on its subtype, so it tells where to look
without telling what is there.
"""

from __future__ import annotations

import numpy as np

from breastzoo.data.testbed.canvas import Canvas
from breastzoo.data.testbed.paint import coverage, hex_grid, noise, ring, sample

# Fall-off length of the halo in pixels (fixed: the pixel scale, not the magnification, is
# what a 112-px glimpse sees). Density 1 at the lesion edge, 0.42 at 100 px, 0.09 at 200 px.
HALO_SCALE = 110.0


def halo_density(dist: np.ndarray | float) -> np.ndarray:
    """Density of the reactive halo at ``dist`` pixels from the lesion's edge, in (0, 1].

    ``exp(-(dist / HALO_SCALE) ** 1.5)``: 1 at the edge, 0.74 at 50 px, 0.42 at 100 px, 0.09
    at 200 px, 0.03 at 250 px.

    Args:
        dist: distance(s) to the lesion in pixels (0 on and inside it).

    Example:
        >>> [round(float(halo_density(d)), 2) for d in (0, 100, 200)]
        [1.0, 0.42, 0.09]
    """
    d = np.asarray(dist, np.float32) / np.float32(HALO_SCALE)
    return np.exp(-(d * np.sqrt(d))).astype(np.float32)


def stroma(c: Canvas) -> None:
    """Paint the fibrous stroma everywhere: the ground everything else is drawn on.

    Collagen (eosin, from the fibre texture) with a little hematoxylin, both varying slowly;
    in the halo around the lesion the stroma is denser (more eosin, more hematoxylin).

    Args:
        c: the canvas (its ``fib`` texture and ``dist_out``).

    Example:
        >>> from breastzoo.data.testbed.canvas import PatientStyle
        >>> z = np.zeros((32, 32), np.float32)
        >>> c = Canvas((32, 32), np.random.default_rng(0), 1.0, 1.7, z > 0, z, z + 400, z, z,
        ...            PatientStyle())
        >>> stroma(c)
        >>> bool(c.e.min() > 0)
        True
    """
    low = noise(c.shape, 40 * c.r, c.rng)
    rho = halo_density(c.dist_out)
    c.e[:] = 0.68 * (0.25 + 0.85 * c.fib) * (1.0 + 0.12 * low) * (1.0 + 0.3 * rho)
    c.h[:] = 0.045 * (1.0 + 0.2 * low) * (1.0 + 0.8 * rho)


def glands(
    c: Canvas,
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
    """Glands: a lumen with semi-axes (la, lb) inside epithelium ``wall`` px thick.

    Args:
        c: the canvas.
        x, y: gland centres in pixels.
        la, lb: lumen semi-axes in pixels.
        ang: rotation of each gland in radians.
        rad: epithelial nuclear radius in pixels.
        wall: epithelium thickness in pixels.
        myo: add flattened myoepithelial nuclei around the outside.
        amp: hematoxylin amplitude of the epithelial nuclei.
        band_h, band_e: H and E densities of the epithelium.
        lumen_h, lumen_e: H and E densities of the lumen.

    Example:
        >>> from breastzoo.data.testbed.canvas import PatientStyle
        >>> z = np.zeros((48, 48), np.float32)
        >>> c = Canvas((48, 48), np.random.default_rng(0), 1.0, 1.7, z > 0, z, z, z, z,
        ...            PatientStyle())
        >>> glands(c, np.array([24.0]), np.array([24.0]), np.array([4.0]), np.array([3.0]),
        ...        np.array([0.0]), 1.7, wall=4.0, myo=True)
        >>> len(c.nuclei)
        2
    """
    if x.size == 0:
        return
    ga, gb = la + wall, lb + wall
    c.paint(coverage(c.shape, x, y, ga, gb, ang), band_h, band_e, busy=True)
    c.paint(coverage(c.shape, x, y, la, lb, ang), lumen_h, lumen_e, busy=True)
    # Nuclei sit basally (towards the outer edge), cytoplasm faces the lumen.
    off = np.maximum(wall - 1.05 * rad, 0.9 * rad)
    px, py, normal = ring(x, y, la + off, lb + off, ang, 2.1 * rad, c.rng)
    c.add_nuclei(px, py, rad, theta=normal, elong=1.2, cv=0.08, amp=amp, chrom=0.25)
    if myo:  # flattened myoepithelial nuclei just outside the epithelium
        mx, my, mn = ring(x, y, ga + 0.3 * rad, gb + 0.3 * rad, ang, 3.4 * rad, c.rng)
        c.add_nuclei(mx, my, 0.8 * rad, theta=mn + np.pi / 2, elong=3.0, amp=0.85 * amp, chrom=0.1)


def normal_tissue(c: Canvas) -> None:
    """Fat, ducts, lobules, vessels, fibroblasts and lymphocytes outside the lesion.

    Drawn from the same distribution for every subtype, so a crop off the lesion carries
    little class signal; lymphocytes crowd towards the lesion (the halo, :func:`halo_density`),
    alike for every subtype.

    Args:
        c: the canvas (``dist_out`` keeps normal structures off the lesion).

    Example:
        >>> from breastzoo.data.testbed.canvas import PatientStyle
        >>> z = np.zeros((64, 64), np.float32)
        >>> c = Canvas((64, 64), np.random.default_rng(0), 1.0, 1.7, z > 0, z, z + 99, z, z,
        ...            PatientStyle())
        >>> normal_tissue(c)
        >>> len(c.nuclei) > 0
        True
    """
    rng, r, shape = c.rng, c.r, c.shape
    h, w = shape
    area = h * w
    # Fat: white adipocytes with thin pink membranes (a cell network from noise zero-crossings).
    if rng.random() < 0.4:
        region = noise(shape, min(30 * r, 0.5 * min(h, w)), rng) > 0.6
        fat = (region & (c.dist_out > 2 * r)).astype(np.float32)
        membrane = (np.abs(noise(shape, 7 * r, rng)) < 0.09).astype(np.float32)
        c.paint(fat, 0.01, 0.015, busy=True)
        c.paint(fat * membrane, 0.03, 0.32)
    # Ducts and terminal lobular units, away from the lesion.
    n_ducts = rng.poisson(area / (90 * r) ** 2)
    if n_ducts:
        x, y = rng.uniform(0, w, n_ducts), rng.uniform(0, h, n_ducts)
        la = rng.uniform(1.2, 3.0, n_ducts) * r
        lb = la * rng.uniform(0.5, 1.0, n_ducts)
        ok = sample(c.dist_out, x, y) > la + 5 * r
        glands(
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
        if sample(c.dist_out, cx, cy) < 12 * r:
            continue
        k = int(rng.integers(6, 15))
        rr = 8 * r * np.sqrt(rng.random(k))
        t = rng.uniform(0, 2 * np.pi, k)
        c.paint(coverage(shape, [cx], [cy], [9.5 * r]), 0.07, 0.26)  # loose intralobular stroma
        la = rng.uniform(0.35, 0.7, k) * r
        glands(
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
        ok = sample(c.dist_out, x, y) > lr + r
        x, y, lr = x[ok], y[ok], lr[ok]
        c.paint(coverage(shape, x, y, lr), 0.01, 0.02, busy=True)
        fill = rng.random(x.size) < 0.6
        c.paint(coverage(shape, x[fill], y[fill], 0.7 * lr[fill]), 0.02, 0.85)
        ex, ey, en = ring(x, y, lr + 0.3 * r, lr + 0.3 * r, np.zeros_like(x), 4 * r, rng)
        c.add_nuclei(ex, ey, 0.8 * r, theta=en + np.pi / 2, elong=3.0, amp=0.85, chrom=0.1)
    # Fibroblasts along the fibres, lymphocytes here and there.
    x, y = hex_grid(shape, 5.0 * r, 0.5, rng)
    ok = (sample(c.dist_out, x, y) > 0) & (sample(c.busy, x, y) < 0.3)
    ok &= rng.random(x.size) < 0.35
    c.add_nuclei(
        x[ok],
        y[ok],
        0.9 * r,
        theta=sample(c.fib_dir, x[ok], y[ok]),
        elong=3.5,
        amp=0.75,
        chrom=0.15,
    )
    x, y = hex_grid(shape, 13 * r, 0.5, rng)
    ok = (sample(c.dist_out, x, y) > 0) & (sample(c.busy, x, y) < 0.3)
    c.add_nuclei(x[ok], y[ok], 0.75 * r, elong=1.05, amp=1.35, chrom=0.1, cv=0.06)
    # The halo: a patchy lymphocytic infiltrate, dense at the lesion's edge, fading over
    # 100-200 px (halo_density), the same for every subtype.
    x, y = hex_grid(shape, 2.8 * r, 0.45, rng)
    d = sample(c.dist_out, x, y)
    patchy = np.clip(0.75 + 0.45 * sample(noise(shape, 12 * r, rng), x, y), 0.0, 1.3)
    ok = (d > 0) & (sample(c.busy, x, y) < 0.3)
    ok &= rng.random(x.size) < 0.7 * halo_density(d) * patchy
    c.add_nuclei(x[ok], y[ok], 0.75 * r, elong=1.05, amp=1.35, chrom=0.1, cv=0.06)

