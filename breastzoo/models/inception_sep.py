"""Inception-SEP branch of paper 002 (Zhu et al., BMC 2019, Fig. 2, Table 1).

GoogLeNet up to Inception 4e with BatchNorm + ReLU after every convolution and an SEP block
(squeeze-excitation, reduction 16) after every Inception module. The module widths come from
the authors' published Caffe network file (PAPERS.md section B)::

    x in [0, 1]                           float32 [B, H, W, 3] (stain + scaling done outside)
    stem   conv7x7/2 (64) - maxpool3x3/2 - conv1x1 (64) - conv3x3 (192) - maxpool3x3/2
    3a SEP - 3b SEP - maxpool3x3/2 - 4a SEP - 4b SEP - 4c SEP - 4d SEP - 4e SEP
    head   concat(SEP-4e, SEP-4b, SEP-4c, SEP-4d) - maxpool3x3/2 - global average pool
           - dropout - dense(num_classes) - softmax

Each Inception module is ``concat(1x1, 3x3reduce -> 3x3, 5x5reduce -> 5x5,
maxpool3x3/1 -> pool-proj)``. Max pools use "same" padding so 224 gives 56, 28, 14, 7 as
Caffe's rounding-up pools do. At 224x224 and 2 classes the branch has 3.77 M parameters
(``count_params()`` including BatchNorm statistics) and 1.46 G multiply-accumulates (the
paper's "2920 MFLOPs" counts two operations per multiply-accumulate).

Every convolution's output channel count lives in one ``channels`` dict (keys such as
``"stem1"``, ``"4b_3x3"``, ``"4b_se"``), so a pruned model (``breastzoo.pruning.sep``) is the
same class with smaller numbers, and round-trips through ``.keras``. SEP pruning removes
channels of the module *outputs* (the 1x1, 3x3, 5x5 and pool-proj convolutions), the tensors
an SE gate scales; ``*_se`` (the SE bottleneck) stays at its trained size so the gates of the
kept channels are unchanged by the removal.

Choices where the paper is silent: convolutions keep their bias (Caffe's conv + BN + Scale);
dropout 0.4 before the classifier (GoogLeNet's); the SE bottleneck is ``max(1, C // 16)``.

Example:
    >>> import numpy as np
    >>> net = InceptionSEP(num_classes=2, width=0.125)
    >>> net(np.zeros((1, 32, 32, 3), "float32")).shape
    TensorShape([1, 2])
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from breastzoo.checks import positive_int

__all__ = [
    "BRANCH_KEYS",
    "HEAD_MODULES",
    "MODULES",
    "PAPER_WIDTHS",
    "ConvBNReLU",
    "InceptionModule",
    "InceptionSEP",
    "SEPBlock",
    "default_channels",
]

#: Inception modules in order, with (1x1, 3x3reduce, 3x3, 5x5reduce, 5x5, pool-proj).
PAPER_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
}
MODULES: tuple[str, ...] = tuple(PAPER_WIDTHS)
#: Per-module convolution suffixes, in the order of PAPER_WIDTHS' tuples.
BRANCH_KEYS: tuple[str, ...] = ("1x1", "3x3r", "3x3", "5x5r", "5x5", "pool")
#: The convolutions whose outputs are concatenated into the module output (in this order).
OUTPUT_KEYS: tuple[str, ...] = ("1x1", "3x3", "5x5", "pool")
#: SEP outputs concatenated by the head, in this order.
HEAD_MODULES: tuple[str, ...] = ("4e", "4b", "4c", "4d")
#: A max pool 3x3/2 follows these modules (the stem pools are separate).
_POOL_AFTER = ("3b",)
_STEM = (("stem1", 64, 7, 2), ("stem2", 64, 1, 1), ("stem3", 192, 3, 1))
SE_REDUCTION = 16


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def default_channels(width: float = 1.0) -> dict[str, int]:
    """Output channels of every convolution (and SE bottleneck) at a width multiplier.

    Args:
        width: multiplier on the paper's widths (1.0 = the paper; tests use 0.125).

    Returns:
        ``{"stem1": 64, ..., "3a_1x1": 64, ..., "3a_se": 16, ...}``.

    Example:
        >>> default_channels()["4e_3x3"]
        320
    """
    if not width > 0:
        raise ValueError(f"width must be > 0. Received: width={width!r}")
    channels = {name: _scaled(c, width) for name, c, _, _ in _STEM}
    for module, widths in PAPER_WIDTHS.items():
        for key, c in zip(BRANCH_KEYS, widths, strict=True):
            channels[f"{module}_{key}"] = _scaled(c, width)
        out = sum(channels[f"{module}_{k}"] for k in OUTPUT_KEYS)
        channels[f"{module}_se"] = max(1, out // SE_REDUCTION)
    return channels


def _max_pool(stride: int, name: str) -> layers.MaxPooling2D:
    return layers.MaxPooling2D(3, strides=stride, padding="same", name=name)


@keras.saving.register_keras_serializable(package="breastzoo")
class ConvBNReLU(layers.Layer):
    """Convolution (with bias, "same" padding) - BatchNorm - ReLU.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: convolution stride.
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> import numpy as np
        >>> ConvBNReLU(4, 3)(np.zeros((1, 8, 8, 2), "float32")).shape
        TensorShape([1, 8, 8, 4])
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.strides = positive_int("strides", strides)
        self.conv = layers.Conv2D(
            self.filters, self.kernel_size, strides=self.strides, padding="same",
            kernel_initializer="he_normal", name="conv",
        )
        self.bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")

    def build(self, input_shape: tuple) -> None:
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return ops.relu(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(self.conv.compute_output_shape(input_shape))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides}
        )
        return config


