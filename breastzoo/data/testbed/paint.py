"""Drawing primitives of the testbed: noise, collagen fibres, ellipses, grids and paths.

All vectorised, on float32 maps of shape (H, W); every random draw comes from the ``rng``
passed in, so a seed fixes the bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage


def noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth Gaussian noise, roughly unit variance, correlation length ~``scale`` px.

    Args:
        shape: (height, width) of the map.
        scale: correlation length in pixels (large scales are drawn coarse and upsampled).
        rng: random generator.

    Example:
        >>> noise((32, 48), 4.0, np.random.default_rng(0)).shape
        (32, 48)
    """
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
    dy = noise((n, n), 25 * period, rng) * np.float32(6 * period)
    dy += noise((n, n), 6 * period, rng) * np.float32(0.8 * period)  # small waviness
    dx = noise((n, n), 25 * period, rng) * np.float32(3 * period)
    off = (m - n) / 2
    warped = ndimage.map_coordinates(
        streak,
        [yy + off + np.clip(dy, -off, off), xx + off + np.clip(dx, -off, off)],
        order=1,
        mode="reflect",
    )
    fib = 1.0 / (1.0 + np.exp(-1.8 * warped))
    fib *= 0.72 + 0.28 * np.tanh(noise((n, n), 6 * period, rng))  # bundles vs loose areas
    # Fibres follow level sets of the source row y + dy(y, x).
    direction = np.arctan2(-np.gradient(dy, axis=1), 1.0 + np.gradient(dy, axis=0))
    _TILES[key] = (fib.astype(np.float32), direction.astype(np.float32))
    return _TILES[key]


