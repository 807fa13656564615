"""`breastzoo export NAME_OR_RUN_DIR --format savedmodel|tflite|onnx [--quantize fp16|int8]`.

Loads a zoo model by name (verified), a published version folder, a run folder or a
``.keras`` file, writes the chosen format, then runs the export next to the Keras model on a
few test-split images of the model's run (random images when the data is not at hand) and
prints how far apart they are.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from breastzoo.commands.common import console, err_console, friendly, print_json

#: Default output folder (relative to the working directory).
EXPORTS_DIR = Path("exports")


class ExportFormat(StrEnum):
    savedmodel = "savedmodel"
    tflite = "tflite"
    onnx = "onnx"


class Quantize(StrEnum):
    fp16 = "fp16"
    int8 = "int8"
    int8_static = "int8_static"


def default_out(name: str, fmt: str, quantize: str | None, version: int | None) -> Path:
    """``exports/<name>/<version>`` (SavedModel: a TF Serving base path with one version) or
    ``exports/<name>[_fp16|_int8].tflite`` / ``exports/<name>.onnx``.

    Example:
        >>> default_out("denet_sanet_100x", "tflite", "int8", 1).as_posix()
        'exports/denet_sanet_100x_int8.tflite'
    """
    if fmt == "savedmodel":
        return EXPORTS_DIR / name / str(version or 1)
    suffix = f"_{quantize}" if quantize else ""
    return EXPORTS_DIR / f"{name}{suffix}.{fmt}"


def _load(name_or_path: str, version: int | None, root: str | None) -> Any:
    from breastzoo.commands.predict import resolve_model

    return resolve_model(name_or_path, version, root)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    from breastzoo.export.savedmodel import SAVEDMODEL_ENTRIES

    total = 0
    for name in SAVEDMODEL_ENTRIES:
        entry = path / name
        if entry.is_file():
            total += entry.stat().st_size
        elif entry.is_dir():
            total += sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
    return total


def _check_images(loaded: Any, data: str | None, n: int) -> tuple[Any, str]:
    """Up to ``n`` test-split images of the model's run, else seeded random images."""
    import numpy as np

    from breastzoo.export.parity import run_images

    try:
        images, _ = run_images(loaded.path, "test", limit=n, data=data)
        if len(images):
            return images, f"{len(images)} test-split images"
    except (ValueError, FileNotFoundError, KeyError):
        pass  # a bare .keras file or moved data: fall back to random pixels
    w, h = loaded.image_size
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), f"{n} random images"


def export_model(
    name_or_path: str,
    fmt: str,
    *,
    quantize: str | None = None,
    out: Path | None = None,
    version: int | None = None,
    root: str | None = None,
    data: str | None = None,
    calibration_images: int = 64,
    check_images: int = 8,
    force: bool = False,
) -> dict:
    """Export a model and check it against Keras; the importable core of ``breastzoo export``.

    Args:
        name_or_path: zoo name, version folder, run folder or ``.keras`` file.
        fmt: ``"savedmodel"``, ``"tflite"`` or ``"onnx"``.
        quantize: ``None``, ``"fp16"``, ``"int8"`` or ``"int8_static"`` (TFLite only).
        out: output path (default :func:`default_out`).
        version: zoo version (latest when ``None``).
        root: zoo root (folder or URL).
        data: data root override for the run's images (calibration and check).
        calibration_images: training-split images calibrating ``int8_static``.
        check_images: test images the export is compared with Keras on (0: no check).
        force: replace an existing output.

    Returns:
        ``{"name", "format", "quantize", "path", "bytes", "check"}``; ``check`` holds
        :func:`breastzoo.export.parity.compare_outputs` plus the images it used.

    Raises:
        ValueError: bad format/quantization pair, int8_static without a run to calibrate on, a
            model that cannot be exported.
        FileExistsError: ``out`` exists and ``force`` is False.

    Example:
        >>> export_model("denet_sanet_100x", "tflite", quantize="int8")  # doctest: +SKIP
    """
    from breastzoo.checks import one_of, positive_int

    one_of("format", fmt, tuple(ExportFormat))
    if quantize is not None:
        one_of("quantize", quantize, tuple(Quantize))
        if fmt != "tflite":
            raise ValueError(
                f"--quantize applies to TFLite only. Received: format={fmt!r}, "
                f"quantize={quantize!r}"
            )
    positive_int("calibration_images", calibration_images)
    if check_images < 0:
        raise ValueError(f"check_images must be >= 0. Received: check_images={check_images}")
    loaded = _load(name_or_path, version, root)
    model = loaded.keras_model
    out = Path(out) if out is not None else default_out(loaded.name, fmt, quantize,
                                                         loaded.version)
    if fmt != "savedmodel" and out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it. Received: out={out}")

    from breastzoo.export.parity import compare_outputs, keras_runner, predict_batched

    if fmt == "savedmodel":
        from breastzoo.export.savedmodel import load_signature, write_savedmodel

        write_savedmodel(model, out, overwrite=force)
        signature = load_signature(out)

        def runner(x: Any) -> dict:
            import tensorflow as tf

            return {k: v.numpy() for k, v in signature(images=tf.constant(x)).items()}
    elif fmt == "tflite":
        from breastzoo.export.tflite import TFLiteRunner, write_tflite

        representative = None
        if quantize == "int8_static":
            from breastzoo.export.parity import run_images

            try:
                representative, _ = run_images(loaded.path, "train",
                                               limit=calibration_images, data=data)
            except ValueError as exc:
                raise ValueError(
                    "int8_static calibrates on training-split images of the model's run: pass "
                    f"a zoo name, version folder or run folder whose data is at hand ({exc})"
                ) from None
        write_tflite(model, out, quantize=quantize, representative=representative)
        runner = TFLiteRunner(out)
    else:
        from breastzoo.export.onnx import OnnxRunner, write_onnx

        write_onnx(model, out)
        runner = OnnxRunner(out)

    result: dict[str, Any] = {
        "name": loaded.name, "format": fmt, "quantize": quantize, "path": str(out),
        "bytes": _size(out), "check": None,
    }
    if check_images:
        images, what = _check_images(loaded, data, check_images)
        ref = predict_batched(keras_runner(model), images, batch_size=8)
        got = predict_batched(runner, images, batch_size=8)
        result["check"] = {"images": what, **compare_outputs(ref, got)}
    return result


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
