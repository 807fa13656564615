"""The lesion of each of the 8 subtypes, drawn inside the lesion mask of a canvas.

``r`` is the radius of a normal nucleus (1.7 px at 40X, scaled by ``MAG_SCALE``):

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
groups in pale spaces) are the closest pairs, as in the papers. :data:`LESIONS` maps each
subtype code to its painter. The colours above are what structures are drawn with; after
the nuclei, :func:`equalize_lesion` gives every lesion the same mean H and E density
(:data:`LESION_LEVEL`), so the class lives in the fine detail, not in the low-pass colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from breastzoo.data.testbed.canvas import Canvas
from breastzoo.data.testbed.paint import (
    Paths,
    coverage,
    fibres,
    hex_grid,
    noise,
    sample,
    trees,
    walk,
)
from breastzoo.data.testbed.tissue import glands


def _inside(c: Canvas, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return sample(c.mask, x, y).astype(bool)


def _stroma(c: Canvas, density: float, contrast: float = 0.6) -> np.ndarray:
    """Eosin density of collagenous stroma: ``contrast`` sets how fibrous it looks."""
    return density * ((1.0 - contrast) + contrast * 1.25 * c.fib)


def _swirl(c: Canvas, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    field_ = noise(c.shape, 20 * c.r, c.rng)
    return sample(field_, x, y) * 1.6


def _lesion_area(c: Canvas) -> float:
    return float(c.mask.sum())


def _starts(c: Canvas, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points inside the lesion."""
    ys, xs = np.nonzero(c.mask)
    if xs.size == 0 or n <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    i = c.rng.integers(0, xs.size, n)
    return xs[i] + c.rng.random(n), ys[i] + c.rng.random(n)


def _adenosis(c: Canvas) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.05, _stroma(c, 0.72))  # sclerotic stroma
    x, y = hex_grid(c.shape, 7.6 * r * c.style.spacing, 0.25, rng)
    ok = _inside(c, x, y)
    x, y = x[ok], y[ok]
    n = x.size
    la = rng.uniform(0.8, 1.9, n) * r  # elongated, variable, some compressed to a slit
    lb = rng.uniform(0.35, 0.75, n) * r
    solid = rng.random(n) < 0.2
    la[solid] *= 0.3
    lb[solid] *= 0.3
    ang = _swirl(c, x, y) + rng.normal(0, 0.35, n)
    glands(c, x, y, la, lb, ang, 0.95 * r, wall=2.2 * r, myo=True, amp=0.95)


def _tubular_adenoma(c: Canvas) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.06, _stroma(c, 0.52, contrast=0.3))
    x, y = hex_grid(c.shape, 7.4 * r * c.style.spacing, 0.07, rng)
    ok = _inside(c, x, y)
    x, y = x[ok], y[ok]
    n = x.size
    la = rng.uniform(1.0, 1.35, n) * r  # uniform round tubules, small open lumens
    glands(
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
    c: Canvas,
    *,
    cover: float,
    length: tuple[float, float],
    turn: float,
    branch_p: float,
    lumen: Callable[[Paths], np.ndarray],
    lumen_min: float,
    layers: int,
    rad: float,
) -> Paths:
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
    paths = trees(_starts(c, max(n, 1)), length, step, turn, branch_p, rng)
    paths = paths.select(_inside(c, paths.x, paths.y))
    wl = lumen(paths)
    band = max(1, int(round(0.4 * (wl.mean() + wall) / step))) if wl.size else 1
    sub = np.arange(paths.x.size) % band == 0
    c.paint(coverage(c.shape, paths.x[sub], paths.y[sub], (wl + wall)[sub]), 0.13, 0.30, busy=True)
    lum = coverage(c.shape, paths.x, paths.y, wl)
    c.paint(lum, 0.02, 0.03, busy=True)
    k = max(1, int(round(2.0 * rad / step)))
    for sign in (1.0, -1.0):
        sel = (np.arange(paths.x.size) + int(rng.integers(k))) % k == 0
        p = paths.select(sel)
        nx, ny = p.side(wl[sel] + rad, sign)
        keep = sample(lum, nx, ny) < 0.3
        c.add_nuclei(
            nx[keep], ny[keep], rad, theta=p.h[keep] + np.pi / 2, elong=1.25, amp=0.95, chrom=0.25
        )
        if layers == 2:
            sel = (np.arange(paths.x.size) + int(rng.integers(k))) % (2 * k) == 0
            p = paths.select(sel)
            mx, my = p.side(wl[sel] + wall - 0.45 * rad, sign)
            keep = sample(lum, mx, my) < 0.3
            c.add_nuclei(
                mx[keep], my[keep], 0.8 * rad, theta=p.h[keep], elong=3.0, amp=0.8, chrom=0.1
            )
    return paths


