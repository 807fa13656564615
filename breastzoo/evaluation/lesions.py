"""Ground-truth lesion masks of the synthetic testbed: oracle ROI centres and ROI hit rates.

Only the synthetic testbed has masks (``<root>/masks/...``); on real data these functions
report that no masks exist instead of inventing numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES = 32  # lesion points stored per image; k of them are drawn per batch


def load_mask(image_path: str, data_root: str | Path) -> np.ndarray | None:
    """Boolean ``[H, W]`` lesion mask of a testbed image, or ``None`` if there is none."""
    from PIL import Image

    from breastzoo.data.testbed import mask_path

    path = mask_path(image_path, data_root)
    if not Path(path).exists():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def lesion_points(mask: np.ndarray, n: int, key: str) -> np.ndarray:
    """``n`` (y, x) pixels inside the lesion, reproducible for a given ``key``.

    Falls back to the image centre when a mask is empty.
    """
    ys, xs = np.nonzero(mask)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    if len(ys) == 0:
        h, w = mask.shape
        return np.tile([[h // 2, w // 2]], (n, 1)).astype("float32")
    pick = rng.integers(0, len(ys), n)
    return np.stack([ys[pick], xs[pick]], axis=-1).astype("float32")


def attach_lesion_centres(dataset: Any, prepared: Any, config: Any, training: bool) -> Any:
    """Turn ``(images, labels, {"path", ...})`` batches into ``({"images", "centres"}, labels)``.

    Training draws ``config.k`` of each image's stored lesion points at random every time;
    evaluation uses the first ``k``, so it is deterministic.

    Raises:
        ValueError: the data has no lesion masks (``oracle_roi`` is synthetic-only).
    """
    import tensorflow as tf

    paths, points = [], []
    for r in prepared.records:
        mask = load_mask(r.path, prepared.source.root)
        if mask is None:
            raise ValueError(
                "oracle_roi needs ground-truth lesion masks, which only the synthetic testbed "
                f"has. Received: no mask for {r.path}"
            )
        paths.append(r.path)
        points.append(lesion_points(mask, CANDIDATES, r.path))
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(paths), tf.range(len(paths), dtype=tf.int64)
        ),
        default_value=-1,
    )
    all_points = tf.constant(np.stack(points))
    k = config.k

    def attach(images, labels, meta):
        idx = table.lookup(meta["path"])
        pts = tf.gather(all_points, tf.maximum(idx, 0))  # [B, N, 2]
        if training:
            order = tf.argsort(tf.random.uniform(tf.shape(pts)[:2]), axis=1)[:, :k]
            pts = tf.gather(pts, order, batch_dims=1)
        else:
            pts = pts[:, :k]
        return {"images": images, "centres": pts}, labels

    return dataset.map(attach)


def roi_hit_rate(
    boxes: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]
) -> float | None:
    """Fraction of ROI centres that fall inside the lesion mask.

    Args:
        boxes: per image ``[n, 4]`` pixel boxes ``(y0, x0, y1, x1)``.
        masks: per image boolean mask, or ``None`` (image skipped).

    Returns:
        The hit rate, or ``None`` if no image has a mask.

    Example:
        >>> m = np.zeros((10, 10), bool); m[:5] = True
        >>> roi_hit_rate([np.array([[0, 0, 4, 4], [6, 6, 10, 10]])], [m])
        0.5
    """
    hits = total = 0
    for b, m in zip(boxes, masks, strict=True):
        if m is None or len(b) == 0:
            continue
        b = np.asarray(b, dtype=float)
        cy = np.clip(((b[:, 0] + b[:, 2]) / 2).astype(int), 0, m.shape[0] - 1)
        cx = np.clip(((b[:, 1] + b[:, 3]) / 2).astype(int), 0, m.shape[1] - 1)
        hits += int(m[cy, cx].sum())
        total += len(b)
    return hits / total if total else None