@keras.saving.register_keras_serializable(package="breastzoo")
class InceptionModule(layers.Layer):
    """GoogLeNet Inception module with BN + ReLU after every convolution.

    Args:
        widths: output channels of (1x1, 3x3reduce, 3x3, 5x5reduce, 5x5, pool-proj).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> import numpy as np
        >>> InceptionModule((2, 2, 3, 1, 2, 1))(np.zeros((1, 6, 6, 4), "float32")).shape
        TensorShape([1, 6, 6, 8])
    """

    def __init__(self, widths: tuple[int, ...] | list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        widths = tuple(int(w) for w in widths)
        if len(widths) != 6 or min(widths) < 1:
            raise ValueError(
                "widths must be 6 positive ints (1x1, 3x3r, 3x3, 5x5r, 5x5, pool). "
                f"Received: widths={widths!r}"
            )
        self.widths = widths
        w1, w3r, w3, w5r, w5, wp = widths
        self.b1 = ConvBNReLU(w1, 1, name="b1x1")
        self.b3r = ConvBNReLU(w3r, 1, name="b3x3r")
        self.b3 = ConvBNReLU(w3, 3, name="b3x3")
        self.b5r = ConvBNReLU(w5r, 1, name="b5x5r")
        self.b5 = ConvBNReLU(w5, 5, name="b5x5")
        self.pool = _max_pool(1, "pool")
        self.bp = ConvBNReLU(wp, 1, name="bpool")

    @property
    def output_channels(self) -> int:
        return self.widths[0] + self.widths[2] + self.widths[4] + self.widths[5]

    def build(self, input_shape: tuple) -> None:
        input_shape = tuple(input_shape)
        self.b1.build(input_shape)
        self.b3r.build(input_shape)
        self.b3.build(input_shape[:-1] + (self.widths[1],))
        self.b5r.build(input_shape)
        self.b5.build(input_shape[:-1] + (self.widths[3],))
        self.bp.build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return ops.concatenate(
            [
                self.b1(inputs, training=training),
                self.b3(self.b3r(inputs, training=training), training=training),
                self.b5(self.b5r(inputs, training=training), training=training),
                self.bp(self.pool(inputs), training=training),
            ],
            axis=-1,
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.output_channels,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"widths": list(self.widths)})
        return config


@keras.saving.register_keras_serializable(package="breastzoo")
class SEPBlock(layers.Layer):
    """Squeeze-excitation-pruning block (paper 002, Fig. 4; SE of Hu et al., eqs. 2-4).

    Training stage: ``x * s`` with ``s = sigmoid(W2 relu(W1 mean_hw(x)))``. Pruning stage:
    ``gates(x)`` exposes ``s`` (``[B, C]``) so ``breastzoo.pruning.sep`` can average it over
    the training set (eq. 5). ``squeeze`` is the C -> hidden layer, ``excite`` hidden -> C.

    Args:
        hidden: units of the bottleneck (``C // 16`` in the paper).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> import numpy as np
        >>> SEPBlock(2)(np.ones((1, 4, 4, 8), "float32")).shape
        TensorShape([1, 4, 4, 8])
    """

    def __init__(self, hidden: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden = positive_int("hidden", hidden)
        self.squeeze = layers.Dense(self.hidden, activation="relu", name="squeeze")
        self.excite: layers.Dense | None = None

    def build(self, input_shape: tuple) -> None:
        channels = int(input_shape[-1])
        self.squeeze.build((None, channels))
        self.excite = layers.Dense(channels, activation="sigmoid", name="excite")
        self.excite.build((None, self.hidden))

    def gates(self, inputs: Any) -> Any:
        """The SE activations ``s`` for ``inputs`` ``[B, H, W, C]`` -> ``[B, C]``."""
        return self.excite(self.squeeze(ops.mean(inputs, axis=(1, 2))))

    def call(self, inputs: Any) -> Any:
        return inputs * self.gates(inputs)[:, None, None, :]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"hidden": self.hidden})
        return config


