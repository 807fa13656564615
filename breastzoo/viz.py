"""Plots for run folders and model cards: confusion matrix, ROC, ROI overlays, training history.

Every function writes one PNG atomically (a temporary file in the target folder, then
``os.replace``), so a crash or a concurrent reader never sees a half-written image, and returns
the path. Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly: no
pyplot, no global backend switch, no figure leaks, safe in threads and on headless machines.

Example:
    >>> import numpy as np, tempfile, os
    >>> out = plot_confusion_matrix([[3, 1], [0, 4]], ["benign", "malignant"],
    ...                             os.path.join(tempfile.mkdtemp(), "cm.png"))
    >>> out.stat().st_size > 0
    True
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "attention_canvas",
    "new_figure",
    "plot_confusion_matrix",
    "plot_history",
    "plot_roc",
    "plot_roi_overlay",
    "save_figure",
]

_DPI = 110


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure on its own Agg canvas (no pyplot state), at the module's resolution.

    Example:
        >>> new_figure((4.0, 3.0)).get_size_inches().tolist()
        [4.0, 3.0]
    """
    fig = Figure(figsize=figsize, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically; return the path.

    Example:
        >>> save_figure(new_figure((2.0, 2.0)), "out/empty.png")  # doctest: +SKIP
        PosixPath('out/empty.png')
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", bbox_inches="tight")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def plot_confusion_matrix(
    cm: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Confusion matrix heat map (rows = true class), as in paper 000 Fig. 4.

    Args:
        cm: ``[C, C]`` counts, rows true, columns predicted.
        class_names: ``C`` names.
        path: output PNG.
        normalize: show row percentages (empty rows stay 0) instead of counts.
        title: figure title.

    Returns:
        The written path.

    Raises:
        ValueError: ``cm`` not square or not matching ``class_names``.

    Example:
        >>> import tempfile, os
        >>> p = plot_confusion_matrix([[1]], ["a"], os.path.join(tempfile.mkdtemp(), "c.png"))
    """
    m = np.asarray(cm, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(class_names):
        raise ValueError(
            "cm must be [C, C] with C == len(class_names). "
            f"Received: cm.shape={m.shape}, len(class_names)={len(class_names)}"
        )
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        shown = np.divide(100.0 * m, rows, out=np.zeros_like(m), where=rows > 0)
    else:
        shown = m
    n = len(class_names)
    size = max(3.5, 0.6 * n + 2.0)
    fig = new_figure((size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=100.0 if normalize else None)
    fig.colorbar(
        image, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if normalize else ""
    )
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = (100.0 if normalize else max(shown.max(), 1.0)) / 2.0
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.1f}" if normalize else f"{int(round(shown[i, j]))}"
            color = "white" if shown[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    ax.set_title(title or ("confusion matrix (%)" if normalize else "confusion matrix"))
    return save_figure(fig, path)


def plot_roc(metrics_dict: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """One-vs-rest ROC curves from :func:`breastzoo.evaluation.evaluate_predictions` output.

    Classes without a curve (absent from the test labels) are listed in the legend as n/a.

    Args:
        metrics_dict: a dict with ``roc`` (per class ``fpr``/``tpr``), ``auc`` and optionally
            ``class_names``.
        path: output PNG.

    Returns:
        The written path.

    Raises:
        ValueError: ``metrics_dict`` has no ``roc`` entry.

    Example:
        >>> import tempfile, os
        >>> m = {"roc": {"a": {"fpr": [0, 1], "tpr": [0, 1]}}, "auc": {"per_class": {"a": 0.5}}}
        >>> p = plot_roc(m, os.path.join(tempfile.mkdtemp(), "roc.png"))
    """
    roc = metrics_dict.get("roc")
    if not isinstance(roc, Mapping):
        raise ValueError(
            f"metrics_dict needs a 'roc' mapping. Received keys: {sorted(metrics_dict)}"
        )
    auc = metrics_dict.get("auc") or {}
    per_class_auc = auc.get("per_class", {}) if isinstance(auc, Mapping) else {}
    names = list(metrics_dict.get("class_names") or roc.keys())
    fig = new_figure((5.5, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    for name in names:
        curve = roc.get(name) or {}
        value = per_class_auc.get(name)
        if curve.get("fpr") is None or curve.get("tpr") is None:
            ax.plot([], [], label=f"{name} (n/a: not in test set)")
            continue
        label = f"{name} (AUC {value:.3f})" if value is not None else str(name)
        ax.plot(curve["fpr"], curve["tpr"], linewidth=1.4, label=label)
    macro = auc.get("macro") if isinstance(auc, Mapping) else None
    ax.set_title("ROC (one-vs-rest)" + (f", macro AUC {macro:.3f}" if macro is not None else ""))
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_roi_overlay(
    image_uint8: np.ndarray,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    path: str | os.PathLike[str],
    attention: np.ndarray | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """The image with DeNet's ROI boxes drawn on it, and optionally a soft-attention heat map.

    Args:
        image_uint8: ``[H, W, 3]`` or ``[H, W]`` uint8 image.
        boxes: ``[K, 4]`` boxes ``(y0, x0, y1, x1)`` in pixels, in selection order (numbered).
        path: output PNG.
        attention: optional ``[h, w]`` float mask in [0, 1] (e.g. ``SaNet.attention_mask`` of a
            patch, or masks pasted into an image-sized canvas), shown beside the image.
        title: figure title.
        labels: optional one text per box (e.g. the predicted class of the patch).

    Returns:
        The written path.

    Raises:
        ValueError: bad image, box or label shapes, or attention outside [0, 1].

    Example:
        >>> import numpy as np, tempfile, os
        >>> img = np.zeros((46, 70, 3), np.uint8)
        >>> p = plot_roi_overlay(img, [(5, 5, 25, 25)], os.path.join(tempfile.mkdtemp(), "r.png"))
    """
    image = np.asarray(image_uint8)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"image must be [H, W] or [H, W, 3]. Received: shape={image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8. Received: dtype={image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    box_arr = np.asarray(boxes, dtype=np.float64)
    if box_arr.size == 0:
        box_arr = box_arr.reshape(0, 4)
    if box_arr.ndim != 2 or box_arr.shape[1] != 4:
        raise ValueError(f"boxes must be [K, 4] (y0, x0, y1, x1). Received: shape={box_arr.shape}")
    if labels is not None and len(labels) != len(box_arr):
        raise ValueError(
            f"labels must give one text per box. Received: {len(labels)} labels, "
            f"{len(box_arr)} boxes"
        )
    mask = None
    if attention is not None:
        mask = np.asarray(attention, dtype=np.float64)
        if mask.ndim != 2:
            raise ValueError(f"attention must be [h, w]. Received: shape={mask.shape}")
        if mask.size and (np.nanmin(mask) < -1e-6 or np.nanmax(mask) > 1 + 1e-6):
            raise ValueError(
                "attention must lie in [0, 1]. "
                f"Received: min={np.nanmin(mask):.3f}, max={np.nanmax(mask):.3f}"
            )

    h, w = image.shape[:2]
    panel = 4.5 * w / max(h, 1)
    fig = new_figure((panel * (2 if mask is not None else 1) + 0.8, 4.8))
    axes = fig.subplots(1, 2 if mask is not None else 1, squeeze=False)[0]
    ax = axes[0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    for k, (y0, x0, y1, x1) in enumerate(box_arr):
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", linewidth=1.6)
        )
        text = f"{k + 1}" + (f": {labels[k]}" if labels is not None else "")
        ax.text(
            x0 + 2,
            y0 + 2,
            text,
            color="black",
            fontsize=7,
            va="top",
            bbox={"facecolor": "yellow", "alpha": 0.8, "pad": 1, "linewidth": 0},
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(f"ROIs ({len(box_arr)})", fontsize=9)
    if mask is not None:
        heat = axes[1].imshow(mask, cmap="jet", vmin=0.0, vmax=1.0, interpolation="bilinear")
        axes[1].set_axis_off()
        axes[1].set_title("soft attention M(x)", fontsize=9)
        fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_history(history_dict: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Training curves: one panel per metric, ``x`` and ``val_x`` on the same panel.

    Args:
        history_dict: ``keras.callbacks.History.history``-like mapping name -> per-epoch values
            (``None``/NaN entries are skipped).
        path: output PNG.

    Returns:
        The written path.

    Raises:
        ValueError: an empty history.

    Example:
        >>> import tempfile, os
        >>> h = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}
        >>> p = plot_history(h, os.path.join(tempfile.mkdtemp(), "h.png"))
    """
    series = {k: list(v) for k, v in history_dict.items() if isinstance(v, Sequence | np.ndarray)}
    if not series or not any(len(v) for v in series.values()):
        raise ValueError(
            f"history_dict has no values to plot. Received keys: {sorted(history_dict)}"
        )
    bases: list[str] = []
    for key in series:
        base = key[4:] if key.startswith("val_") else key
        if base not in bases:
            bases.append(base)
    cols = min(3, len(bases))
    rows = -(-len(bases) // cols)
    fig = new_figure((4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, base in zip(axes, bases, strict=False):
        for key, style in ((base, "-"), (f"val_{base}", "--")):
            if key not in series:
                continue
            y = np.asarray([np.nan if v is None else v for v in series[key]], dtype=np.float64)
            x = np.arange(1, len(y) + 1)
            ok = np.isfinite(y)
            ax.plot(
                x[ok], y[ok], style, marker="o" if ok.sum() < 30 else None, markersize=3, label=key
            )
        ax.set_title(base)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(bases) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)


def attention_canvas(model: Any, image: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
    """SaNet's attention mask of every ROI pasted into an image-sized canvas (0 elsewhere).

    Args:
        model: a Keras model whose ``classifier`` has ``attention_mask`` (DeNet+SaNet);
            others give None.
        image: uint8 ``[H, W, 3]``, the model's input size.
        boxes: int ``[k, 4]`` ROI boxes ``(y0, x0, y1, x1)`` in image pixels.

    Returns:
        float32 ``[H, W]`` (the largest mask value where ROIs overlap), or None for models
        without soft attention, no boxes, or an image that is not the model's size.

    Example:
        >>> attention_canvas(object(), np.zeros((4, 4, 3), "uint8"), np.zeros((0, 4))) is None
        True
    """
    classifier = getattr(model, "classifier", None)
    if classifier is None or not hasattr(classifier, "attention_mask") or len(boxes) == 0:
        return None
    h, w = image.shape[:2]
    canvas = np.zeros((h, w), "float32")
    patches = []
    for y0, x0, y1, x1 in boxes:
        patch = image[max(y0, 0):y1, max(x0, 0):x1]
        if patch.shape[:2] != (y1 - y0, x1 - x0):
            return None  # image differs in size from the model's contract
        patches.append(patch)
    from breastzoo.models.preprocessing import to_unit_range

    x = to_unit_range(np.stack(patches), getattr(model, "preprocess", None))
    masks = np.asarray(classifier.attention_mask(x, upsample=True))
    for (y0, x0, y1, x1), m in zip(boxes, masks, strict=True):
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], m)
    return canvas
