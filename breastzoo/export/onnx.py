"""ONNX export with tf2onnx from the serving ``tf.function`` (explicit input signature), run
in onnxruntime.

The converted function is the builtin-op variant of the serving contract
(:mod:`breastzoo.export.serving`): the same graph TFLite gets, which keeps the fixed-seed
DeNet location draws a constant table rather than a TF random op ONNX has no equivalent of.
Graph input ``images`` (uint8 ``[N, H, W, 3]``); outputs ``probabilities``, ``class`` and (models
with regions: ROIs, the hybrid's grid) ``boxes``, ``n_rois``. Every ``fit --model`` whose spec
serves with builtin ops converts, the hybrid and bagging ensembles included
(:mod:`breastzoo.models.specs`).

Example:
    >>> from breastzoo.configs import preset
    >>> from breastzoo.models.factory import build_model
    >>> blob = convert_onnx(build_model(preset("tiny"), ["a", "b"]))  # doctest: +SKIP
    >>> OnnxRunner(blob)(np.zeros((1, 92, 140, 3), "uint8"))["class"]  # doctest: +SKIP
    array([0], dtype=int32)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = ["DEFAULT_OPSET", "OnnxRunner", "convert_onnx", "write_onnx"]

#: ONNX opset: 17 is supported by tf2onnx 1.17 and every recent onnxruntime.
DEFAULT_OPSET = 17


def convert_onnx(
    model: keras.Model, *, opset: int = DEFAULT_OPSET, noise_rows: int | None = None
) -> bytes:
    """Convert a breastzoo model to an ONNX model (serialized ``ModelProto``).

    Args:
        model: a breastzoo model (see :func:`breastzoo.export.serving.serving_outputs`).
        opset: ONNX opset version.
        noise_rows: rows of DeNet's location-noise table (default
            :data:`breastzoo.export.serving.DEFAULT_NOISE_ROWS`).

    Returns:
        The ``.onnx`` bytes.

    Raises:
        ValueError: a model that cannot be served with builtin ops (``oracle_roi``,
            ``random_roi``) or a conversion failure.

    Example:
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> len(convert_onnx(build_model(preset("tiny"), ["a", "b"]))) > 0  # doctest: +SKIP
        True
    """
    import tf2onnx

    from breastzoo.export.serving import DEFAULT_NOISE_ROWS, input_signature, serving_function

    # Built outside the try: an unsupported model is refused with serving's own message.
    fn = serving_function(model, builtin_ops=True, noise_rows=noise_rows or DEFAULT_NOISE_ROWS)
    try:
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=input_signature(model), opset=int(opset)
        )
    except Exception as exc:  # tf2onnx raises assorted errors; report them as one
        raise ValueError(
            f"ONNX conversion failed ({type(exc).__name__}: {str(exc)[:300]}). "
            f"Received: model={type(model).__name__}, opset={opset}"
        ) from exc
    return proto.SerializeToString()


def write_onnx(model: keras.Model, path: str | Path, *, opset: int = DEFAULT_OPSET) -> Path:
    """Convert (see :func:`convert_onnx`) and write the ``.onnx`` file atomically.

    Example:
        >>> write_onnx(model, "model.onnx")  # doctest: +SKIP
    """
    from breastzoo.io import atomic_write_bytes

    return atomic_write_bytes(path, convert_onnx(model, opset=opset))


class OnnxRunner:
    """Run a breastzoo ``.onnx`` in onnxruntime (CPU), outputs by name.

    Args:
        model: ``.onnx`` bytes or path.
        num_threads: intra-op threads (``None``: onnxruntime's default).

    Example:
        >>> OnnxRunner("model.onnx", num_threads=2)(images)["probabilities"]  # doctest: +SKIP
    """

    def __init__(self, model: bytes | str | Path, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        if not isinstance(model, bytes | bytearray):
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(
                    f"No ONNX model at {path}. Received: model={str(path)!r}"
                )
            model = str(path)
        self.session: Any = ort.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` uint8 ``[N, H, W, 3]`` -> the contract's outputs as numpy arrays."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"ONNX models take uint8 images. Received: dtype={images.dtype}")
        values = self.session.run(self.output_names, {self.input_name: images})
        return dict(zip(self.output_names, values, strict=True))
