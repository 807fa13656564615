"""Patch classifiers that the selective model can drive: SaNet, or ResNet-50 (-S.A ablation).

Every classifier here has SaNet's interface: ``call(x) -> probs`` and
``features_and_probs(x) -> (features [B, feature_dim], probs [B, C])`` on float patches in
[0, 1], so DeNet can read the same kind of feature vector from either.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from breastzoo.models.sanet import SaNet

CLASSIFIERS = ("sanet", "resnet50")


@keras.saving.register_keras_serializable(package="breastzoo")
class ResNetPatchClassifier(keras.Model):
    """keras.applications ResNet50 (from scratch) + Dense(feature_dim, ReLU) + softmax.

    No pretrained weights are downloaded: ``weights`` is a local ``.weights.h5`` file of a
    ``keras.applications.ResNet50(include_top=False)`` or ``None`` (random initialisation).

    Args:
        num_classes: output classes.
        feature_dim: size of the ReLU feature layer (DeNet's C).
        patch_size: input side, or ``(height, width)`` (>= 32 for ResNet50's five stride-2
            stages); ``resnet50_full`` uses the whole 460x700 image.
        weights: optional path to backbone weights.
        **kwargs: passed to ``keras.Model``.

    Example:
        >>> import numpy as np
        >>> m = ResNetPatchClassifier(2, feature_dim=8, patch_size=32)
        >>> m(np.zeros((1, 32, 32, 3), "float32")).shape
        TensorShape([1, 2])
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int = 128,
        patch_size: int | tuple[int, int] | list[int] = 112,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        if isinstance(patch_size, int):
            patch_size = (patch_size, patch_size)
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.weights_path = weights
        self.backbone = keras.applications.ResNet50(
            include_top=False,
            weights=None,
            input_shape=(*self.patch_size, 3),
            pooling="avg",
        )
        if weights:
            self.backbone.load_weights(weights)
        self.feature = layers.Dense(self.feature_dim, activation="relu", name="feature")
        self.classifier = layers.Dense(self.num_classes, activation="softmax", name="classifier")

    def build(self, input_shape: tuple) -> None:
        self.feature.build((None, self.backbone.output_shape[-1]))
        self.classifier.build((None, self.feature_dim))
        super().build(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            feature_dim=self.feature_dim,
            patch_size=list(self.patch_size),
            weights=None,  # weights travel in the .keras file, not by path
        )
        return config

    def features_and_probs(self, inputs: Any, training: bool = False) -> tuple[Any, Any]:
        """Feature layer and probabilities (see module docstring)."""
        # keras.applications' ResNet50 expects caffe-style inputs in [0, 255].
        x = keras.applications.resnet50.preprocess_input(inputs * 255.0)
        features = self.feature(self.backbone(x, training=training))
        return features, self.classifier(features)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.features_and_probs(inputs, training=bool(training))[1]


def make_patch_classifier(
    name: str,
    num_classes: int,
    *,
    width: int = 16,
    feature_dim: int = 128,
    patch_size: int = 112,
    weights: str | None = None,
) -> keras.Model:
    """Build a patch classifier by name.

    Args:
        name: ``"sanet"`` or ``"resnet50"``.
        num_classes: output classes.
        width: SaNet width (ignored by ResNet50).
        feature_dim: feature layer size.
        patch_size: input patch side.
        weights: ResNet50 backbone weights file (ignored by SaNet).

    Raises:
        ValueError: unknown ``name``.

    Example:
        >>> make_patch_classifier("sanet", 2, width=2, feature_dim=4).num_classes
        2
    """
    if name == "sanet":
        return SaNet(num_classes, width=width, feature_dim=feature_dim, patch_size=patch_size)
    if name == "resnet50":
        return ResNetPatchClassifier(
            num_classes, feature_dim=feature_dim, patch_size=patch_size, weights=weights
        )
    raise ValueError(
        f"Unknown classifier. Received: classifier={name!r}; expected one of "
        f"{', '.join(CLASSIFIERS)}."
    )
