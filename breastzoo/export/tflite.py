"""TFLite / LiteRT export with builtin ops only, fp32, fp16 or int8, run in ai_edge_litert.

Keras' own LiteRT exporter quietly adds ``SELECT_TF_OPS`` (Flex), which an edge runtime
without the Flex delegate cannot run; here the converter's ``target_spec.supported_ops`` is
set explicitly to builtins, and the traced function is the builtin-op variant of the
serving contract (:mod:`breastzoo.export.serving`), so conversion fails loudly rather than
shipping a Flex op.

Quantization:

* ``None``: float32 weights and activations.
* ``"fp16"``: float16 weights (dequantised at load), float32 compute; about half the size.
* ``"int8"``: int8 weights (dynamic-range quantization): the runtime quantizes activations
  per call for the convolution and dense kernels. On the demo models it agreed with Keras on
  95/95 (Gaussian policy) and 95/96 (grid policy) test images (docs/export.md).
* ``"int8_static"``: the patch classifier's convolutions (the hybrid: both branches'; an
  ensemble: every member's) run fully in int8, weights and activations, with activation
  ranges calibrated on a representative set of training-split images (``representative``);
  everything else (DeNet with its context network, crop geometry, resizes, the vote) stays
  float32 builtins:
  quantizing those too broke the model. On the demo model (a weak 8-class model
  with many near-ties) it agreed with Keras on 82-85% of test images, below the 98% target,
  which is why ``"int8"`` is the dynamic-range variant.

The image input stays uint8 and the outputs stay float32/int32, so quantized and float models
are used the same way.

The signature ``serving_default`` keeps the contract's names: ``images`` in; ``probabilities``,
``class`` and (ROI models) ``boxes``, ``n_rois`` out.

Example:
    >>> from breastzoo.configs import preset
    >>> from breastzoo.models.factory import build_model
    >>> blob = convert_tflite(build_model(preset("tiny"), ["a", "b"]))  # doctest: +SKIP
    >>> TFLiteRunner(blob)(np.zeros((1, 92, 140, 3), "uint8"))["class"]  # doctest: +SKIP
    array([0], dtype=int32)
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = [
    "QUANTIZATIONS",
    "TFLiteRunner",
    "convert_tflite",
    "flex_ops",
    "tflite_operators",
    "tflite_ops",
    "write_tflite",
]

QUANTIZATIONS = ("fp16", "int8", "int8_static")
SIGNATURE_KEY = "serving_default"


def convert_tflite(
    model: keras.Model,
    *,
    quantize: str | None = None,
    representative: Iterable[np.ndarray] | None = None,
    noise_rows: int | None = None,
) -> bytes:
    """Convert a breastzoo model to a builtin-ops-only TFLite flatbuffer.

    Args:
        model: a breastzoo model (see :func:`breastzoo.export.serving.serving_outputs`).
        quantize: ``None`` (fp32), ``"fp16"``, ``"int8"`` (int8 weights, dynamic range) or
            ``"int8_static"`` (int8 weights and activations of the classifier's convolutions,
            calibrated on ``representative``).
        representative: for ``"int8_static"``: uint8 images ``[H, W, 3]`` or batches
            ``[N, H, W, 3]`` from the training split (a few dozen are enough); required.
        noise_rows: rows of DeNet's location-noise table (default
            :data:`breastzoo.export.serving.DEFAULT_NOISE_ROWS`).

    Returns:
        The ``.tflite`` bytes.

    Raises:
        ValueError: unknown ``quantize``, ``"int8_static"`` without representative images, a
            model that cannot be served, or a graph that needs non-builtin ops.

    Example:
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> len(convert_tflite(build_model(preset("tiny"), ["a", "b"]))) > 0  # doctest: +SKIP
        True
    """
    import tensorflow as tf

    from breastzoo.export.savedmodel import write_savedmodel
    from breastzoo.export.serving import DEFAULT_NOISE_ROWS

    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization. Received: quantize={quantize!r}; expected one of "
            f"{', '.join(QUANTIZATIONS)} or None"
        )
    samples: list[np.ndarray] = []
    if quantize == "int8_static":
        samples = _representative_samples(representative)
    staging = Path(tempfile.mkdtemp(prefix="breastzoo-tflite-"))
    try:
        # Through a SavedModel: the converter then keeps the signature and its names
        # (from_concrete_functions writes a model without a signature).
        write_savedmodel(model, staging / "savedmodel", builtin_ops=True,
                         noise_rows=noise_rows or DEFAULT_NOISE_ROWS)
        return _convert(tf, staging / "savedmodel", model, quantize, samples)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _convert(tf: Any, saved: Path, model: keras.Model, quantize: str | None,
             samples: list[np.ndarray]) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE_KEY])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        # Dynamic range: int8 weights; the runtime quantizes activations per call.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8_static":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # int8 kernels where they exist; the rest stay float builtins (never Flex).
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]

        def gen() -> Iterable[dict[str, np.ndarray]]:
            for image in samples:
                yield {"images": image[None]}

        converter.representative_dataset = gen
    try:
        if quantize == "int8_static":
            blob = _quantize_classifier_only(converter, model)
        else:
            blob = converter.convert()
    except Exception as exc:  # ConverterError: name the ops, not a page of MLIR
        text = str(exc)
        hint = next((line for line in text.splitlines() if "ops:" in line), text[-500:])
        raise ValueError(
            f"TFLite conversion with builtin ops only failed ({hint.strip()}). "
            f"Received: model={type(model).__name__}, quantize={quantize!r}"
        ) from exc
    bad = flex_ops(blob)
    if bad:  # defensive: the target spec above should make this impossible
        raise ValueError(f"TFLite model needs non-builtin ops. Received: ops={sorted(bad)}")
    return blob


#: Op types quantized to int8: the patch classifier's convolution trunk, where the time goes.
INT8_OP_TYPES = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MUL", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "RESIZE_BILINEAR", "RELU", "PAD", "CONCATENATION",
})


#: The sub-networks whose convolutions ``int8_static`` quantizes: the patch classifier
#: (DeNet + SaNet, the baselines) or the hybrid's two Inception-SEP branches.
CONV_NETWORKS = ("classifier", "global_branch", "local_branch")


def _classifier_scopes(model: keras.Model) -> set[str]:
    from breastzoo.models.specs import members_of

    scopes: set[str] = set()
    for member in members_of(model):  # an ensemble: every member's networks
        for attr in CONV_NETWORKS:
            network = getattr(member, attr, None)
            if isinstance(network, keras.layers.Layer):
                scopes |= {layer.name for layer in network._flatten_layers(include_self=False)}
    return scopes


def _in_scopes(tensor_name: str, scopes: set[str]) -> bool:
    """Whether a TFLite tensor name (``scope_1/op;scope_1/other``) comes from a layer in
    ``scopes`` (TF appends ``_<n>`` to a name scope each time the layer is called; inside a
    ``tf.while_loop`` body the names start with ``while/``)."""
    for part in tensor_name.split(";"):
        head = re.sub(r"^(while(_\d+)?/)+", "", part).split("/", 1)[0]
        base, _, suffix = head.rpartition("_")
        if head in scopes or (suffix.isdigit() and base in scopes):
            return True
    return False


def _quantize_classifier_only(converter: Any, model: keras.Model) -> bytes:
    """Calibrate the whole graph, then quantize only the patch classifier's convolutions.

    Full-integer quantization of everything breaks the model: DeNet's recurrent state and
    location arithmetic, the ROI geometry and the vote's divisions lose what they need
    (quantised probabilities no longer sum to 1; an int8 DIV by a zero-point fails). The
    convolutions hold nearly all weights and time, so they alone go int8 (calibrated on the
    representative set); every other op is denylisted and stays float32.
    """
    from tensorflow.lite.python import convert

    # The public QuantizationDebugger does exactly this (calibrate, then mlir_quantize with
    # a denylist) but also builds and runs an instrumented debug model first.
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    scopes = _classifier_scopes(model)
    denylisted: list[str] = []
    # Every subgraph: DeNet's grid walk (SaNet included) is the body of a WHILE loop.
    for op in tflite_operators(calibrated):
        names = op["output_names"]
        if op["op_name"] in INT8_OP_TYPES and all(_in_scopes(n, scopes) for n in names):
            continue
        denylisted.extend(n for n in names if n)
    return convert.mlir_quantize(
        calibrated,
        disable_per_channel=converter._experimental_disable_per_channel,
        fully_quantize=False,
        enable_numeric_verify=False,
        denylisted_nodes=denylisted,
    )


def _representative_samples(representative: Iterable[np.ndarray] | None) -> list[np.ndarray]:
    if representative is None:
        raise ValueError(
            "int8_static quantization needs representative images from the training split. "
            "Received: representative=None"
        )
    samples: list[np.ndarray] = []
    for item in representative:
        arr = np.asarray(item)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(
                f"Representative images must be [H, W, 3] or [N, H, W, 3]. "
                f"Received: shape={arr.shape}"
            )
        samples.extend(arr.astype("uint8"))
    if not samples:
        raise ValueError("int8_static quantization needs at least one representative image. "
                         "Received: representative=[]")
    return samples


def write_tflite(
    model: keras.Model,
    path: str | Path,
    *,
    quantize: str | None = None,
    representative: Iterable[np.ndarray] | None = None,
) -> Path:
    """Convert (see :func:`convert_tflite`) and write the ``.tflite`` file atomically.

    Example:
        >>> write_tflite(model, "model_int8.tflite", quantize="int8_static",
        ...              representative=train_images)  # doctest: +SKIP
    """
    from breastzoo.io import atomic_write_bytes

    return atomic_write_bytes(path, convert_tflite(model, quantize=quantize,
                                                   representative=representative))


def _interpreter(model: bytes | str | Path, num_threads: int | None = None) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes | bytearray):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"No TFLite model at {path}. Received: model={str(path)!r}")
    return Interpreter(model_path=str(path), num_threads=num_threads)


def _model_bytes(model: bytes | str | Path) -> bytes:
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"No TFLite model at {path}. Received: model={str(path)!r}")
    return path.read_bytes()


def tflite_operators(model: bytes | str | Path) -> list[dict[str, Any]]:
    """Every operator of a TFLite model, in all its subgraphs, read from the flatbuffer.

    The interpreter's op list covers the main subgraph only, so the body of a ``WHILE``
    loop (DeNet's grid walk: SaNet and the LSTM step) would be invisible to it.

    Returns:
        One dict per operator, subgraph by subgraph in execution order: ``"subgraph"``
        (index; 0 is the main graph), ``"op_name"`` (a builtin's upper-case name such as
        ``CONV_2D``, else the custom code, e.g. ``FlexBitwiseAnd``), ``"inputs"`` and
        ``"outputs"`` (tensor indices in that subgraph, -1 for an omitted input) and
        ``"output_names"``.

    Example:
        >>> [op["op_name"] for op in tflite_operators("model.tflite")][:2]  # doctest: +SKIP
        ['CAST', 'MUL']
    """
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(_model_bytes(model), 0)
    builtin = {value: name for name, value in vars(schema.BuiltinOperator).items()
               if not name.startswith("_")}
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        # Codes past 127 live in builtin_code; older files keep deprecated_builtin_code.
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        if number == schema.BuiltinOperator.CUSTOM and custom:
            codes.append(custom.decode())
        else:
            codes.append(builtin.get(number, f"BUILTIN_{number}"))
    operators = []
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        names = [(graph.Tensors(t).Name() or b"").decode() for t in range(graph.TensorsLength())]
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            inputs = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
            operators.append({
                "subgraph": s, "op_name": codes[op.OpcodeIndex()], "inputs": inputs,
                "outputs": outputs, "output_names": [names[t] for t in outputs if t >= 0],
            })
    return operators


def tflite_ops(model: bytes | str | Path) -> set[str]:
    """Operator names in a TFLite model, in all its subgraphs (:func:`tflite_operators`).

    Builtins are upper-case names (``CONV_2D``); a Flex op shows up as ``FlexXxx`` or, like
    any custom op, as its custom name.

    Example:
        >>> "CONV_2D" in tflite_ops("model.tflite")  # doctest: +SKIP
        True
    """
    return {op["op_name"] for op in tflite_operators(model)}


def flex_ops(model: bytes | str | Path) -> set[str]:
    """The operators of a TFLite model that are not builtins (Flex or custom).

    Example:
        >>> flex_ops("model.tflite")  # doctest: +SKIP
        set()
    """
    # Builtin names are upper-case with underscores/digits; Flex/custom names are not.
    return {name for name in tflite_ops(model)
            if name.startswith("Flex") or name != name.upper() or name == "CUSTOM"}


class TFLiteRunner:
    """Run a breastzoo ``.tflite`` in ai_edge_litert's Interpreter through its signature.

    Args:
        model: ``.tflite`` bytes or path.
        num_threads: interpreter threads (``None``: the runtime's default).

    Example:
        >>> runner = TFLiteRunner("model.tflite", num_threads=2)  # doctest: +SKIP
        >>> runner(images)["probabilities"].shape  # doctest: +SKIP
        (4, 8)
    """

    def __init__(self, model: bytes | str | Path, num_threads: int | None = None) -> None:
        self.interpreter = _interpreter(model, num_threads)
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ValueError("TFLite model has no signature. Received: a model without one")
        key = SIGNATURE_KEY if SIGNATURE_KEY in signatures else next(iter(signatures))
        self.runner = self.interpreter.get_signature_runner(key)
        self.input_name = signatures[key]["inputs"][0]
        self.output_names = list(signatures[key]["outputs"])

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` uint8 ``[N, H, W, 3]`` -> the contract's outputs as numpy arrays."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"TFLite models take uint8 images. Received: dtype={images.dtype}")
        out = self.runner(**{self.input_name: images})
        return {name: np.array(value) for name, value in out.items()}
