"""Export a model to SavedModel, TFLite or ONNX and check it against Keras.

The library behind ``breastzoo export`` (and the demo's TFLite step): loads a zoo model by
name (verified), a published version folder, a run folder or a ``.keras`` file, writes the
chosen format, then runs the export next to the Keras model on a few test-split images of the
model's run (random images when the data is not at hand) and reports how far apart they are.

Example:
    >>> from breastzoo.export.api import default_out
    >>> default_out("denet_sanet_100x", "onnx", None, 1).as_posix()
    'exports/denet_sanet_100x.onnx'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["EXPORTS_DIR", "FORMATS", "QUANTIZATIONS", "default_out", "export_model"]

#: Default output folder (relative to the working directory).
EXPORTS_DIR = Path("exports")
#: Export formats: TF Serving SavedModel, TFLite (builtin ops only), ONNX.
FORMATS = ("savedmodel", "tflite", "onnx")
#: TFLite quantizations: fp16 or int8 weights, or int8 convolutions calibrated on the
#: training split (``int8_static``).
QUANTIZATIONS = ("fp16", "int8", "int8_static")


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
    """Export a model and check it against Keras; the library behind ``breastzoo export``.

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
    from breastzoo.predict import resolve_model

    one_of("format", fmt, FORMATS)
    if quantize is not None:
        one_of("quantize", quantize, QUANTIZATIONS)
        if fmt != "tflite":
            raise ValueError(
                f"--quantize applies to TFLite only. Received: format={fmt!r}, "
                f"quantize={quantize!r}"
            )
    positive_int("calibration_images", calibration_images)
    if check_images < 0:
        raise ValueError(f"check_images must be >= 0. Received: check_images={check_images}")
    loaded = resolve_model(name_or_path, version, root)
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