def _fibroadenoma(c: Canvas) -> None:
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
    x, y = hex_grid(c.shape, 6.5 * r * c.style.spacing, 0.5, rng)
    ok = _inside(c, x, y) & (sample(c.busy, x, y) < 0.3)
    c.add_nuclei(
        x[ok], y[ok], 0.9 * r, theta=sample(c.fib_dir, x[ok], y[ok]), elong=3.2, amp=0.8, chrom=0.1
    )


def _phyllodes(c: Canvas) -> None:
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
    x, y = hex_grid(c.shape, 2.9 * r * c.style.spacing, 0.45, rng)
    ok = _inside(c, x, y) & (sample(c.busy, x, y) < 0.3)
    q = 4
    near = ndimage.gaussian_filter(c.busy[::q, ::q], 3 * r / q)
    p_keep = 0.5 + 0.5 * np.clip(sample(near, x / q, y / q) * 4, 0, 1)
    ok &= rng.random(x.size) < p_keep
    c.add_nuclei(
        x[ok],
        y[ok],
        1.05 * r,
        theta=sample(c.fib_dir, x[ok], y[ok]),
        elong=2.8,
        amp=0.95,
        chrom=0.3,
        cv=0.12,
    )


def _ductal(c: Canvas) -> None:
    r, rng = c.r * c.style.size, c.rng
    c.paint(c.m, 0.06, _stroma(c, 0.62))  # desmoplastic stroma
    rad = 1.6 * r
    field_ = noise(c.shape, 7 * r * c.style.spacing, rng)
    inside = field_[c.mask]
    thr = float(np.quantile(inside, 0.42)) if inside.size else 0.0
    nest = (field_ > thr) & c.mask
    c.paint(ndimage.gaussian_filter(nest.astype(np.float32), 0.7), 0.17, 0.27, busy=True)
    lum = np.zeros(c.shape, np.float32)
    if rng.random() < 0.5:  # cribriform spaces in some nests
        x, y = hex_grid(c.shape, 6 * r, 0.3, rng)
        ok = (sample(field_, x, y) > thr + 0.6) & _inside(c, x, y) & (rng.random(x.size) < 0.4)
        lum = coverage(c.shape, x[ok], y[ok], rng.uniform(0.5, 1.0, int(ok.sum())) * r)
        c.paint(lum, 0.02, 0.03)
    x, y = hex_grid(c.shape, 2.45 * rad * c.style.spacing, 0.3, rng)
    ok = sample(nest, x, y) & (sample(lum, x, y) < 0.3)
    c.add_nuclei(
        x[ok], y[ok], rad, cv=0.25, elong=1.25, elong_sd=0.2, amp=1.25, chrom=0.6, vesic=0.45
    )
    x, y = hex_grid(c.shape, 6 * r, 0.5, rng)  # lymphocytes in the stroma between nests
    ok = _inside(c, x, y) & ~sample(nest, x, y) & (rng.random(x.size) < 0.35)
    c.add_nuclei(x[ok], y[ok], 0.75 * r, elong=1.05, amp=1.35, chrom=0.1, cv=0.06)


