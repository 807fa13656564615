"""SaNet: the soft-attention residual classifier of paper 000 (Xu et al. 2020, Fig. 3, eq. 4).

SaNet labels one patch (112x112 by default, any HxW works) cropped by DeNet. Its 128-d feature
layer is also DeNet's view of the patch (the "deep features" C of Table I).

Structure (pre-activation residual units, BN + PReLU everywhere, as in Fig. 3)::

    x in [0, 1]                          float32 [B, H, W, 3], scaled outside the model
    stem   Conv3x3/2 (width) - BN - PReLU - MaxPool3x3/2              -> H/4
    pre    ResidualUnit(4*width)
    trunk  ResidualUnit x 2                                           -> T(x)
    mask   MaxPool - RU - [skip RU] - MaxPool - RU - RU - Up(bilinear) + skip - RU
           - Up(bilinear) - BN - PReLU - Conv1x1 - sigmoid            -> M(x) in [0, 1]
    A(x) = (1 + M(x)) * T(x)                                         (eq. 4)
    post   ResidualUnit - BN - PReLU - GlobalAveragePool
    feature Dense(feature_dim) + ReLU                                 -> C, DeNet's state
    classifier Dense(num_classes) + softmax                           -> probabilities

Choices where the paper is silent (its Fig. 3 details and the residual unit are in a
supplement we do not have); they follow Wang et al.'s Residual Attention Network (the "[15]"
SaNet is "modified based on"):

* stem: a 3x3 stride-2 convolution and a 3x3 stride-2 max-pool bring a 112 patch to 28x28
  before the attention module, so the mask branch works at 28 -> 14 -> 7 -> 14 -> 28;
* residual unit: pre-activation bottleneck BN-PReLU-Conv1x1(w) - BN-PReLU-Conv3x3(w) -
  BN-PReLU-Conv1x1(4w), projection shortcut when the channel count changes; ``width`` is the
  bottleneck width ``w`` (default 16, so the module runs at 64 channels, the "Conv(1x1, 64)" of
  the Fig. 3 caption);
* one attention module, with one pre- and one post-module residual unit (p = 1 of RAN), and
  RAN's skip connection between the down and up paths of the mask branch;
* the mask branch's two upsamplings are bilinear resizes to the exact size of the map they
  join (x2 for even sizes), so odd feature-map sizes (any patch size) work, also with H and W
  unknown at trace time; PReLU slopes are per channel (shared over H and W) so the weights do
  not depend on the patch size;
* inputs are float images in [0, 1] (scaling happens in the data pipeline / serving
  signature); integer inputs raise ``TypeError`` rather than being silently misread.

Interface for the selective-attention model (``breastzoo.models.selective``)::

    sanet = SaNet(num_classes=8)                       # width=16, feature_dim=128
    probs = sanet(patches, training=True)              # [B, C], for the cross-entropy of eq. 7
    feats, probs = sanet.features_and_probs(patches)   # [B, 128] C for DeNet, [B, C]
    mask = sanet.attention_mask(patches)               # [B, h, w] in [0, 1], for overlays

Example:
    >>> import numpy as np
    >>> net = SaNet(num_classes=3, width=4, feature_dim=8)
    >>> net(np.zeros((2, 32, 32, 3), "float32")).shape
    TensorShape([2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers, ops

from breastzoo.checks import positive_int

__all__ = ["ResidualUnit", "SaNet"]




def _prelu(name: str) -> layers.PReLU:
    # Shared over H and W: one slope per channel, independent of the patch size.
    return layers.PReLU(shared_axes=[1, 2], name=name)


def _build_chain(chain: Sequence[layers.Layer], shape: tuple) -> tuple:
    """Build layers in order, threading the output shape of each into the next."""
    for layer in chain:
        layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def _resize_to(x: Any, reference: Any) -> Any:
    """Bilinear resize of ``x`` to the spatial size of ``reference`` (x2 for even sizes)."""
    h, w = reference.shape[1], reference.shape[2]
    if h is not None and w is not None:
        return ops.image.resize(x, (h, w), interpolation="bilinear")
    # Unknown H/W at trace time (e.g. a serving signature with free patch size):
    # keras.ops.image.resize needs Python ints, tf.image.resize takes a size tensor.
    import tensorflow as tf

    return tf.image.resize(x, tf.shape(reference)[1:3], method="bilinear")


@keras.saving.register_keras_serializable(package="breastzoo")
class ResidualUnit(layers.Layer):
    """Pre-activation bottleneck residual unit: (BN-PReLU-Conv) x 3 plus a shortcut.

    Args:
        filters: output channels.
        bottleneck: channels of the inner 1x1/3x3 convolutions (default ``filters // 4``).
        strides: stride of the 3x3 convolution (and of the projection shortcut).
        bn_momentum: BatchNorm moving-average momentum.
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> import numpy as np
        >>> ResidualUnit(8)(np.zeros((1, 5, 5, 4), "float32")).shape
        TensorShape([1, 5, 5, 8])
    """

    def __init__(
        self,
        filters: int,
        bottleneck: int | None = None,
        strides: int = 1,
        bn_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self.bottleneck = positive_int(
            "bottleneck", max(1, filters // 4) if bottleneck is None else bottleneck
        )
        self.strides = positive_int("strides", strides)
        self.bn_momentum = float(bn_momentum)
        conv = {"use_bias": False, "kernel_initializer": "he_normal"}
        self.bn1 = layers.BatchNormalization(momentum=self.bn_momentum, name="bn1")
        self.act1 = _prelu("act1")
        self.conv1 = layers.Conv2D(self.bottleneck, 1, name="conv1", **conv)
        self.bn2 = layers.BatchNormalization(momentum=self.bn_momentum, name="bn2")
        self.act2 = _prelu("act2")
        self.conv2 = layers.Conv2D(
            self.bottleneck, 3, strides=self.strides, padding="same", name="conv2", **conv
        )
        self.bn3 = layers.BatchNormalization(momentum=self.bn_momentum, name="bn3")
        self.act3 = _prelu("act3")
        self.conv3 = layers.Conv2D(self.filters, 1, name="conv3", **conv)
        self.shortcut: layers.Conv2D | None = None

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] != self.filters or self.strides != 1:
            # Projection only where identity is impossible (He et al. option B).
            self.shortcut = layers.Conv2D(
                self.filters,
                1,
                strides=self.strides,
                use_bias=False,
                kernel_initializer="he_normal",
                name="shortcut",
            )
            self.shortcut.build(input_shape)
        _build_chain(
            [self.bn1, self.act1, self.conv1, self.bn2, self.act2, self.conv2]
            + [self.bn3, self.act3, self.conv3],
            tuple(input_shape),
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        pre = self.act1(self.bn1(inputs, training=training))
        # Pre-activation ResNet: the projection shortcut reads the pre-activated input.
        shortcut = inputs if self.shortcut is None else self.shortcut(pre)
        x = self.conv1(pre)
        x = self.conv2(self.act2(self.bn2(x, training=training)))
        x = self.conv3(self.act3(self.bn3(x, training=training)))
        return x + shortcut

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(self.conv2.compute_output_shape(input_shape)[:-1]) + (self.filters,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "bottleneck": self.bottleneck,
                "strides": self.strides,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="breastzoo")
class SaNet(keras.Model):
    """Soft-attention residual network of paper 000 (Fig. 3): patch -> class probabilities.

    Args:
        num_classes: number of output classes (8 BreaKHis subtypes, 2 for binary).
        width: bottleneck width of the residual units and stem filters; the attention module
            runs at ``4 * width`` channels. Default 16 (64 channels); tests use 2-4.
        feature_dim: size of the ReLU feature layer read by DeNet (128 in the paper).
        patch_size: the patch size this model is meant for, ``int`` or ``(height, width)``;
            recorded as the input contract (the network itself accepts any HxW >= 1).
        bn_momentum: BatchNorm moving-average momentum. 0.9 (not Keras' 0.99) so that the
            moving statistics DeNet's inference-mode glimpses rely on catch up within the few
            hundred iterations of a CPU-sized run.
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ``trainable``).

    Call:
        ``model(x, training=None)`` with ``x`` float ``[B, H, W, 3]`` in ``[0, 1]`` returns
        softmax probabilities ``[B, num_classes]``.

    Example:
        >>> import numpy as np
        >>> net = SaNet(num_classes=8, width=2, feature_dim=4, patch_size=16)
        >>> feats, probs = net.features_and_probs(np.ones((1, 16, 16, 3), "float32"))
        >>> feats.shape, probs.shape
        (TensorShape([1, 4]), TensorShape([1, 8]))
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 16,
        feature_dim: int = 128,
        patch_size: int | Sequence[int] = 112,
        bn_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bn_momentum = float(bn_momentum)
        self.num_classes = positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes}")
        self.width = positive_int("width", width)
        self.feature_dim = positive_int("feature_dim", feature_dim)
        if isinstance(patch_size, int) and not isinstance(patch_size, bool):
            patch_size = (patch_size, patch_size)
        patch_size = tuple(patch_size)
        if len(patch_size) != 2:
            raise ValueError(f"patch_size must be an int or (h, w). Received: {patch_size!r}")
        for v in patch_size:
            positive_int("patch_size", v)
        self.patch_size: tuple[int, int] = patch_size  # type: ignore[assignment]
        channels = 4 * width
        self.channels = channels

        def unit(name: str) -> ResidualUnit:
            return ResidualUnit(
                channels, bottleneck=width, bn_momentum=self.bn_momentum, name=name
            )

        self.stem_conv = layers.Conv2D(
            width,
            3,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )
        self.stem_bn = layers.BatchNormalization(
            momentum=self.bn_momentum, name="stem_bn"
        )
        self.stem_act = _prelu("stem_act")
        self.stem_pool = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")
        self.pre_unit = unit("pre_unit")
        # Trunk branch: T(x).
        self.trunk1 = unit("trunk1")
        self.trunk2 = unit("trunk2")
        # Mask branch: bottom-up (two max-pools), top-down (two bilinear upsamplings) -> M(x).
        self.mask_pool1 = layers.MaxPooling2D(3, strides=2, padding="same", name="mask_pool1")
        self.mask_down1 = unit("mask_down1")
        self.mask_skip = unit("mask_skip")
        self.mask_pool2 = layers.MaxPooling2D(3, strides=2, padding="same", name="mask_pool2")
        self.mask_mid1 = unit("mask_mid1")
        self.mask_mid2 = unit("mask_mid2")
        self.mask_up_unit = unit("mask_up_unit")
        self.mask_bn = layers.BatchNormalization(
            momentum=self.bn_momentum, name="mask_bn"
        )
        self.mask_act = _prelu("mask_act")
        self.mask_conv = layers.Conv2D(channels, 1, activation="sigmoid", name="mask_conv")
        # After the attention module.
        self.post_unit = unit("post_unit")
        self.head_bn = layers.BatchNormalization(
            momentum=self.bn_momentum, name="head_bn"
        )
        self.head_act = _prelu("head_act")
        self.pool = layers.GlobalAveragePooling2D(name="gap")
        self.feature = layers.Dense(feature_dim, activation="relu", name="feature")
        self.classifier = layers.Dense(num_classes, activation="softmax", name="classifier")

    # ------------------------------------------------------------------ Keras plumbing

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(f"SaNet expects [B, H, W, C] inputs. Received: shape={shape}")
        shape = _build_chain(
            [self.stem_conv, self.stem_bn, self.stem_act, self.stem_pool, self.pre_unit], shape
        )
        module_shape = shape
        _build_chain([self.trunk1, self.trunk2], module_shape)
        down1 = _build_chain([self.mask_pool1, self.mask_down1], module_shape)
        _build_chain([self.mask_skip], down1)
        _build_chain([self.mask_pool2, self.mask_mid1, self.mask_mid2], down1)
        # The upsamplings resize back to the shapes of down1 and of the module input.
        _build_chain([self.mask_up_unit], down1)
        _build_chain([self.mask_bn, self.mask_act, self.mask_conv], module_shape)
        shape = _build_chain(
            [self.post_unit, self.head_bn, self.head_act, self.pool, self.feature], module_shape
        )
        self.classifier.build(shape)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "width": self.width,
                "feature_dim": self.feature_dim,
                "patch_size": list(self.patch_size),
                "bn_momentum": self.bn_momentum,
            }
        )
        return config

    # ------------------------------------------------------------------ forward pass

    def _check_input(self, inputs: Any) -> Any:
        dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", "float32"))
        if "int" in dtype or dtype == "bool":
            raise TypeError(
                "SaNet expects float images scaled to [0, 1]; divide uint8 images by 255 first. "
                f"Received: dtype={dtype}"
            )
        if not self.built:
            self.build(tuple(inputs.shape))
        return ops.cast(inputs, self.compute_dtype)

    def _forward(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        x = self._check_input(inputs)
        x = self.stem_act(self.stem_bn(self.stem_conv(x), training=training))
        x = self.pre_unit(self.stem_pool(x), training=training)

        trunk = self.trunk2(self.trunk1(x, training=training), training=training)

        down1 = self.mask_down1(self.mask_pool1(x), training=training)
        skip = self.mask_skip(down1, training=training)
        deep = self.mask_mid1(self.mask_pool2(down1), training=training)
        deep = self.mask_mid2(deep, training=training)
        up = _resize_to(deep, down1) + skip
        up = self.mask_up_unit(up, training=training)
        up = _resize_to(up, x)
        mask = self.mask_conv(self.mask_act(self.mask_bn(up, training=training)))

        # Eq. 4: attention residual learning; M -> 0 leaves the trunk features unchanged.
        attended = (1.0 + mask) * trunk

        y = self.post_unit(attended, training=training)
        y = self.pool(self.head_act(self.head_bn(y, training=training)))
        features = self.feature(y)
        probs = self.classifier(features)
        return {
            "trunk": trunk,
            "mask": mask,
            "attended": attended,
            "features": features,
            "probs": probs,
        }

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self._forward(inputs, training=training)["probs"]

    # ------------------------------------------------------------------ public helpers

    def features_and_probs(self, inputs: Any, training: bool = False) -> tuple[Any, Any]:
        """Feature-layer activations (DeNet's C) and class probabilities in one pass.

        Args:
            inputs: float ``[B, H, W, 3]`` patches in ``[0, 1]``.
            training: BatchNorm mode; pass ``True`` inside a training step.

        Returns:
            ``(features [B, feature_dim], probs [B, num_classes])``.

        Example:
            >>> import numpy as np
            >>> f, p = SaNet(2, width=2, feature_dim=4).features_and_probs(np.ones((1, 8, 8, 3)))
            >>> f.shape
            TensorShape([1, 4])
        """
        out = self._forward(inputs, training=training)
        return out["features"], out["probs"]

    def feature_maps(self, inputs: Any, training: bool = False) -> dict[str, Any]:
        """All intermediate tensors: ``trunk`` T, ``mask`` M, ``attended`` A, features, probs.

        Args:
            inputs: float ``[B, H, W, 3]`` patches in ``[0, 1]``.
            training: BatchNorm mode.

        Returns:
            Dict of tensors; ``trunk``, ``mask`` and ``attended`` are ``[B, h, w, 4*width]``.

        Example:
            >>> import numpy as np
            >>> maps = SaNet(2, width=2, feature_dim=4).feature_maps(np.ones((1, 8, 8, 3)))
            >>> maps["mask"].shape
            TensorShape([1, 2, 2, 8])
        """
        return self._forward(inputs, training=training)

    def attention_mask(self, inputs: Any, upsample: bool = False) -> Any:
        """Soft-attention mask M(x) averaged over channels, for overlays.

        Args:
            inputs: float ``[B, H, W, 3]`` patches in ``[0, 1]``.
            upsample: resize the mask (bilinear) to the patch size ``H x W``.

        Returns:
            ``[B, h, w]`` (``h = ceil(H / 4)``) or ``[B, H, W]`` values in ``[0, 1]``.

        Example:
            >>> import numpy as np
            >>> m = SaNet(2, width=2, feature_dim=4).attention_mask(np.ones((1, 16, 16, 3)))
            >>> m.shape
            TensorShape([1, 4, 4])
        """
        mask = ops.mean(self._forward(inputs, training=False)["mask"], axis=-1)
        if upsample:
            mask = ops.clip(_resize_to(mask[..., None], inputs)[..., 0], 0.0, 1.0)
        return mask