@keras.saving.register_keras_serializable(package="breastzoo")
class InceptionSEP(keras.Model):
    """One branch of the Inception-SEP hybrid (paper 002): image -> class probabilities.

    Args:
        num_classes: number of output classes (2 for the binary tasks).
        width: multiplier on the paper's channel widths when ``channels`` is None
            (tests use 0.125).
        channels: explicit output channels per convolution (keys of ``default_channels``);
            pruned models carry these. Missing keys take the ``width`` default.
        dropout: dropout rate before the classifier.
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ``trainable``).

    Call:
        ``model(x, training=None)`` with ``x`` float32 ``[B, H, W, 3]`` in ``[0, 1]``, any
        ``H, W >= 32`` (224 in the paper), returns softmax probabilities ``[B, num_classes]``.
        ``model.se_gates(x)`` returns ``{module: [B, C]}`` SE activations (eq. 5's ``s``).

    Example:
        >>> import numpy as np
        >>> net = InceptionSEP(num_classes=2, width=0.125)
        >>> sorted(net.se_gates(np.zeros((1, 32, 32, 3), "float32")))[:2]
        ['3a', '3b']
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        channels: dict[str, int] | None = None,
        dropout: float = 0.4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = positive_int("num_classes", num_classes)
        self.width = float(width)
        resolved = default_channels(self.width)
        unknown = sorted(set(channels or {}) - set(resolved))
        if unknown:
            raise ValueError(f"Unknown channel keys {unknown}. Received: channels={channels!r}")
        for key, value in (channels or {}).items():
            resolved[key] = positive_int(f"channels[{key!r}]", value)
        self.channels = resolved
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
        self.dropout = float(dropout)

        c = self.channels
        self.stem = [ConvBNReLU(c[name], k, s, name=name) for name, _, k, s in _STEM]
        self.stem_pool1 = _max_pool(2, "stem_pool1")
        self.stem_pool2 = _max_pool(2, "stem_pool2")
        self.inceptions = [
            InceptionModule([c[f"{m}_{k}"] for k in BRANCH_KEYS], name=f"inception_{m}")
            for m in MODULES
        ]
        self.seps = [SEPBlock(c[f"{m}_se"], name=f"sep_{m}") for m in MODULES]
        self.pools = {m: _max_pool(2, f"pool_{m}") for m in _POOL_AFTER}
        self.head_pool = _max_pool(2, "head_pool")
        self.gap = layers.GlobalAveragePooling2D(name="gap")
        self.drop = layers.Dropout(self.dropout, name="dropout")
        self.classifier = layers.Dense(self.num_classes, activation="softmax", name="classifier")

    def module_channels(self, module: str) -> int:
        """Output channels of Inception ``module`` (the C of its SEP block).

        Args:
            module: one of ``MODULES`` (``"3a"`` ... ``"4e"``).

        Example:
            >>> InceptionSEP(2).module_channels("4e")
            832
        """
        if module not in MODULES:
            raise ValueError(f"Unknown module. Expected one of {MODULES}. Received: {module!r}")
        return sum(self.channels[f"{module}_{k}"] for k in OUTPUT_KEYS)

    def build(self, input_shape: tuple) -> None:
        shape = (None, None, None, int(input_shape[-1]))
        for i, layer in enumerate(self.stem):
            layer.build(shape)
            shape = (None, None, None, layer.filters)
            if i == 0:
                self.stem_pool1.build(shape)
        self.stem_pool2.build(shape)
        for module, inception, sep in zip(MODULES, self.inceptions, self.seps, strict=True):
            inception.build(shape)
            shape = (None, None, None, inception.output_channels)
            sep.build(shape)
            if module in self.pools:
                self.pools[module].build(shape)
        head = sum(self.module_channels(m) for m in HEAD_MODULES)
        self.head_pool.build((None, None, None, head))
        self.classifier.build((None, head))

    def _forward(self, inputs: Any, training: bool | None, collect: bool) -> tuple[Any, dict]:
        x = ops.convert_to_tensor(inputs)
        if "int" in str(x.dtype):
            raise TypeError(
                "InceptionSEP expects float images in [0, 1]; scale uint8 images first. "
                f"Received: dtype={x.dtype}"
            )
        for i, layer in enumerate(self.stem):
            x = layer(x, training=training)
            if i == 0:
                x = self.stem_pool1(x)
        x = self.stem_pool2(x)
        outputs, gates = {}, {}
        for module, inception, sep in zip(MODULES, self.inceptions, self.seps, strict=True):
            x = inception(x, training=training)
            if collect:
                gates[module] = sep.gates(x)
            x = sep(x)
            outputs[module] = x
            if module in self.pools:
                x = self.pools[module](x)
        return outputs, gates

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs, _ = self._forward(inputs, training, collect=False)
        x = ops.concatenate([outputs[m] for m in HEAD_MODULES], axis=-1)
        x = self.gap(self.head_pool(x))
        return self.classifier(self.drop(x, training=training))

    def se_gates(self, x: Any) -> dict[str, Any]:
        """SE activations of every SEP block in inference mode: ``{module: [B, C]}``.

        Args:
            x: float32 ``[B, H, W, 3]`` in ``[0, 1]``.

        Example:
            >>> import numpy as np
            >>> g = InceptionSEP(2, width=0.125).se_gates(np.zeros((2, 32, 32, 3), "float32"))
            >>> tuple(g["3a"].shape)
            (2, 32)
        """
        if not self.built:
            self(x)
        _, gates = self._forward(x, training=False, collect=True)
        return gates

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "width": self.width,
                "channels": dict(self.channels),
                "dropout": self.dropout,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> InceptionSEP:
        return cls(**config)