def _lobular(c: Canvas) -> None:
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
        x, y, _h = walk(
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
    sx, sy = hex_grid(c.shape, 7 * rad, 0.5, rng)  # scattered single (discohesive) cells
    single = rng.random(sx.size) < 0.25
    x, y = np.concatenate([x, sx[single]]), np.concatenate([y, sy[single]])
    ok = _inside(c, x, y)
    x, y = x[ok], y[ok]
    c.paint(0.7 * coverage(c.shape, x, y, 1.55 * rad), 0.12, 0.22, busy=True)  # thin cytoplasm
    c.add_nuclei(x, y, rad, cv=0.12, elong=1.1, amp=1.15, chrom=0.4, vesic=0.15)


def _mucinous(c: Canvas) -> None:
    r, rng = c.r * c.style.size, c.rng
    wisp, _ = fibres(c.shape, 2.0 + 1.3 * c.s, rng)  # another crop of the stroma texture
    c.paint(c.m, 0.13 * (0.55 + 0.6 * wisp), 0.07 + 0.03 * wisp)  # pale blue-grey mucin
    septa = (np.abs(noise(c.shape, 9 * r, rng)) < 0.09) & c.mask
    c.paint(septa.astype(np.float32), 0.05, 0.42)
    x, y = hex_grid(c.shape, 6.5 * r * c.style.spacing, 0.45, rng)
    ok = _inside(c, x, y) & ~sample(septa, x, y) & (rng.random(x.size) < 0.5)
    x, y = x[ok], y[ok]
    n = x.size
    rc = rng.uniform(1.5, 3.2, n) * r
    el = rng.uniform(1.0, 2.2, n)
    clusters = coverage(c.shape, x, y, rc * np.sqrt(el), rc / np.sqrt(el), rng.uniform(0, np.pi, n))
    c.paint(clusters, 0.16, 0.28, busy=True)
    rad = 1.3 * r
    nx, ny = hex_grid(c.shape, 2.3 * rad, 0.3, rng)
    ok = sample(clusters, nx, ny) > 0.55
    c.add_nuclei(nx[ok], ny[ok], rad, cv=0.18, elong=1.15, amp=1.05, chrom=0.4, vesic=0.25)


def _papillary(c: Canvas) -> None:
    r, rng = c.r * c.style.size, c.rng
    wisp, _ = fibres(c.shape, 2.0 + 1.3 * c.s, rng)
    # Pale spaces with thin secretion: close to mucin in colour (MC vs PC is a hard pair).
    c.paint(c.m, 0.11 * (0.55 + 0.6 * wisp), 0.08 + 0.03 * wisp)
    rad = 1.2 * r
    step = max(0.6, 0.3 * r)
    length = (10 * r, 28 * r)
    core_w = 1.5 * r
    wall = 2.2 * rad
    n = int(round(0.5 * _lesion_area(c) / (19 * r * 1.7 * 2 * (core_w + wall))))
    paths = trees(_starts(c, max(n, 1)), length, step, 0.2 / math.sqrt(r), 0.7, rng)
    paths = paths.select(_inside(c, paths.x, paths.y))
    wc = (core_w * (1 + 0.3 * np.sin(paths.arc / (3 * r) + paths.pid))).astype(np.float32)
    c.paint(coverage(c.shape, paths.x, paths.y, wc + wall), 0.16, 0.27, busy=True)
    c.paint(coverage(c.shape, paths.x, paths.y, wc), 0.06, _stroma(c, 0.55))  # fibrovascular core
    vessel = (paths.pid % 2) == 0
    c.paint(coverage(c.shape, paths.x[vessel], paths.y[vessel], 0.3 * r), 0.02, 0.85)
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


# Mean hematoxylin and eosin densities inside every lesion, whatever its subtype (before the
# patient's stain scale): at low resolution all lesions look alike, the class is in the detail.
LESION_LEVEL = (0.40, 0.28)


def equalize_lesion(c: Canvas, level: tuple[float, float] = LESION_LEVEL) -> None:
    """Give the lesion the common mean H and E density ``level``, keeping its fine detail.

    Run after :meth:`Canvas.render_nuclei`. Each image's target is ``level`` times a small
    random factor (the same distribution for every subtype). A density below its target is
    raised by adding a uniform wash (texture untouched); one above it is scaled down. Both
    are weighted by the soft lesion mask and sized so the mean over the mask is exactly the
    target, so the lesion's low-pass colour carries no class information.

    Args:
        c: the canvas, with every lesion structure and nucleus drawn.
        level: (H, E) target means inside the lesion mask.

    Example:
        >>> from breastzoo.data.testbed.canvas import PatientStyle
        >>> z = np.zeros((16, 16), np.float32)
        >>> m = z.copy()
        >>> m[4:12, 4:12] = 1
        >>> c = Canvas((16, 16), np.random.default_rng(0), 1.0, 1.7, m > 0, m, z, z, z,
        ...            PatientStyle())
        >>> equalize_lesion(c, (0.3, 0.4))
        >>> [round(float(d[m > 0].mean()), 1) for d in (c.h, c.e)]  # the target, +-4%
        [0.3, 0.4]
    """
    inside = c.mask
    if not inside.any():
        return
    w = c.m
    jitter = np.exp(c.rng.normal(0.0, 0.04, 2))
    for k, density in enumerate((c.h, c.e)):
        target = float(level[k] * jitter[k])
        mean = float(density[inside].mean())
        if mean < target:
            # A uniform wash: sized by the soft mask's mean weight on the lesion.
            density += w * np.float32((target - mean) / max(float(w[inside].mean()), 1e-6))
        else:
            # Scale down; the factor never drops below 0.2 (the target is never that far off).
            weighted = max(float((w * density)[inside].mean()), 1e-6)
            gain = max(1.0 + (target - mean) / weighted, 0.2) - 1.0
            density *= 1.0 + w * np.float32(gain)


# Subtype code -> the function that paints its lesion onto a canvas.
LESIONS: dict[str, Callable[[Canvas], None]] = {
    "A": _adenosis,
    "F": _fibroadenoma,
    "PT": _phyllodes,
    "TA": _tubular_adenoma,
    "DC": _ductal,
    "LC": _lobular,
    "MC": _mucinous,
    "PC": _papillary,
}

