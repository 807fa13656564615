"""Baselines of paper 000's Table V and what users would pick instead.

* :class:`WholeImageClassifier`: the whole image, optionally resized, into one classifier.
  ``sanet_resize`` (-DeNet: 700x460 resized to 112x112, SaNet) and ``resnet50_full``
  (keras.applications ResNet50 from scratch on the full 700x460 image, no attention).
* :class:`PatchVoteClassifier`: k patches per image at full resolution, majority vote.
  ``random_roi`` (k random crops: Table V's "Random Selection") and ``oracle_roi`` (crops
  centred inside the ground-truth lesion, synthetic data only: the upper bound hard
  attention could reach) and ``centre_roi`` (k fixed crops around the image centre: what a
  policy that learned only the centre prior would see). ``grid_confident`` trains like
  ``random_roi`` but at inference classifies every tile of a dense grid
  (:func:`grid_centres`) and votes its k most confident tiles: attention without a policy,
  which separates a failure of the RL policy from a limit of the patch classifier.

All take uint8 (or float [0, 255]) ``[B, H, W, 3]`` images and return class probabilities;
``serving_outputs`` gives the serving contract's outputs (:mod:`breastzoo.export.serving`).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from breastzoo.checks import positive_int
from breastzoo.models.patch_classifiers import make_patch_classifier
from breastzoo.models.preprocessing import make_stain_layer, to_unit_range
from breastzoo.models.shared_ops import (
    crop_scaled,
    image_boxes,
    random_dihedral,
    resize_antialiased,
    vote,
)

__all__ = [
    "CENTRE_OFFSETS",
    "PATCH_MODES",
    "PatchVoteClassifier",
    "WholeImageClassifier",
    "grid_centres",
]

#: PatchVoteClassifier modes and the model-table row (``fit --model``) of each.
PATCH_MODES: dict[str, str] = {
    "random": "random_roi",
    "centre": "centre_roi",
    "oracle": "oracle_roi",
    "grid_confident": "grid_confident",
}

# centre_roi's crop centres, in half patch sides from the image centre (y, x): the centre,
# the four diagonal neighbours (overlapping it by a quarter each), then four farther out.
CENTRE_OFFSETS: tuple[tuple[int, int], ...] = (
    (0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1), (0, -2), (0, 2), (-2, 0), (2, 0),
)


def _grid_starts(length: int, window: int, stride: int) -> list[int]:
    last = max(length - window, 0)
    n = math.ceil(last / stride) + 1
    return sorted({min(i * stride, last) for i in range(n)})


def grid_centres(image_size: tuple[int, int], window: int,
                 stride: int | None = None) -> np.ndarray:
    """Pixel ``(y, x)`` centres of a dense grid of ``window``-wide square tiles.

    Tiles start every ``stride`` pixels (default: half the window) along each axis; the last
    tile of a row or column is moved back to end at the image's edge, so the grid covers the
    whole image and every tile lies inside it. Row-major order (y, then x). A centre is the
    tile's top-left corner plus ``window // 2``: the centre
    :func:`~breastzoo.data.pipeline.crop_at` crops that exact window around.

    Args:
        image_size: ``(width, height)`` of the image.
        window: tile side in image pixels.
        stride: step between tile starts (default ``max(1, window // 2)``).

    Returns:
        float32 ``[T, 2]``.

    Example:
        >>> grid_centres((700, 460), 112).shape  # 12 columns x 8 rows at stride 56
        (96, 2)
        >>> grid_centres((64, 48), 16)[:2].tolist()
        [[8.0, 8.0], [8.0, 16.0]]
    """
    window = positive_int("window", window)
    stride = max(1, window // 2) if stride is None else positive_int("stride", stride)
    width, height = int(image_size[0]), int(image_size[1])
    ys = _grid_starts(height, window, stride)
    xs = _grid_starts(width, window, stride)
    half = window // 2
    return np.array([(y + half, x + half) for y in ys for x in xs], "float32")


@keras.saving.register_keras_serializable(package="breastzoo")
class WholeImageClassifier(keras.Model):
    """Classify the whole image with one network (no attention).

    Args:
        num_classes: output classes.
        image_size: (width, height) of the inputs.
        input_size: side the image is resized to (antialiased), or ``None`` for full size.
        classifier: ``"sanet"`` or ``"resnet50"``.
        width: SaNet width.
        feature_dim: feature layer size.
        stain: stain normalisation inside the model (``"none"``, ``"reinhard"``, ...).
        class_names, magnification: input contract, recorded only.
        **kwargs: passed to ``keras.Model``.

    Example:
        >>> import numpy as np
        >>> m = WholeImageClassifier(2, image_size=(64, 48), input_size=32, width=2)
        >>> m(np.zeros((1, 48, 64, 3), "uint8")).shape
        TensorShape([1, 2])
    """

    def __init__(
        self,
        num_classes: int,
        image_size: tuple[int, int] = (700, 460),
        input_size: int | None = 112,
        classifier: str = "sanet",
        width: int = 16,
        feature_dim: int = 128,
        stain: str = "none",
        class_names: list[str] | None = None,
        magnification: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.input_size = None if input_size is None else int(input_size)
        self.classifier_name = classifier
        self.width, self.feature_dim = int(width), int(feature_dim)
        self.stain = stain
        self.class_names = list(class_names) if class_names else None
        self.magnification = magnification
        shape = (
            (self.input_size, self.input_size)
            if self.input_size
            else (self.image_size[1], self.image_size[0])
        )
        self._net_shape = shape
        self.classifier = make_patch_classifier(
            classifier, num_classes, width=width, feature_dim=feature_dim, patch_size=shape
        )
        self.preprocess = make_stain_layer(stain)

    def build(self, input_shape: tuple) -> None:
        self.classifier.build((None, *self._net_shape, 3))
        if self.preprocess is not None:
            self.preprocess.build((None, self.image_size[1], self.image_size[0], 3))
        super().build(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            image_size=list(self.image_size),
            input_size=self.input_size,
            classifier=self.classifier_name,
            width=self.width,
            feature_dim=self.feature_dim,
            stain=self.stain,
            class_names=self.class_names,
            magnification=self.magnification,
        )
        return config

    def _probs(self, inputs: Any, training: bool | None, builtin_ops: bool = False) -> Any:
        x = to_unit_range(inputs, self.preprocess)
        if self.input_size:
            x = resize_antialiased(x, self._net_shape, builtin_ops=builtin_ops)
        return self.classifier(x, training=training)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self._probs(inputs, training)

    def infer(self, inputs: Any) -> dict[str, Any]:
        """``{"probs", "boxes", "n_rois"}``; the one "ROI" is the whole image."""
        probs = self(inputs, training=False)
        width, height = self.image_size
        batch = ops.shape(probs)[0]
        return {
            "probs": probs,
            "boxes": image_boxes(batch, [[0.0, 0.0, float(height), float(width)]]),
            "n_rois": ops.ones((batch,), "int32"),
        }

    @property
    def spec_name(self) -> str:
        """This model's ``fit --model`` name (its row of :mod:`breastzoo.models.specs`)."""
        return "resnet50_full" if self.classifier_name == "resnet50" else "sanet_resize"

    def serving_outputs(self, images: Any, *, builtin_ops: bool = False,
                        noise_rows: int = 1) -> dict[str, Any]:
        """``{"probabilities" [B, C]}``: a whole-image model reports no ROIs.

        Args:
            images: uint8 ``[B, H, W, 3]`` at ``image_size``.
            builtin_ops: the resize as two constant matrix products (TFLite builtins; see
                :func:`~breastzoo.models.shared_ops.resize_antialiased`).
            noise_rows: unused (no location draws).

        Example:
            >>> import numpy as np
            >>> m = WholeImageClassifier(2, image_size=(64, 48), input_size=32, width=2)
            >>> m.serving_outputs(np.zeros((1, 48, 64, 3), "uint8"))["probabilities"].shape
            TensorShape([1, 2])
        """
        if builtin_ops:
            if not self.built:
                self.build(tuple(images.shape))
            return {"probabilities": self._probs(images, False, builtin_ops=True)}
        return {"probabilities": self(images, training=False)}


@keras.saving.register_keras_serializable(package="breastzoo")
class PatchVoteClassifier(keras.Model):
    """k full-resolution patches per image, one classifier, majority vote.

    Inputs: images ``[B, H, W, 3]`` (``mode="random"``: centres drawn uniformly;
    ``mode="centre"``: the first k of :data:`CENTRE_OFFSETS` around the centre) or a dict
    ``{"images": ..., "centres": [B, k, 2]}`` of pixel (y, x) centres (``mode="oracle"``; the
    training pipeline samples them inside the lesion mask). Training uses cross-entropy on
    every patch with the image's label.

    ``mode="grid_confident"`` trains exactly like ``"random"`` (k uniform crops per image);
    in inference it classifies every tile of :func:`grid_centres` (stride half the window)
    and votes the k tiles with the highest top-class probability, most confident first
    (ties: the earlier tile in row-major order). Its crops depend only on the image, never on
    the batch or a random draw.

    Args:
        num_classes: output classes.
        image_size: (width, height) of the inputs.
        patch_size: patch side.
        k: patches per image.
        mode: ``"random"``, ``"centre"``, ``"oracle"`` or ``"grid_confident"``.
        width, feature_dim: SaNet size.
        stain: stain normalisation inside the model.
        class_names, magnification: input contract.
        seed: sampling seed.
        patch_scale: each patch covers ``patch_size * patch_scale`` image pixels,
            average-pooled to ``patch_size`` (1 = full resolution).
        patch_dihedral: in training, turn each patch by a random symmetry of the square
            (:func:`~breastzoo.models.shared_ops.random_dihedral`).
        **kwargs: passed to ``keras.Model``.

    Example:
        >>> import numpy as np
        >>> m = PatchVoteClassifier(2, image_size=(64, 48), patch_size=16, k=3, width=2)
        >>> m(np.zeros((2, 48, 64, 3), "uint8")).shape
        TensorShape([2, 2])
        >>> g = PatchVoteClassifier(2, image_size=(64, 48), patch_size=16, k=3,
        ...                         mode="grid_confident", width=2)
        >>> g.num_tiles, g.infer(np.zeros((1, 48, 64, 3), "uint8"))["boxes"].shape
        (35, TensorShape([1, 3, 4]))
    """

    def __init__(
        self,
        num_classes: int,
        image_size: tuple[int, int] = (700, 460),
        patch_size: int = 112,
        k: int = 5,
        mode: str = "random",
        width: int = 16,
        feature_dim: int = 128,
        stain: str = "none",
        class_names: list[str] | None = None,
        magnification: str | None = None,
        seed: int = 0,
        patch_scale: int = 1,
        patch_dihedral: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.patch_dihedral = bool(patch_dihedral)
        if mode not in PATCH_MODES:
            raise ValueError(f"Unknown mode. Received: mode={mode!r}; expected "
                             f"{', '.join(PATCH_MODES)}")
        if mode == "centre" and not 1 <= int(k) <= len(CENTRE_OFFSETS):
            raise ValueError(f"centre_roi places at most {len(CENTRE_OFFSETS)} crops. "
                             f"Received: k={k}")
        self.num_classes = int(num_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.patch_size, self.k, self.mode = int(patch_size), positive_int("k", k), mode
        self.patch_scale = positive_int("patch_scale", patch_scale)
        window = self.patch_size * self.patch_scale
        self._grid = grid_centres(self.image_size, window) if mode == "grid_confident" else None
        if self._grid is not None and self.k > len(self._grid):
            raise ValueError(f"grid_confident picks k of its {len(self._grid)} tiles "
                             f"({window}-pixel tiles at stride {max(1, window // 2)} on a "
                             f"{self.image_size[0]}x{self.image_size[1]} image). Received: "
                             f"k={self.k}")
        self.width, self.feature_dim = int(width), int(feature_dim)
        self.stain = stain
        self.class_names = list(class_names) if class_names else None
        self.magnification = magnification
        self.seed = int(seed)
        self.classifier = make_patch_classifier(
            "sanet", num_classes, width=width, feature_dim=feature_dim, patch_size=patch_size
        )
        self.preprocess = make_stain_layer(stain)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Any) -> None:
        self.classifier.build((None, self.patch_size, self.patch_size, 3))
        if self.preprocess is not None:
            self.preprocess.build((None, self.image_size[1], self.image_size[0], 3))
        self.built = True

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            image_size=list(self.image_size),
            patch_size=self.patch_size,
            k=self.k,
            mode=self.mode,
            width=self.width,
            feature_dim=self.feature_dim,
            stain=self.stain,
            class_names=self.class_names,
            magnification=self.magnification,
            seed=self.seed,
            patch_scale=self.patch_scale,
            patch_dihedral=self.patch_dihedral,
        )
        return config

    @property
    def num_tiles(self) -> int | None:
        """Tiles of the inference grid (``grid_confident``), else None."""
        return None if self._grid is None else len(self._grid)

    def _split_inputs(self, inputs: Any) -> tuple[Any, Any]:
        if isinstance(inputs, dict):
            return inputs["images"], inputs.get("centres")
        if self.mode == "oracle":
            raise ValueError("oracle_roi needs {'images', 'centres'} inputs (lesion centres).")
        return inputs, None

    def patches(self, inputs: Any) -> tuple[Any, Any]:
        """``(patches [B, k, s, s, 3] in [0, 1], centres [B, k, 2] pixels)``: the crops
        ``call`` classifies (``grid_confident``: its random training crops; see
        :meth:`tile_probs` for its inference grid)."""
        images, centres = self._split_inputs(inputs)
        if not self.built:
            self.build(images.shape)
        x = to_unit_range(images, self.preprocess)
        window = self.patch_size * self.patch_scale
        if centres is None and self.mode == "centre":
            width, height = self.image_size
            half = window / 2.0
            offsets = [(height / 2.0 + dy * half, width / 2.0 + dx * half)
                       for dy, dx in CENTRE_OFFSETS[: self.k]]
            centres = ops.tile(ops.convert_to_tensor([offsets], "float32"),
                               (ops.shape(x)[0], 1, 1))
        elif centres is None:
            width, height = self.image_size
            half = window // 2
            u = keras.random.uniform((ops.shape(x)[0], self.k, 2), seed=self.seed_generator)
            span = ops.convert_to_tensor([float(height - window), float(width - window)])
            centres = ops.round(u * span) + half
        centres = ops.cast(centres, "float32")
        return crop_scaled(x, centres, self.patch_size, self.patch_scale), centres

    def _patch_probs(self, inputs: Any, training: bool) -> Any:
        patches, _ = self.patches(inputs)
        ps = self.patch_size
        flat = ops.reshape(patches, (-1, ps, ps, 3))
        if training and self.patch_dihedral:
            flat = random_dihedral(flat, self.seed_generator)
        probs = self.classifier(flat, training=training)
        return ops.reshape(probs, (-1, self.k, self.num_classes))

    def tile_probs(self, images: Any) -> tuple[Any, Any]:
        """``(probs [B, T, C], centres [T, 2])``: the classifier on every tile of the
        inference grid, in inference mode (``grid_confident`` only).

        Example:
            >>> import numpy as np
            >>> m = PatchVoteClassifier(2, image_size=(64, 48), patch_size=16, k=3,
            ...                         mode="grid_confident", width=2)
            >>> m.tile_probs(np.zeros((1, 48, 64, 3), "uint8"))[0].shape
            TensorShape([1, 35, 2])
        """
        if self._grid is None:
            raise ValueError(f"Only grid_confident classifies a tile grid. Received: "
                             f"mode={self.mode!r}")
        if isinstance(images, dict):
            images = images["images"]
        if not self.built:
            self.build(images.shape)
        x = to_unit_range(images, self.preprocess)
        tiles = len(self._grid)
        centres = ops.tile(ops.convert_to_tensor(self._grid[None]), (ops.shape(x)[0], 1, 1))
        patches = crop_scaled(x, centres, self.patch_size, self.patch_scale)
        ps = self.patch_size
        flat = ops.reshape(patches, (-1, ps, ps, 3))
        probs = self.classifier(flat, training=False)
        return ops.reshape(probs, (-1, tiles, self.num_classes)), ops.convert_to_tensor(
            self._grid)

    def _confident_tiles(self, images: Any) -> tuple[Any, Any]:
        """``(patch_probs [B, k, C], centres [B, k, 2])`` of the k most confident tiles,
        most confident first. Builtin ops only: top_k, one_hot and batch matmuls (a one-hot
        row times a matrix picks that row exactly)."""
        probs, grid = self.tile_probs(images)
        _, idx = ops.top_k(ops.max(probs, axis=-1), self.k, sorted=True)  # [B, k]
        pick = ops.one_hot(idx, len(self._grid))  # [B, k, T]
        return ops.matmul(pick, probs), ops.matmul(pick, grid)

    def infer(self, inputs: Any) -> dict[str, Any]:
        """``{"probs", "boxes", "n_rois", "patch_probs"}`` with the boxes actually voted on."""
        return self._infer(inputs)

    def _infer(self, inputs: Any, builtin_ops: bool = False) -> dict[str, Any]:
        ps = self.patch_size
        if self._grid is not None:
            patch_probs, centres = self._confident_tiles(inputs)
        else:
            patches, centres = self.patches(inputs)
            flat = ops.reshape(patches, (-1, ps, ps, 3))
            patch_probs = ops.reshape(self.classifier(flat, training=False),
                                      (-1, self.k, self.num_classes))
        probs, n = vote(patch_probs, self.k, builtin_ops=builtin_ops)
        width, height = self.image_size
        window = ps * self.patch_scale
        half = float(window // 2)
        # crop_at clamps windows into the image; report the clamped boxes.
        y0 = ops.clip(centres[..., 0] - half, 0.0, float(height - window))
        x0 = ops.clip(centres[..., 1] - half, 0.0, float(width - window))
        boxes = ops.stack([y0, x0, y0 + window, x0 + window], axis=-1)
        return {"probs": probs, "boxes": boxes, "n_rois": n, "patch_probs": patch_probs}

    @property
    def spec_name(self) -> str:
        """This model's ``fit --model`` name (its row of :mod:`breastzoo.models.specs`)."""
        return PATCH_MODES[self.mode]

    def serving_outputs(self, images: Any, *, builtin_ops: bool = False,
                        noise_rows: int = 1) -> dict[str, Any]:
        """``{"probabilities" [B, C], "boxes" [B, k, 4], "n_rois" [B]}``.

        Args:
            images: uint8 ``[B, H, W, 3]`` at ``image_size``.
            builtin_ops: TFLite builtin ops only (``centre_roi``, ``grid_confident``;
                ``random_roi`` draws fresh crops with a random op, which has no builtin).
            noise_rows: unused (no location table).

        Which models may be served, and how, is the model table's to say
        (:func:`breastzoo.models.specs.check_servable`, which
        :mod:`breastzoo.export.serving` applies first): ``oracle_roi`` needs lesion centres
        as a second input, and ``random_roi``'s random crops have no builtin op.

        Example:
            >>> import numpy as np
            >>> m = PatchVoteClassifier(2, image_size=(64, 48), patch_size=16, k=3,
            ...                         mode="centre", width=2)
            >>> m.serving_outputs(np.zeros((1, 48, 64, 3), "uint8"))["boxes"].shape
            TensorShape([1, 3, 4])
        """
        out = self._infer(images, builtin_ops=builtin_ops)
        return {"probabilities": out["probs"], "boxes": out["boxes"], "n_rois": out["n_rois"]}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training:
            # Keras' built-in loss needs one prediction per image: the mean patch probability.
            return ops.mean(self._patch_probs(inputs, True), axis=1)
        if self._grid is not None:
            return vote(self._confident_tiles(inputs)[0], self.k)[0]
        return vote(self._patch_probs(inputs, False), self.k)[0]

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        inputs, labels = data[0], data[1]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        with tf.GradientTape() as tape:
            probs = self._patch_probs(inputs, True)  # [B, k, C]
            true = ops.one_hot(labels, self.num_classes)[:, None, :]
            nll = -ops.log(ops.clip(ops.sum(probs * true, axis=-1), 1e-7, 1.0))
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = ops.mean(nll) / replicas
        variables = self.classifier.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        image_probs = ops.mean(probs, axis=1)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss * replicas)
            else:
                metric.update_state(labels, image_probs)
        return self.get_metrics_result()
