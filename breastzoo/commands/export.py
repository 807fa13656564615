"""`breastzoo export NAME_OR_RUN_DIR --format savedmodel|tflite|onnx [--quantize fp16|int8]`.

The command over :func:`breastzoo.export.api.export_model`: loads a zoo model by name
(verified), a published version folder, a run folder or a ``.keras`` file, writes the chosen
format, checks it against the Keras model and prints how far apart they are.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from breastzoo.commands.common import console, err_console, friendly, print_json
from breastzoo.export.api import FORMATS, QUANTIZATIONS

# Typer's choices, made from the library's lists so the two cannot drift apart.
ExportFormat = StrEnum("ExportFormat", [(f, f) for f in FORMATS])
Quantize = StrEnum("Quantize", [(q, q) for q in QUANTIZATIONS])


def register(app: typer.Typer) -> None:
    """Add ``breastzoo export`` to the root app."""

    @app.command("export")
    @friendly
    def export(
        name_or_path: Annotated[str, typer.Argument(
            help="Zoo model name, published version folder, run folder or .keras file.")],
        fmt: Annotated[ExportFormat, typer.Option(
            "--format", help="savedmodel (TF Serving), tflite (builtin ops) or onnx.")],
        quantize: Annotated[Quantize | None, typer.Option(
            help="TFLite only: fp16 or int8 weights, or int8_static (int8 convolutions "
                 "calibrated on the training split).")]
        = None,
        out: Annotated[Path | None, typer.Option(
            help="Output file (SavedModel: the version folder). Default: exports/...")]
        = None,
        version: Annotated[int | None, typer.Option(help="Zoo version (default: latest).")]
        = None,
        root: Annotated[str | None, typer.Option(help="Zoo root folder or URL.")] = None,
        data: Annotated[str | None, typer.Option(
            help="Data root of the model's run, if it moved (int8 calibration, check).")]
        = None,
        calibration_images: Annotated[int, typer.Option(
            help="Training-split images that calibrate int8_static.")] = 64,
        check_images: Annotated[int, typer.Option(
            help="Test images compared with the Keras model after export (0: skip).")] = 8,
        force: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    ) -> None:
        """Export a model as a SavedModel, TFLite (builtin ops only) or ONNX file."""
        from breastzoo.export.api import export_model

        with err_console.status(f"Exporting {name_or_path} as {fmt.value}..."):
            result = export_model(
                name_or_path, fmt.value, quantize=quantize.value if quantize else None,
                out=out, version=version, root=root, data=data,
                calibration_images=calibration_images, check_images=check_images,
                force=force,
            )
        if as_json:
            print_json(result)
            return
        label = fmt.value + (f" ({result['quantize']})" if result["quantize"] else "")
        console.print(f"Wrote {label}: {result['path']} ({result['bytes'] / 1e6:.2f} MB)")
        check = result["check"]
        if check:
            line = (f"vs Keras on {check['images']}: max |dp| {check['max_abs_diff']:.2e}, "
                    f"top-1 agreement {check['top1_agreement']:.1%}")
            if "boxes_max_abs_diff" in check:
                line += f", boxes max |d| {check['boxes_max_abs_diff']:.1f} px"
            console.print(line)
