"""Paper 002's hybrid CNN: a global Inception-SEP branch on the downsampled whole image and a
local one on a grid of non-overlapping patches, fused as ``P = lambda P_L + (1 - lambda) P_G``.

Data flow of :class:`Hybrid` (paper defaults; every size is a parameter)::

    raw uint8 image [B, H, W, 3] (the dataset's size: BreaKHis 700x460, BACH 2048x1536)
      -> stain normalisation + scaling to [0, 1]      (in the model: the serving contract)
      -> resize to 224x224 -> global branch           -> P_G [B, C]
      -> resize to 1120x672 -> 5x3 grid of 224x224     -> local branch -> [B, 15, C]
           -> "mean" (average) or "max" (majority vote)  -> P_L [B, C]
      -> P = 0.6 P_L + 0.4 P_G

How the paper trains it (Zhu et al. 2019, "Results", BACH paragraph): "The 6100 x 8 images are
used to train the global branch and the 6100 x 8 x 15 patches are used to train the local
branch", and Table 2 evaluates each branch alone: the two branches are trained **separately**,
each with cross-entropy on its own inputs (every patch carries its image's label), and are
combined only at inference by eq. (1). :meth:`Hybrid.train_step` does exactly that in one
step: the loss is ``CE(P_G, y) + mean_patches CE(p_patch, y)``; the branches share no weight,
so each branch receives only the gradient of its own term (the sum is a convenience, not a
coupling) and the fused output never enters training. Unlike the paper, patches of one batch
come from the same ``batch_size`` images rather than from a separately shuffled patch set.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from breastzoo.models.inception_sep import InceptionSEP
from breastzoo.models.preprocessing import make_stain_layer, to_unit_range
from breastzoo.models.shared_ops import image_boxes, resize_antialiased, vote

__all__ = ["LOCAL_RULES", "Hybrid", "fuse"]

LOCAL_RULES: tuple[str, ...] = ("mean", "max")
_EPS = 1e-7


def fuse(patch_probs: Any, global_probs: Any, lambda_: float = 0.6, rule: str = "mean", *,
         builtin_ops: bool = False) -> Any:
    """Eq. (1) of paper 002: ``lambda * P_L + (1 - lambda) * P_G``.

    Args:
        patch_probs: ``[B, N, C]`` local-branch probabilities of the N patches of each image.
        global_probs: ``[B, C]`` global-branch probabilities.
        lambda_: weight of the local branch, in [0, 1] (paper: 0.6).
        rule: how the patches make ``P_L``: ``"mean"`` (average of the N probabilities, the
            paper's method 3) or ``"max"`` (majority vote, the paper's "3(Max)"): ``P_L`` is
            ``(votes + mean probabilities) / (N + 1)``, a distribution whose arg-max is the
            majority class, ties broken by the mean probability.
        builtin_ops: the ``"max"`` vote from TFLite builtin ops (same numbers; see
            :mod:`breastzoo.models.shared_ops`).

    Returns:
        ``[B, C]`` fused probabilities (rows sum to 1 when the inputs' rows do).

    Raises:
        ValueError: unknown rule or ``lambda_`` outside [0, 1].

    Example:
        >>> import numpy as np
        >>> local = np.array([[[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]], "float32")
        >>> glob = np.array([[1.0, 0.0]], "float32")
        >>> np.asarray(fuse(local, glob, 0.6, "mean"), "float64").round(3).tolist()
        [[0.68, 0.32]]
    """
    _check_rule(rule)
    _check_lambda(lambda_)
    patch_probs = ops.convert_to_tensor(patch_probs, "float32")
    global_probs = ops.convert_to_tensor(global_probs, "float32")
    if rule == "mean":
        local = ops.mean(patch_probs, axis=1)
    else:
        n = patch_probs.shape[1]
        # k = N: every patch votes, no tie-extension
        local = vote(patch_probs, n, builtin_ops=builtin_ops)[0]
    return lambda_ * local + (1.0 - lambda_) * global_probs


def _check_rule(rule: str) -> str:
    if rule not in LOCAL_RULES:
        raise ValueError(f"Unknown local rule. Received: local_rule={rule!r}; expected one of "
                         f"{', '.join(LOCAL_RULES)}")
    return rule


def _check_lambda(lambda_: float) -> float:
    if not 0.0 <= float(lambda_) <= 1.0:
        raise ValueError(f"lambda must be in [0, 1]. Received: lambda_={lambda_!r}")
    return float(lambda_)


@keras.saving.register_keras_serializable(package="breastzoo")
class Hybrid(keras.Model):
    """Global + local Inception-SEP branches fused by eq. (1) (paper 002, Fig. 1).

    Trained the way the paper trains it: the two branches separately (see the module
    docstring), in one custom ``train_step`` that reports ``loss`` (their sum),
    ``global_loss``, ``local_loss`` and the training ``accuracy`` of the fused prediction.

    Args:
        num_classes: output classes.
        image_size: (width, height) of the raw input images (the input contract).
        grid: (columns, rows) of the local patch grid (paper: 5x3).
        patch_size: side of a local patch and of the global input (paper: 224). The local
            canvas is ``grid * patch_size`` (paper: 1120x672).
        lambda_: local-branch weight of eq. (1) (paper: 0.6).
        local_rule: ``"mean"`` or ``"max"`` (majority vote); see :func:`fuse`.
        width: channel multiplier of both branches (tests use small ones).
        global_channels, local_channels: per-layer channel counts handed to
            ``InceptionSEP(channels=...)`` (a pruned hybrid is rebuilt narrower this way);
            ``None`` for the full architecture.
        dropout: dropout before each branch's classifier.
        stain: stain normalisation inside the model (``"reinhard"``, ``"macenko"``, ``"none"``).
        class_names, magnification: input contract, recorded only.
        **kwargs: passed to ``keras.Model``.

    Example:
        >>> import numpy as np
        >>> m = Hybrid(2, image_size=(64, 48), grid=(2, 1), patch_size=32, width=0.125)
        >>> m(np.zeros((1, 48, 64, 3), "uint8")).shape
        TensorShape([1, 2])
    """

    def __init__(
        self,
        num_classes: int,
        image_size: tuple[int, int] = (700, 460),
        grid: tuple[int, int] = (5, 3),
        patch_size: int = 224,
        lambda_: float = 0.6,
        local_rule: str = "mean",
        width: float = 1.0,
        global_channels: Any = None,
        local_channels: Any = None,
        dropout: float = 0.4,
        stain: str = "none",
        class_names: list[str] | None = None,
        magnification: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.grid = (int(grid[0]), int(grid[1]))
        if min(self.grid) < 1:
            raise ValueError(f"grid must be positive (columns, rows). Received: grid={grid!r}")
        self.patch_size = int(patch_size)
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1. Received: patch_size={patch_size!r}")
        self.lambda_ = _check_lambda(lambda_)
        self.local_rule = _check_rule(local_rule)
        self.width = float(width)
        self.global_channels = global_channels
        self.local_channels = local_channels
        self.dropout = float(dropout)
        self.stain = stain
        self.class_names = list(class_names) if class_names else None
        self.magnification = magnification
        self.global_branch = InceptionSEP(num_classes, width=width, channels=global_channels,
                                          dropout=dropout, name="global_branch")
        self.local_branch = InceptionSEP(num_classes, width=width, channels=local_channels,
                                         dropout=dropout, name="local_branch")
        self.preprocess = make_stain_layer(stain)
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "global_loss", "local_loss")
        }
        self.trackers["accuracy"] = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    # ------------------------------------------------------------------ Keras plumbing

    @property
    def n_patches(self) -> int:
        """Patches per image (columns x rows)."""
        return self.grid[0] * self.grid[1]

    @property
    def local_size(self) -> tuple[int, int]:
        """(width, height) the image is resized to before cutting the grid (paper 1120x672)."""
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size

    def build(self, input_shape: Any) -> None:
        ps = self.patch_size
        self.global_branch.build((None, ps, ps, 3))
        self.local_branch.build((None, ps, ps, 3))
        if self.preprocess is not None:
            self.preprocess.build((None, self.image_size[1], self.image_size[0], 3))
        self.built = True

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            image_size=list(self.image_size),
            grid=list(self.grid),
            patch_size=self.patch_size,
            lambda_=self.lambda_,
            local_rule=self.local_rule,
            width=self.width,
            global_channels=self.global_channels,
            local_channels=self.local_channels,
            dropout=self.dropout,
            stain=self.stain,
            class_names=self.class_names,
            magnification=self.magnification,
        )
        return config

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # ------------------------------------------------------------------ forward

    def inputs_of_branches(self, images: Any, builtin_ops: bool = False) -> tuple[Any, Any]:
        """``(global input [B, s, s, 3], patches [B, N, s, s, 3])`` in [0, 1], s = patch_size.

        Patches are in row-major grid order (row 0 left to right, then row 1, ...).
        ``builtin_ops``: both resizes as constant matrix products (TFLite builtins; see
        :func:`~breastzoo.models.shared_ops.resize_antialiased`).
        """
        if not self.built:
            self.build(tuple(images.shape))
        x = to_unit_range(images, self.preprocess)
        ps = self.patch_size
        glob = resize_antialiased(x, (ps, ps), builtin_ops=builtin_ops)
        cols, rows = self.grid
        lw, lh = self.local_size
        local = resize_antialiased(x, (lh, lw), builtin_ops=builtin_ops)
        # [B, rows*ps, cols*ps, 3] -> [B, rows, ps, cols, ps, 3] -> [B, rows, cols, ps, ps, 3]
        tiles = ops.reshape(local, (-1, rows, ps, cols, ps, 3))
        tiles = ops.transpose(tiles, (0, 1, 3, 2, 4, 5))
        return glob, ops.reshape(tiles, (-1, rows * cols, ps, ps, 3))

    def branch_probs(self, images: Any, training: bool | None = None,
                     builtin_ops: bool = False) -> tuple[Any, Any]:
        """``(P_G [B, C], patch probabilities [B, N, C])`` before fusion."""
        glob, patches = self.inputs_of_branches(images, builtin_ops=builtin_ops)
        ps = self.patch_size
        p_global = self.global_branch(glob, training=training)
        flat = ops.reshape(patches, (-1, ps, ps, 3))
        p_patch = self.local_branch(flat, training=training)
        return p_global, ops.reshape(p_patch, (-1, self.n_patches, self.num_classes))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        p_global, p_patch = self.branch_probs(inputs, training=training)
        return fuse(p_patch, p_global, self.lambda_, self.local_rule)

    def infer(self, inputs: Any) -> dict[str, Any]:
        """``{"probs", "boxes", "n_rois", "patch_probs", "global_probs"}``; the boxes are the
        local grid cells in input-image pixels ``(y0, x0, y1, x1)``."""
        return self._infer(inputs)

    def _infer(self, inputs: Any, builtin_ops: bool = False) -> dict[str, Any]:
        p_global, p_patch = self.branch_probs(inputs, training=False, builtin_ops=builtin_ops)
        probs = fuse(p_patch, p_global, self.lambda_, self.local_rule, builtin_ops=builtin_ops)
        batch = ops.shape(probs)[0]
        return {
            "probs": probs,
            "boxes": image_boxes(batch, self.grid_boxes()),
            "n_rois": ops.full((batch,), self.n_patches, "int32"),
            "patch_probs": p_patch,
            "global_probs": p_global,
        }

    @property
    def spec_name(self) -> str:
        """This model's ``fit --model`` name (its row of :mod:`breastzoo.models.specs`)."""
        return "hybrid"

    def serving_outputs(self, images: Any, *, builtin_ops: bool = False,
                        noise_rows: int = 1) -> dict[str, Any]:
        """The serving contract's outputs: ``{"probabilities" [B, C], "boxes" [B, N, 4],
        "n_rois" [B]}``; the boxes are the N local grid cells (every one votes).

        Args:
            images: uint8 ``[B, H, W, 3]`` at ``image_size``.
            builtin_ops: TFLite builtin ops only: the two antialiased resizes become constant
                matrix products and the ``"max"`` rule's arg-max a ``tf.argmax`` (same
                numbers; :mod:`breastzoo.models.shared_ops`).
            noise_rows: unused (no location draws).

        Example:
            >>> import numpy as np
            >>> m = Hybrid(2, image_size=(64, 48), grid=(2, 1), patch_size=32, width=0.125)
            >>> out = m.serving_outputs(np.zeros((1, 48, 64, 3), "uint8"), builtin_ops=True)
            >>> out["boxes"].shape, int(out["n_rois"][0])
            (TensorShape([1, 2, 4]), 2)
        """
        out = self._infer(images, builtin_ops=builtin_ops)
        return {"probabilities": out["probs"], "boxes": out["boxes"], "n_rois": out["n_rois"]}

    def grid_boxes(self) -> list[list[float]]:
        """The N grid cells as ``(y0, x0, y1, x1)`` boxes in input-image pixels."""
        cols, rows = self.grid
        cell_w, cell_h = self.image_size[0] / cols, self.image_size[1] / rows
        return [[r * cell_h, c * cell_w, (r + 1) * cell_h, (c + 1) * cell_w]
                for r in range(rows) for c in range(cols)]

    # ------------------------------------------------------------------ training

    def _branch_losses(self, images: Any, labels: Any, training: bool) -> tuple[Any, ...]:
        p_global, p_patch = self.branch_probs(images, training=training)
        true = ops.one_hot(labels, self.num_classes)
        global_loss = -ops.mean(ops.log(ops.clip(ops.sum(p_global * true, -1), _EPS, 1.0)))
        # Every patch carries its image's label (paper: the local branch trains on patches).
        local_nll = -ops.log(ops.clip(ops.sum(p_patch * true[:, None, :], -1), _EPS, 1.0))
        local_loss = ops.mean(local_nll)
        return global_loss, local_loss, fuse(p_patch, p_global, self.lambda_, self.local_rule)

    def _record(self, labels: Any, global_loss: Any, local_loss: Any, probs: Any) -> dict:
        self.trackers["loss"].update_state(global_loss + local_loss)
        self.trackers["global_loss"].update_state(global_loss)
        self.trackers["local_loss"].update_state(local_loss)
        self.trackers["accuracy"].update_state(labels, probs)
        return {name: m.result() for name, m in self.trackers.items()}

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        images, labels = data[0], data[1]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            global_loss, local_loss, probs = self._branch_losses(images, labels, training=True)
            # Disjoint weights: each branch gets only the gradient of its own term.
            # Keras scales only its built-in losses under tf.distribute; ours by hand.
            loss = (global_loss + local_loss) / replicas
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return self._record(labels, global_loss, local_loss, probs)

    def test_step(self, data: Any) -> dict[str, Any]:
        images, labels = data[0], data[1]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        global_loss, local_loss, probs = self._branch_losses(images, labels, training=False)
        return self._record(labels, global_loss, local_loss, probs)
