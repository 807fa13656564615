"""`breastzoo predict NAME_OR_PATH IMAGE...`: classes, probabilities and ROIs, with overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from breastzoo.commands.common import console, err_console, friendly, print_json

#: Above this many images a progress bar is shown (on stderr, so --json stays parseable).
PROGRESS_MIN_IMAGES = 8


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


def resolve_model(name_or_path: str, version: int | None, root: str | None) -> Any:
    """An existing path loads from disk (verified when it is a version folder); anything else
    is a zoo name, which must be a plain identifier."""
    from breastzoo.zoo.loaded import load, load_path

    if Path(name_or_path).exists():
        return load_path(name_or_path)
    return load(name_or_path, version, root=root)


def read_image(path: Path) -> Any:
    """uint8 RGB ``[H, W, 3]`` with the training pipeline's decoder (TIFF, 16-bit, gray...)."""
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
    warn: Any = None,
    progress: Any = None,
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


def register(app: typer.Typer) -> None:
    """Add ``breastzoo predict`` to the root app."""

    @app.command()
    @friendly
    def predict(
        name_or_path: Annotated[str, typer.Argument(
            help="Zoo name (e.g. denet_sanet_100x), a published version folder, a run folder "
                 "or a .keras file.")],
        images: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        overlay: Annotated[Path | None, typer.Option(
            help="Write <image>.png overlays (ROIs + SaNet attention) into this folder.")]
        = None,
        version: Annotated[int | None, typer.Option(help="Zoo version (default: latest).")]
        = None,
        root: Annotated[str | None, typer.Option(help="Zoo folder or URL.")] = None,
        batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 8,
    ) -> None:
        """Classify images: class, probabilities and ROI boxes per image."""
        from rich.progress import Progress
        from rich.table import Table

        from breastzoo.checks import positive_int

        positive_int("batch_size", batch_size)
        paths = collect_images(images)
        model = resolve_model(name_or_path, version, root)

        def warn(msg: str) -> None:
            err_console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

        with Progress(console=err_console, transient=True,
                      disable=len(paths) < PROGRESS_MIN_IMAGES) as bar:
            task = bar.add_task(f"predicting with {model.name}", total=len(paths))
            results = predict_images(
                model, paths, overlay_dir=overlay, batch_size=batch_size, warn=warn,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        if as_json:
            print_json({"model": model.name, "version": model.version,
                        "class_names": model.class_names, "images": results})
            return
        table = Table(title=f"{model.name}" + (f" v{model.version}" if model.version else ""))
        for col in ("image", "class", "p", "ROIs (y0,x0,y1,x1)"):
            table.add_column(col)
        for r in results:
            table.add_row(Path(r["image"]).name, r["class"],
                          f"{r['probabilities'][r['class']]:.3f}",
                          " ".join(f"({b[0]},{b[1]},{b[2]},{b[3]})" for b in r["boxes"]) or "-")
        console.print(table)
        if overlay is not None:
            console.print(f"overlays: {overlay}/", highlight=False)
