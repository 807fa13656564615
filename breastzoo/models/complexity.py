"""Parameter and multiply-accumulate (MAC) counts measured on a built Keras model.

``count_macs`` runs one inference-mode forward pass while recording the input and output
shapes of every convolution, dense and recurrent layer that actually executes, so it sees
exactly what a subclassed model does (patch grids, ROI loops, branches) without a hand-made
table. One MAC is one multiply followed by one add; papers quoting "FLOPs" usually mean
2 x MACs. Normalisation, activations, pooling and element-wise products are not counted
(the usual convention, and what paper 002's 2920 MFLOPs = 2 x 1.46 G MACs counts).

Example:
    >>> import numpy as np, keras
    >>> m = keras.Sequential([keras.layers.Dense(3)])
    >>> count_macs(m, np.zeros((1, 4), "float32"))
    12
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from typing import Any

import keras

from breastzoo.models.specs import MODEL_NAMES

__all__ = ["ARCHITECTURES", "STANDALONE", "architecture_info", "build_architecture", "complexity",
           "count_macs"]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in keras.ops.shape(x))


def _conv_macs(layer: Any, inputs: Any, output: Any) -> int:
    out = _shape(output)
    spatial = out[2:] if getattr(layer, "data_format", "channels_last") == "channels_first" \
        else out[1:-1]
    # Kernel [*k, Cin/groups, Cout]: every output position costs prod(k) * Cin/groups per
    # output channel, so positions x kernel size is exact for grouped convolutions too.
    return out[0] * math.prod(spatial) * math.prod(_shape(layer.kernel))


def _depthwise_macs(layer: Any, inputs: Any, output: Any) -> int:
    out = _shape(output)
    spatial = out[2:] if getattr(layer, "data_format", "channels_last") == "channels_first" \
        else out[1:-1]
    # Keras 3 names the depthwise kernel ``kernel`` (DepthwiseConv2D) or ``depthwise_kernel``.
    depthwise = getattr(layer, "depthwise_kernel", None)
    total = math.prod(_shape(layer.kernel if depthwise is None else depthwise))
    if getattr(layer, "pointwise_kernel", None) is not None:  # separable convolution
        total += math.prod(_shape(layer.pointwise_kernel))
    return out[0] * math.prod(spatial) * total


def _transpose_macs(layer: Any, inputs: Any, output: Any) -> int:
    inp = _shape(inputs)
    spatial = inp[2:] if getattr(layer, "data_format", "channels_last") == "channels_first" \
        else inp[1:-1]
    # Each input position scatters one kernel: prod(k) * Cout * Cin.
    return inp[0] * math.prod(spatial) * math.prod(_shape(layer.kernel))


def _dense_macs(layer: Any, inputs: Any, output: Any) -> int:
    return math.prod(_shape(inputs)[:-1]) * math.prod(_shape(layer.kernel))


def _rnn_gates(cell: Any) -> int:
    name = type(cell).__name__
    return 4 if "LSTM" in name else 3 if "GRU" in name else 1


def _rnn_macs(layer: Any, inputs: Any, output: Any) -> int:
    batch, steps, features = _shape(inputs)[:3]
    units = int(layer.cell.units)
    return batch * steps * _rnn_gates(layer.cell) * (features + units) * units


def _cell_macs(layer: Any, inputs: Any, output: Any) -> int:
    batch, features = _shape(inputs)[0], _shape(inputs)[-1]
    units = int(layer.units)
    return batch * _rnn_gates(layer) * (features + units) * units


def _targets() -> list[tuple[type, Any, bool]]:
    """(class whose own ``call`` is patched, MAC rule, is a whole-sequence RNN layer)."""
    from keras.src.layers.convolutional.base_conv import BaseConv
    from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
    from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
    from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv

    return [
        (BaseConv, _conv_macs, False),
        (BaseConvTranspose, _transpose_macs, False),
        (BaseDepthwiseConv, _depthwise_macs, False),
        (BaseSeparableConv, _depthwise_macs, False),
        (keras.layers.Dense, _dense_macs, False),
        (keras.layers.LSTM, _rnn_macs, True),
        (keras.layers.GRU, _rnn_macs, True),
        (keras.layers.SimpleRNN, _rnn_macs, True),
        (keras.layers.LSTMCell, _cell_macs, False),
        (keras.layers.GRUCell, _cell_macs, False),
        (keras.layers.SimpleRNNCell, _cell_macs, False),
    ]


@contextlib.contextmanager
def _recording(records: list[int]) -> Iterator[None]:
    # Patch the classes' own ``call`` (instances look it up through the class), restore after.
    # Inside a whole-sequence RNN layer the per-step cell calls are not counted again.
    state = {"rnn_depth": 0}
    saved = []
    for cls, rule, is_rnn in _targets():
        original = cls.__dict__["call"]

        def wrapper(self: Any, *args: Any, _orig: Any = original, _rule: Any = rule,
                    _is_rnn: bool = is_rnn, **kwargs: Any) -> Any:
            inputs = args[0] if args else kwargs.get("inputs", kwargs.get("sequences"))
            if _is_rnn:
                state["rnn_depth"] += 1
            try:
                out = _orig(self, *args, **kwargs)
            finally:
                if _is_rnn:
                    state["rnn_depth"] -= 1
            if _is_rnn or state["rnn_depth"] == 0:
                first = out[0] if isinstance(out, (list, tuple)) else out
                records.append(_rule(self, inputs, first))
            return out

        functools.update_wrapper(wrapper, original)
        saved.append((cls, original))
        cls.call = wrapper
    try:
        yield
    finally:
        for cls, original in saved:
            cls.call = original


def count_macs(model: keras.Model, inputs: Any, batch_size: int | None = None) -> int:
    """Multiply-accumulates of one inference-mode forward pass, per input sample.

    Args:
        model: any Keras layer or model (built or not).
        inputs: one batch the model accepts (a tensor or a dict/list of them).
        batch_size: samples in ``inputs`` (default: the leading dimension of the first
            input); the total is divided by it.

    Returns:
        MACs per sample, as an int.

    Example:
        >>> import numpy as np, keras
        >>> conv = keras.Sequential([keras.layers.Conv2D(2, 3, padding="same")])
        >>> count_macs(conv, np.zeros((1, 4, 4, 1), "float32"))
        288
    """
    if batch_size is None:
        batch_size = _shape(keras.tree.flatten(inputs)[0])[0]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size!r}")
    if not getattr(model, "built", True):
        model(inputs, training=False)  # build outside the recording
    records: list[int] = []
    with _recording(records):
        model(inputs, training=False)
    return int(sum(records)) // int(batch_size)


def complexity(model: keras.Model, inputs: Any) -> dict[str, int]:
    """``{"params": count_params(), "macs": count_macs(...)}`` of a model on ``inputs``.

    Args:
        model: any Keras model.
        inputs: one batch (batch size 1 is cheapest).

    Example:
        >>> import numpy as np, keras
        >>> complexity(keras.Sequential([keras.layers.Dense(3)]), np.zeros((1, 4), "float32"))
        {'params': 15, 'macs': 12}
    """
    macs = count_macs(model, inputs)
    return {"params": int(model.count_params()), "macs": macs}


#: Architectures of ``breastzoo models info`` that are not a ``fit --model``: paper 002's
#: branch, SaNet alone, and ResNet-50 on a 224x224 image (built as ``resnet50_full``).
STANDALONE: tuple[str, ...] = ("inception_sep", "sanet", "resnet50")
#: ``breastzoo models info`` names: the standalone networks, then every ``fit --model``
#: (:data:`breastzoo.models.specs.MODEL_NAMES`).
ARCHITECTURES: tuple[str, ...] = STANDALONE + MODEL_NAMES
_FIT_ALIASES = {"resnet50": "resnet50_full"}


def build_architecture(arch: str, input_size: int | None = None,
                       classes: int = 2) -> tuple[keras.Model, Any, str]:
    """A freshly built model of a named architecture and one example input batch.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        input_size: side of the square input image (default: the architecture's own input:
            224 for inception_sep and resnet50, 112 for sanet, BreaKHis' 700x460 for the
            image-level models, hybrid included).
        classes: number of output classes.

    Returns:
        ``(model, inputs, input description)``.

    Example:
        >>> m, x, desc = build_architecture("inception_sep", 64)  # doctest: +SKIP
    """
    import numpy as np

    from breastzoo.checks import positive_int

    classes = positive_int("classes", classes)
    if input_size is not None:
        input_size = positive_int("input_size", input_size)
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture. Received: arch={arch!r}; expected one of "
                         f"{', '.join(ARCHITECTURES)}")
    if arch == "inception_sep":
        from breastzoo.models.inception_sep import InceptionSEP

        n = input_size or 224
        if n < 32:
            raise ValueError(f"inception_sep needs inputs >= 32. Received: input_size={n}")
        model, x = InceptionSEP(classes), np.zeros((1, n, n, 3), "float32")
        model(x)
        return model, x, f"{n}x{n} float image in [0, 1]"
    if arch == "sanet":
        from breastzoo.models.sanet import SaNet

        n = input_size or 112
        model, x = SaNet(classes), np.zeros((1, n, n, 3), "float32")
        model(x)
        return model, x, f"{n}x{n} float patch in [0, 1]"
    from breastzoo.configs import TrainConfig
    from breastzoo.models.factory import build_model, example_inputs

    name = _FIT_ALIASES.get(arch, arch)
    size = (input_size, input_size) if input_size else (
        (224, 224) if arch == "resnet50" else TrainConfig().image_size)
    config = TrainConfig(model=name, image_size=size)
    model = build_model(config, [f"class_{i}" for i in range(classes)])
    x = example_inputs(model, np.zeros((1, size[1], size[0], 3), "uint8"))
    return model, x, f"{size[0]}x{size[1]} uint8 image"


def architecture_info(arch: str, input_size: int | None = None, classes: int = 2) -> dict:
    """``{"arch", "input", "classes", "params", "macs", "gmacs"}`` measured on a built model.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        input_size: square input side (see :func:`build_architecture`).
        classes: output classes.

    Example:
        >>> architecture_info("inception_sep")["params"]  # doctest: +SKIP
        3771285
    """
    model, x, desc = build_architecture(arch, input_size, classes)
    info = complexity(model, x)
    return {"arch": arch, "input": desc, "classes": classes, **info,
            "gmacs": round(info["macs"] / 1e9, 4)}