def fibres(
    shape: tuple[int, int], period: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Collagen texture in [0, 1] for one image and the local fibre direction (radians).

    A random crop and mirror / transpose variant of a per-process cached tile.

    Args:
        shape: (height, width) of the image.
        period: fibre spacing in pixels (it grows with the magnification).
        rng: random generator (picks the crop and variant).

    Example:
        >>> fib, direction = fibres((32, 48), 3.3, np.random.default_rng(0))
        >>> fib.shape == direction.shape == (32, 48)
        True
    """
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


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones are done on a coarse grid (the result is smooth anyway).

    Args:
        img: float32 map of shape (H, W).
        sigma: standard deviation in pixels.

    Example:
        >>> blur(np.ones((20, 30), np.float32), 5.0).shape
        (20, 30)
    """
    if sigma <= 3.0:
        return ndimage.gaussian_filter(img, sigma)
    q = int(sigma / 1.5)
    h, w = img.shape
    small = ndimage.gaussian_filter(img[::q, ::q], sigma / q)
    big = Image.fromarray(small.astype(np.float32)).resize(
        (small.shape[1] * q, small.shape[0] * q), Image.Resampling.BILINEAR
    )
    return np.asarray(big, dtype=np.float32)[:h, :w]


def stamps(
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

    Args:
        shape: (height, width) of the canvas.
        x, y: centres in pixels.
        a, b: semi-axes in pixels (at least 0.3).
        theta: rotation of the ``a`` axis in radians.
        soft: width in pixels of the anti-aliased edge ramp.
        need_uv: False yields ``None`` for u, v and object index (cheaper).

    Example:
        >>> one = np.ones(1, np.float32)
        >>> flat, edge, *_ = next(stamps((16, 16), 8 * one, 8 * one, 3 * one, 2 * one, 0 * one))
        >>> flat.shape == edge.shape
        True
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


def accumulate(shape: tuple[int, int], flat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum ``weights`` into a (H, W) float64 map at the flat pixel indices ``flat``.

    Args:
        shape: (height, width) of the map.
        flat: flat pixel indices (as :func:`stamps` yields them).
        weights: one value per index.

    Example:
        >>> accumulate((2, 2), np.array([0, 0, 3]), np.array([1.0, 1.0, 5.0])).tolist()
        [[2.0, 0.0], [0.0, 5.0]]
    """
    return np.bincount(flat, weights=weights, minlength=shape[0] * shape[1]).reshape(shape)


def coverage(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray | None = None,
    theta: np.ndarray | None = None,
    soft: float = 0.8,
) -> np.ndarray:
    """Coverage map in [0, 1] of a union of (soft-edged) ellipses or discs.

    Args:
        shape: (height, width) of the map.
        x, y: centres in pixels.
        a: radii (discs) or first semi-axes.
        b: second semi-axes (default ``a``).
        theta: rotation in radians (default 0).
        soft: width in pixels of the edge ramp.

    Example:
        >>> float(coverage((16, 16), [8.0], [8.0], [4.0]).max())
        1.0
    """
    x = np.asarray(x, np.float32)
    a = np.broadcast_to(np.asarray(a, np.float32), x.shape)
    b = a if b is None else np.broadcast_to(np.asarray(b, np.float32), x.shape)
    theta = np.zeros_like(x) if theta is None else np.broadcast_to(theta, x.shape)
    out = np.zeros(shape, np.float64)
    for flat, edge, _u, _v, _obj in stamps(shape, x, y, a, b, theta, soft, need_uv=False):
        out += accumulate(shape, flat, edge)
    return np.minimum(out, 1.0).astype(np.float32)


def sample(region: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of a (H, W) map at float points (nearest pixel, clamped).

    Args:
        region: the map.
        x, y: points in pixels (outside points take the nearest edge value).

    Example:
        >>> sample(np.arange(6).reshape(2, 3), np.array([2.7, 9.0]), np.array([0.2, 1.0])).tolist()
        [2, 5]
    """
    h, w = region.shape
    xi = np.clip(np.asarray(x).astype(np.int64), 0, w - 1)
    yi = np.clip(np.asarray(y).astype(np.int64), 0, h - 1)
    return region[yi, xi]


def hex_grid(
    shape: tuple[int, int], spacing: float, jitter: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Jittered hexagonal grid of points over the image (random phase).

    Args:
        shape: (height, width) of the image; points outside are dropped.
        spacing: distance between neighbours in pixels.
        jitter: standard deviation of the jitter, as a share of ``spacing``.
        rng: random generator.

    Example:
        >>> x, y = hex_grid((40, 60), 10.0, 0.1, np.random.default_rng(0))
        >>> x.shape == y.shape
        True
    """
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


def walk(
    x0: float,
    y0: float,
    heading: float,
    length: float,
    step: float,
    turn: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random path: points every ``step`` px, heading diffusing ``turn`` rad/sqrt(px).

    Args:
        x0, y0: start point in pixels.
        heading: initial direction in radians.
        length: path length in pixels.
        step: distance between points in pixels.
        turn: heading diffusion in rad/sqrt(px).
        rng: random generator.

    Returns:
        ``(x, y, heading)`` per point, float32.

    Example:
        >>> x, y, h = walk(0.0, 0.0, 0.0, 20.0, 1.0, 0.1, np.random.default_rng(0))
        >>> x.size
        20
    """
    n = max(2, int(length / step))
    dh = rng.normal(0.0, turn * math.sqrt(step), n)
    dh = ndimage.gaussian_filter1d(dh, 3.0) * 2.0  # smooth bends, not jitter
    dh[0] = 0.0
    h = heading + np.cumsum(dh)
    x = x0 + np.concatenate([[0.0], np.cumsum(step * np.cos(h[:-1]))])
    y = y0 + np.concatenate([[0.0], np.cumsum(step * np.sin(h[:-1]))])
    return x.astype(np.float32), y.astype(np.float32), h.astype(np.float32)


@dataclass
class Paths:
    """Concatenated polylines: points, headings, arc length and path id.

    Args:
        x, y: points in pixels.
        h: heading at each point in radians.
        arc: arc length from the start of its path in pixels.
        pid: path id of each point.

    Example:
        >>> p = trees((np.array([10.0]), np.array([10.0])), (8.0, 9.0), 1.0, 0.1, 0.0,
        ...           np.random.default_rng(0))
        >>> p.select(p.arc < 2).x.size
        2
    """

    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    arc: np.ndarray
    pid: np.ndarray

    def select(self, keep: np.ndarray) -> Paths:
        """The points where ``keep`` (a bool mask or index array) holds."""
        return Paths(self.x[keep], self.y[keep], self.h[keep], self.arc[keep], self.pid[keep])

    def side(self, offset: np.ndarray | float, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """Points at ``offset`` px to the left (+1) or right (-1) of the path."""
        return (self.x - sign * offset * np.sin(self.h), self.y + sign * offset * np.cos(self.h))


def trees(
    starts: tuple[np.ndarray, np.ndarray],
    length: tuple[float, float],
    step: float,
    turn: float,
    branch_p: float,
    rng: np.random.Generator,
) -> Paths:
    """Branching paths from each start point (one level of side branches).

    Args:
        starts: (x, y) arrays of start points.
        length: (low, high) of the uniform main-path length in pixels.
        step: distance between points in pixels.
        turn: heading diffusion (see :func:`walk`).
        branch_p: chance of each of up to two side branches.
        rng: random generator.

    Example:
        >>> p = trees((np.array([5.0]), np.array([5.0])), (10.0, 12.0), 1.0, 0.1, 0.5,
        ...           np.random.default_rng(0))
        >>> int(p.pid.min())
        0
    """
    xs, ys, hs, arcs, pids = [], [], [], [], []
    pid = 0
    for x0, y0 in zip(*starts, strict=True):
        main_len = rng.uniform(*length)
        x, y, h = walk(x0, y0, rng.uniform(0, 2 * math.pi), main_len, step, turn, rng)
        paths = [(x, y, h)]
        n_branch = rng.binomial(2, branch_p)
        for _ in range(n_branch):
            i = int(rng.integers(x.size // 4, max(x.size // 4 + 1, 3 * x.size // 4)))
            heading = h[i] + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
            paths.append(
                walk(x[i], y[i], heading, main_len * rng.uniform(0.3, 0.7), step, turn, rng)
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
        return Paths(e, e, e, e, np.zeros(0, np.int64))
    return Paths(*(np.concatenate(v) for v in (xs, ys, hs, arcs, pids)))


def ring(
    cx: np.ndarray,
    cy: np.ndarray,
    ax: np.ndarray,
    ay: np.ndarray,
    ang: np.ndarray,
    spacing: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ~``spacing`` px around ellipses; returns x, y and the outward normal.

    Args:
        cx, cy: ellipse centres in pixels.
        ax, ay: semi-axes in pixels.
        ang: rotation of each ellipse in radians.
        spacing: distance between points in pixels (at least 3 points per ellipse).
        rng: random generator (phase and small jitter).

    Example:
        >>> one = np.ones(1)
        >>> x, y, normal = ring(10 * one, 10 * one, 5 * one, 5 * one, 0 * one, 2.0,
        ...                     np.random.default_rng(0))
        >>> x.size
        16
    """
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

