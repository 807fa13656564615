"""Prediction on image files: the library behind ``breastzoo predict`` and the demo.

Find images (:func:`collect_images`), load a model by zoo name or path
(:func:`resolve_model`), decode them as training does (:func:`read_image`) and classify
them with ROI boxes and optional overlays (:func:`predict_images`).

Example:
    >>> from breastzoo.predict import collect_images, predict_images, resolve_model
    >>> model = resolve_model("denet_sanet_100x")  # doctest: +SKIP
    >>> rows = predict_images(model, collect_images([Path("slides/")]))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["collect_images", "predict_images", "read_image", "resolve_model"]


def collect_images(inputs: list[Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in the given folders.

    Raises:
        ValueError: a path that does not exist, or no images at all.

    Example:
        >>> collect_images([Path("/nonexistent")])  # doctest: +SKIP
        ValueError: Image or folder not found. Received: '/nonexistent'
    """
    from breastzoo.data.constants import IMAGE_EXTENSIONS
    from breastzoo.data.files import iter_files

    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out.extend(f for f in iter_files(p) if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"Image or folder not found. Received: {str(p)!r}")
    if not out:
        raise ValueError(
            f"No images found. Received: {', '.join(str(p) for p in inputs)} (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return out


def resolve_model(name_or_path: str, version: int | None = None,
                  root: str | None = None) -> Any:
    """A :class:`breastzoo.zoo.LoadedModel` from a zoo name or a path.

    An existing path loads from disk (verified when it is a version folder); anything else
    is a zoo name, which must be a plain identifier.

    Args:
        name_or_path: zoo name, published version folder, run folder or ``.keras`` file.
        version: zoo version (latest when None); names only.
        root: zoo root (folder or URL); names only.

    Example:
        >>> resolve_model("denet_sanet_100x").class_names[:2]  # doctest: +SKIP
        ['A', 'F']
    """
    from breastzoo.zoo.loaded import load, load_path

    if Path(name_or_path).exists():
        return load_path(name_or_path)
    return load(name_or_path, version, root=root)


def read_image(path: Path) -> Any:
    """uint8 RGB ``[H, W, 3]`` with the training pipeline's decoder (TIFF, 16-bit, gray...).

    Raises:
        ValueError: the file cannot be decoded (named, with the decoder's first line).

    Example:
        >>> read_image(Path("a.png")).dtype  # doctest: +SKIP
        dtype('uint8')
    """
    import numpy as np
    import tensorflow as tf

    from breastzoo.data.pipeline import decode_image

    try:
        return np.asarray(decode_image(str(path)))
    except (tf.errors.OpError, ValueError) as exc:
        raise ValueError(f"Cannot read image {path}: {str(exc).splitlines()[0][:200]}") from None


def predict_images(
    model: Any,
    paths: list[Path],
    *,
    overlay_dir: Path | None = None,
    batch_size: int = 8,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Predict every image; optionally write ROI + attention overlays; return one dict each.

    Args:
        model: a :class:`breastzoo.zoo.LoadedModel`.
        paths: image files.
        overlay_dir: folder for ``<stem>.png`` overlays (``None``: none).
        batch_size: images per model call.
        warn: ``callback(message)`` for size adjustments.
        progress: ``callback(done, total)``.

    Example:
        >>> predict_images(m, [Path("a.png")])[0]["class"]  # doctest: +SKIP
        'F'
    """
    import numpy as np

    from breastzoo import viz

    results: list[dict] = []
    used_names: set[str] = set()
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images, notes = [], []
        for p in chunk:
            image, note = model.fit_image(read_image(p))
            if note and warn:
                warn(f"{p}: {note} ({model.size_policy}, as the model card says)")
            images.append(image)
            notes.append(note)
        out = model.infer(np.stack(images), batch_size=batch_size,
                          compiled=len(paths) >= model.COMPILE_FROM)
        for i, p in enumerate(chunk):
            probs = out["probs"][i]
            boxes = np.asarray(out["boxes"][i])
            row: dict[str, Any] = {
                "image": str(p),
                "class": out["class_names"][i],
                "class_index": int(out["class_index"][i]),
                "probabilities": {n: float(v) for n, v in zip(model.class_names, probs,
                                                              strict=True)},
                "boxes": boxes.astype(int).tolist(),
                "n_rois": int(out["n_rois"][i]),
                "size_note": notes[i],
            }
            if overlay_dir is not None:
                stem = p.stem
                n = 1
                while stem in used_names:  # same file name in two folders
                    n += 1
                    stem = f"{p.stem}-{n}"
                used_names.add(stem)
                attention = model.attention(images[i], boxes) if len(boxes) else None
                row["overlay"] = str(viz.plot_roi_overlay(
                    images[i], boxes, Path(overlay_dir) / f"{stem}.png", attention=attention,
                    title=f"{model.name}: {row['class']} ({float(probs.max()):.2f})"))
            results.append(row)
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return results
