"""`breastzoo predict NAME_OR_PATH IMAGE...`: classes, probabilities and ROIs, with overlays.

The command over :mod:`breastzoo.predict`, where the prediction code lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastzoo.commands.common import console, err_console, friendly, print_json

#: Above this many images a progress bar is shown (on stderr, so --json stays parseable).
PROGRESS_MIN_IMAGES = 8


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
        from breastzoo.predict import collect_images, predict_images, resolve_model

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
