"""DeNet + SaNet selective attention (paper 000): one Keras model with a custom train_step.

Training (one iteration on a mini-batch of B full-resolution images, ``train_step``):

1. DeNet starts every image at a random location and takes ``max_steps`` glimpses. At step t
   the patch x_t is cropped at full resolution around l_{t-1}; SaNet (inference mode, no
   gradient) gives its 128-d features and prediction; DeNet reads the state S_t = C u Z and
   samples the Bernoulli "select x_t" action and the next location l_t.
2. The first ``k`` selected patches of each image (the paper stops once k are selected; a fixed
   glimpse budget keeps the graph static) train SaNet with cross-entropy (eq. 7).
3. DeNet is trained by REINFORCE with a baseline (eq. 10): loss = -sum_t log pi(a_t) (R - b).
   ``reward="paper"``: R = r_p + r_c, one scalar per iteration; r_p is the latest validation
   accuracy and r_c = -log(i_Gamma / T') with i_Gamma the iteration at which validation loss
   first fell below Gamma (until then the current iteration stands in, so r_c keeps falling
   while the model has not converged). b is the average reward of past epochs. Both come
   from :class:`SelectiveRewardCallback`, which reads Keras' per-epoch validation pass (the
   paper's per-iteration validation would cost a full validation pass per mini-batch).
   ``rp_source="batch"`` is the faithful reading of eqs. 5-6 at a bearable cost: r_p is the
   accuracy on a fixed validation mini-batch measured right after each iteration's SaNet
   update (so it depends on what DeNet selected) and b is a running mean over iterations.
   ``reward="per_image"`` adds, per image, the mean log-likelihood SaNet gives the true class
   on that image's selected patches, and uses a running (EMA) baseline: the paper's scalar
   tells DeNet *whether* the iteration went well, the per-image term tells it *which* glimpses
   were informative.
   ``reward="per_glimpse"`` credits each action with what it produced instead of one number
   per iteration: the select action at step t is rewarded with q_t - mean(q) if it selected
   the patch (0 otherwise), and the location action that moved DeNet onto patch t with
   q_t - mean(q), where q_t is SaNet's log-likelihood of the true class on patch t and the
   mean is over the same image's glimpses (the baseline: it removes how easy the image is).
   Unbiased REINFORCE for each action with far less variance than a shared scalar: DeNet
   learns *which* glimpses to keep and *where* the informative ones were.
4. Both networks update every iteration ("co-evolution"), each with its own Adam optimizer.

``location_policy="grid"`` (not the paper; the default of ``TrainConfig``): DeNet moves over a
grid of tiles covering the image instead of drawing a Gaussian location. Its first glimpse
and every move are a categorical over the tiles not yet visited (inhibition of return), with
logits = DeNet's LSTM tile head + a per-image tile saliency from a small convolutional
context network on a low-resolution thumbnail (:class:`~breastzoo.models.denet.DeNet`).
Training draws from that policy and inference takes its most probable tile, over the same
``max(max_steps, k_max)`` glimpses: one walk, deterministic per image at inference and
free of random ops (the Gaussian walk starts at a random point in training, at the centre at
inference, and draws fixed-seed noise there). At inference the grid walk is a loop over one
step (a ``tf.while_loop``, TFLite's ``WHILE``), so an exported graph holds one copy of SaNet
and DeNet; training and the Gaussian walk unroll their steps in Python. With
``reward="per_glimpse"`` each tile choice earns q_t - mean over the image's glimpses.
``warmup_steps`` lets SaNet learn on random tiles before DeNet's rewards count;
``entropy_bonus`` keeps the policy exploring.

Inference (``call`` / :meth:`SelectiveAttention.infer`): DeNet starts at the image centre and
acts deterministically for ``2 * k_max`` glimpses: select if p > 0.5; move to the policy mean
(``inference_locations="mean"``) or to a fixed-seed draw from the policy (``"sample"``, the
default: the paper does not say, and the mean alone collapses all glimpses onto one spot). The
selected patches in order (then, if fewer than needed, the unselected ones by decreasing select
probability) are voted on by SaNet: the first ``k`` decide unless the vote is tied, in which
case more ROIs are added one at a time (up to ``k_max``) until one class has a strict
plurality. The returned probabilities are ``(votes + mean patch probabilities) / (n + 1)``,
whose argmax is the vote winner (mean probabilities only break a tie left at ``k_max``) and
which still rank images for ROC curves.

Inputs are uint8 or float images in [0, 255], ``[B, H, W, 3]``; scaling (and optional stain
normalisation) happens inside the model, so a saved model takes raw images.

Example:
    >>> import numpy as np
    >>> m = SelectiveAttention(num_classes=2, image_size=(64, 48), patch_size=16, k=3,
    ...                        k_max=5, max_steps=4, width=2)
    >>> m(np.zeros((1, 48, 64, 3), "uint8")).shape
    TensorShape([1, 2])
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from breastzoo.checks import positive_int
from breastzoo.models.denet import CONTEXT_CELL, DeNet
from breastzoo.models.patch_classifiers import make_patch_classifier
from breastzoo.models.preprocessing import make_stain_layer, to_unit_range
from breastzoo.models.shared_ops import (
    argmax,
    crop_scaled,
    random_dihedral,
    resize_antialiased,
    vote,
)

__all__ = [
    "REWARDS",
    "ROI_ORDERS",
    "RP_SOURCES",
    "SelectiveAttention",
    "SelectiveRewardCallback",
    "glimpse_novelty",
    "per_glimpse_policy_loss",
    "vote",
]

#: DeNet rewards (module docstring): the paper's scalar, plus per-image and per-glimpse credit.
REWARDS = ("paper", "per_image", "per_glimpse")
#: Where r_p comes from: Keras' per-epoch validation pass, or a fixed validation mini-batch
#: scored after every SaNet step (eqs. 5-6: r_p then depends on what the step trained on).
RP_SOURCES = ("epoch", "batch")
#: Order in which glimpses become ROIs at inference (see ``SelectiveAttention``).
ROI_ORDERS = ("selected", "probability")

_EPS = 1e-7


def per_glimpse_policy_loss(q: Any, select: Any, log_p_select: Any, log_p_move: Any, *,
                            aligned: bool = False) -> Any:
    """REINFORCE loss crediting every DeNet action with the patch it produced.

    The select action at step t earns ``select_t * (q_t - b)``; the location drawn at
    step t (it moved DeNet onto patch t + 1) earns ``q_{t+1} - b``. The baseline b is the
    mean of q over the same image's glimpses: it removes how easy the image is, so what is
    left says how good this glimpse was compared with the image's others (a batch-wide
    baseline would credit every glimpse of an easy image).

    Args:
        q: ``[B, T]`` SaNet's log-likelihood of the true class on each glimpse (no gradient).
        select: ``[B, T]`` 0/1 select actions.
        log_p_select: ``[B, T]`` log-probability of each select action.
        log_p_move: ``[B, T]`` log-probability of each location drawn at step t.
        aligned: ``log_p_move[:, t]`` is the move that produced patch t (the grid policy,
            which chooses its first glimpse too) rather than the move drawn at step t.

    Returns:
        Scalar loss (minimise it).

    Example:
        >>> import numpy as np
        >>> q = np.array([[0.0, -2.0]], "float32")   # glimpse 0 good, glimpse 1 bad
        >>> float(per_glimpse_policy_loss(q, np.ones((1, 2)), np.zeros((1, 2)),
        ...                               np.array([[1.0, 0.0]])))  # move 0 led to glimpse 1
        1.0
    """
    q = ops.convert_to_tensor(q, "float32")
    gain = ops.stop_gradient(q - ops.mean(q, axis=1, keepdims=True))
    select = ops.cast(select, "float32")
    move = ops.cast(log_p_move, "float32")
    moves = ops.sum(gain * move, axis=1) if aligned else ops.sum(gain[:, 1:] * move[:, :-1], 1)
    per_image = ops.sum(select * gain * log_p_select, axis=1) + moves
    return -ops.mean(per_image)


def glimpse_novelty(features: Any) -> Any:
    """How unlike the rest of its walk each glimpse is: ``[B, T]``, z-scored per image.

    The distance of glimpse t's feature vector from the mean of the image's T glimpses,
    standardised over the T glimpses. Even an untrained SaNet's features separate dense
    nuclei from stroma or fat, so this rewards visiting the tissue that stands out, a
    class-independent signal (not in paper 000).

    Args:
        features: ``[B, T, D]`` SaNet features of the glimpses (no gradient).

    Example:
        >>> import numpy as np
        >>> f = np.zeros((1, 4, 2), "float32"); f[0, 3] = 5.0   # glimpse 3 stands out
        >>> int(np.argmax(glimpse_novelty(f)[0]))
        3
    """
    f = ops.convert_to_tensor(features, "float32")
    d = ops.sqrt(ops.sum(ops.square(f - ops.mean(f, axis=1, keepdims=True)), axis=-1) + _EPS)
    d = d - ops.mean(d, axis=1, keepdims=True)
    return ops.stop_gradient(d / (ops.std(d, axis=1, keepdims=True) + 1e-3))


@keras.saving.register_keras_serializable(package="breastzoo")
class SelectiveAttention(keras.Model):
    """DeNet (hard attention) + a patch classifier (SaNet by default), trained jointly.

    Args:
        num_classes: number of classes.
        image_size: (width, height) of the input images (BreaKHis: 700x460).
        patch_size: side of the square ROIs fed to the classifier (paper: 112).
        patch_scale: each ROI covers ``patch_size * patch_scale`` image pixels, average-pooled
            to ``patch_size`` (1 = full resolution, the paper; see
            :func:`~breastzoo.models.preprocessing.crop_scaled`).
        patch_dihedral: in training, turn each patch SaNet learns from by a random symmetry of
            the square (:func:`~breastzoo.models.shared_ops.random_dihedral`; not the paper).
        k: ROIs selected per image for training and voting (paper: 5).
        k_max: most ROIs used at inference when the vote is tied.
        max_steps: DeNet glimpses per image per training iteration.
        width: classifier width (SaNet bottleneck width).
        feature_dim: classifier feature size read by DeNet (paper: 128).
        classifier: ``"sanet"`` or ``"resnet50"`` (the -S.A ablation).
        gamma, t_prime: convergence reward parameters (paper: 0.25, 200).
        reward: one of :data:`REWARDS` (see module docstring).
        reward_terms: which of ``"rp"``, ``"rc"`` enter R (ablations -r_p, -r_c).
        separate_encoders: DeNet eqs. 1-3 (False: the -Eq. 3 ablation).
        init: DeNet initialisation: ``"glorot"`` (default; the policy depends on its input
            from step 0), ``"paper"`` (U(-0.01, 0.01)) or ``"random"``.
        location_std: std of DeNet's Gaussian location policy.
        stain: ``"none"`` or a stain-normalisation method applied inside the model.
        class_names: optional class names, recorded as the input contract.
        magnification: optional magnification the model was trained for (contract).
        inference_locations: ``"mean"`` moves to the policy mean at inference (all glimpses
            collapse onto one spot when the mean barely depends on the state, as it does
            early in training); ``"sample"`` (default) draws from the policy with a fixed seed
            per step, which is deterministic and covers the region the policy trained on.
        roi_order: ``"selected"``: the glimpses DeNet selected, in order, then the rest by
            decreasing select probability; ``"probability"``: all glimpses by decreasing select
            probability (the k most confident choices vote, wherever they came in the walk).
        selection: ``"denet"`` (the select head picks the k training patches) or ``"all"``
            (every visited patch trains SaNet: the convergence baseline of paper 000).
        seed: seed for sampling.
        location_policy: ``"gaussian"`` (the paper) or ``"grid"``: DeNet picks each glimpse,
            the first one included, among a grid of tiles covering the image, never the same
            tile twice, from its LSTM and a low-resolution context of the whole image
            (:class:`~breastzoo.models.denet.DeNet`). Training and inference then walk the
            same way: the same ``max(max_steps, k_max)`` glimpses, sampled in training and
            the most probable tile at inference (deterministic per image).
        entropy_bonus: weight of the policy's entropy (select + tile) subtracted from
            DeNet's loss: it keeps the policy exploring while SaNet is still changing.
        novelty_bonus: weight of :func:`glimpse_novelty` added to each glimpse's per-glimpse
            reward (grid policy only; not the paper): a class-independent reason to visit
            tissue unlike the rest of the image, before SaNet can tell classes apart.
        warmup_steps: iterations at the start in which SaNet trains on uniformly random
            glimpses (the first ``k`` of each walk) and DeNet is not updated, so the policy's
            first rewards come from a classifier that already tells classes apart.
        rp_source: where r_p (``reward="paper"`` / ``"per_image"``) comes from: ``"epoch"``,
            the latest per-epoch validation accuracy (one value per epoch), or ``"batch"``,
            the accuracy on a fixed validation mini-batch (:meth:`set_reward_batch`) right
            after each SaNet step, as in eqs. 5-6: r_p then depends on the patches that step
            trained on, and the baseline becomes a per-iteration running mean.
        **kwargs: passed to ``keras.Model``.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: tuple[int, int] = (700, 460),
        patch_size: int = 112,
        k: int = 5,
        k_max: int = 9,
        max_steps: int = 10,
        width: int = 16,
        feature_dim: int = 128,
        classifier: str = "sanet",
        gamma: float = 0.25,
        t_prime: float = 200.0,
        reward: str = "paper",
        reward_terms: tuple[str, ...] | list[str] = ("rp", "rc"),
        separate_encoders: bool = True,
        init: str = "glorot",
        location_std: float = 0.1,
        stain: str = "none",
        class_names: list[str] | None = None,
        magnification: str | None = None,
        inference_locations: str = "sample",
        selection: str = "denet",
        roi_order: str = "selected",
        seed: int = 0,
        patch_scale: int = 1,
        patch_dihedral: bool = False,
        location_policy: str = "gaussian",
        entropy_bonus: float = 0.0,
        warmup_steps: int = 0,
        novelty_bonus: float = 0.0,
        rp_source: str = "epoch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if rp_source not in RP_SOURCES:
            raise ValueError(
                f"Unknown rp_source. Received: rp_source={rp_source!r}; expected one of "
                f"{', '.join(RP_SOURCES)}"
            )
        if rp_source == "batch" and reward == "per_glimpse":
            raise ValueError(
                "rp_source='batch' sets r_p, which reward='per_glimpse' does not use. "
                "Received: reward='per_glimpse'; use reward='paper' or 'per_image'"
            )
        self.rp_source = rp_source
        # The fixed validation mini-batch of rp_source="batch" (set_reward_batch). A plain
        # holder, not weights: it is data, and must not enter checkpoints or .keras files.
        self._reward_batch = _RewardBatch()
        self.novelty_bonus = float(novelty_bonus)
        if not (math.isfinite(self.novelty_bonus) and self.novelty_bonus >= 0):
            raise ValueError(
                f"novelty_bonus must be >= 0. Received: novelty_bonus={novelty_bonus!r}"
            )
        self.patch_dihedral = bool(patch_dihedral)
        self.entropy_bonus = float(entropy_bonus)
        if not (math.isfinite(self.entropy_bonus) and self.entropy_bonus >= 0):
            raise ValueError(
                f"entropy_bonus must be >= 0. Received: entropy_bonus={entropy_bonus!r}"
            )
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or (
                warmup_steps < 0):
            raise ValueError(
                f"warmup_steps must be an int >= 0. Received: warmup_steps={warmup_steps!r}"
            )
        self.warmup_steps = warmup_steps
        if roi_order not in ROI_ORDERS:
            raise ValueError(
                f"Unknown roi_order. Received: roi_order={roi_order!r}; expected one of "
                f"{', '.join(ROI_ORDERS)}"
            )
        self.roi_order = roi_order
        if selection not in ("denet", "all"):
            raise ValueError(
                f"Unknown selection. Received: selection={selection!r}; expected denet, all"
            )
        self.selection = selection
        if inference_locations not in ("sample", "mean"):
            raise ValueError(
                "Unknown inference_locations. Received: "
                f"inference_locations={inference_locations!r}; expected 'sample' or 'mean'"
            )
        self.inference_locations = inference_locations
        self.num_classes = int(num_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.patch_size = int(patch_size)
        self.patch_scale = positive_int("patch_scale", patch_scale)
        self.k, self.k_max, self.max_steps = int(k), int(k_max), int(max_steps)
        if not 1 <= self.k <= min(self.k_max, self.max_steps):
            raise ValueError(
                f"Need 1 <= k <= min(k_max, max_steps). Received: k={k}, k_max={k_max}, "
                f"max_steps={max_steps}"
            )
        if self.window > min(self.image_size):
            raise ValueError(
                f"Patch larger than the image. Received: patch_size={patch_size} x "
                f"patch_scale={patch_scale}, image_size={self.image_size}"
            )
        if reward not in REWARDS:
            raise ValueError(
                f"Unknown reward. Received: reward={reward!r}; expected one of "
                f"{', '.join(REWARDS)}"
            )
        self.reward_terms = tuple(reward_terms)
        if not set(self.reward_terms) <= {"rp", "rc"}:
            raise ValueError(f"Unknown reward term. Received: reward_terms={reward_terms!r}")
        self.width, self.feature_dim = int(width), int(feature_dim)
        self.classifier_name = classifier
        self.gamma, self.t_prime = float(gamma), float(t_prime)
        self.reward = reward
        self.separate_encoders, self.init = bool(separate_encoders), init
        self.location_std = float(location_std)
        self.stain = stain
        self.class_names = list(class_names) if class_names else None
        self.magnification = magnification
        self.seed = int(seed)

        self.classifier = make_patch_classifier(
            classifier, num_classes, width=width, feature_dim=feature_dim, patch_size=patch_size
        )
        width_px, height_px = self.image_size
        grid_shape = (math.ceil(height_px / self.window), math.ceil(width_px / self.window))
        self.denet = DeNet(
            num_classes,
            feature_dim=feature_dim,
            separate_encoders=separate_encoders,
            init=init,
            loc_std=location_std,
            max_iterations=max(1, int(t_prime)),
            seed=seed,
            location_policy=location_policy,
            grid_shape=grid_shape if location_policy == "grid" else None,
        )
        self.location_policy = self.denet.location_policy
        if self.location_policy == "grid" and self.walk_steps > self.denet.num_tiles:
            raise ValueError(
                f"The grid has {self.denet.num_tiles} tiles, fewer than the "
                f"{self.walk_steps} glimpses of a walk. Received: max_steps={max_steps}, "
                f"k_max={k_max}, image_size={self.image_size}"
            )
        self.preprocess = make_stain_layer(stain)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.denet_optimizer: keras.optimizers.Optimizer | None = None
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in (
                "loss",
                "accuracy",
                "denet_loss",
                "reward",
                "baseline",
                "select_rate",
                "entropy",
            )
        }

    # ------------------------------------------------------------------ Keras plumbing

    def build(self, input_shape: tuple) -> None:
        ps = self.patch_size
        self.classifier.build((None, ps, ps, 3))
        self.denet.build((None, self.denet.state_dim))
        if self.preprocess is not None:
            self.preprocess.build((None, self.image_size[1], self.image_size[0], 3))

        def state(name: str, value: float) -> keras.Variable:
            return self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                name=name,
            )

        # Training-progress state DeNet reads (Table I) and the reward bookkeeping; weights,
        # so checkpoints and resume carry them.
        self.avg_train_loss = state("avg_train_loss", math.log(self.num_classes))
        self.best_val_accuracy = state("best_val_accuracy", 0.0)
        self.last_val_accuracy = state("last_val_accuracy", 0.0)
        self.iteration = state("iteration", 0.0)
        self.i_gamma = state("i_gamma", 0.0)  # 0 = validation loss not yet below Gamma
        self.baseline = state("baseline", 0.0)
        self.epochs_seen = state("epochs_seen", 0.0)
        super().build(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            image_size=list(self.image_size),
            patch_size=self.patch_size,
            patch_scale=self.patch_scale,
            patch_dihedral=self.patch_dihedral,
            k=self.k,
            k_max=self.k_max,
            max_steps=self.max_steps,
            width=self.width,
            feature_dim=self.feature_dim,
            classifier=self.classifier_name,
            gamma=self.gamma,
            t_prime=self.t_prime,
            reward=self.reward,
            reward_terms=list(self.reward_terms),
            separate_encoders=self.separate_encoders,
            init=self.init,
            location_std=self.location_std,
            stain=self.stain,
            class_names=self.class_names,
            magnification=self.magnification,
            inference_locations=self.inference_locations,
            selection=self.selection,
            roi_order=self.roi_order,
            seed=self.seed,
            location_policy=self.location_policy,
            entropy_bonus=self.entropy_bonus,
            warmup_steps=self.warmup_steps,
            novelty_bonus=self.novelty_bonus,
            rp_source=self.rp_source,
        )
        return config

    def compile(
        self,
        optimizer: Any = None,
        denet_optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        """Compile with one optimizer per network.

        Args:
            optimizer: the classifier's optimizer (paper: Adam, lr 0.01, decayed per epoch).
            denet_optimizer: DeNet's optimizer (paper: Adam, lr 1e-3).
            **kwargs: passed to ``keras.Model.compile`` (losses and metrics are built in).
        """
        super().compile(optimizer=optimizer or keras.optimizers.Adam(0.01), **kwargs)
        self.denet_optimizer = denet_optimizer or keras.optimizers.Adam(1e-3)

    def get_compile_config(self) -> None:
        # Two optimizers do not fit Keras' single-optimizer compile config; a loaded model
        # is for inference (training resumes from BackupAndRestore weights instead).
        return None

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # ------------------------------------------------------------------ geometry

    def _scale(self, images: Any) -> Any:
        if not self.built:
            self.build(tuple(images.shape))
        return to_unit_range(images, self.preprocess)

    @property
    def walk_steps(self) -> int:
        """Glimpses of an inference walk: ``max(2 * k_max, max_steps)`` for the Gaussian
        policy (the paper's walk, longer at inference than in training) and
        ``max(max_steps, k_max)`` for the grid, in training and inference alike."""
        if self.location_policy == "grid":
            return max(self.max_steps, self.k_max)
        return max(2 * self.k_max, self.max_steps)

    @property
    def window(self) -> int:
        """Side, in image pixels, of the region one ROI covers."""
        return self.patch_size * self.patch_scale

    def _corners(self, loc: Any) -> Any:
        """Top-left pixel (y0, x0) of the ROI DeNet's loc in [0, 1]^2 points at; loc 0 and 1
        put the ROI flush with the image border, so every ROI lies inside the image."""
        width, height = self.image_size
        span = ops.convert_to_tensor([float(height - self.window),
                                      float(width - self.window)])
        return ops.round(ops.clip(loc, 0.0, 1.0) * span)

    def boxes(self, loc: Any) -> Any:
        """Pixel boxes ``(y0, x0, y1, x1)`` of ROIs whose DeNet locations are ``loc``."""
        corner = self._corners(loc)
        return ops.concatenate([corner, corner + float(self.window)], axis=-1)

    def _crop(self, x: Any, loc: Any) -> Any:
        centre = self._corners(loc) + float(self.window // 2)
        return crop_scaled(x, centre[:, None, :], self.patch_size, self.patch_scale)[:, 0]

    # ------------------------------------------------------------------ rollout

    def location_noise(self, steps: int, rows: int = 1) -> Any:
        """``[steps, rows, 2]`` float32: the fixed-seed location draws of
        ``inference_locations="sample"``, as a constant.

        Row 0 of step t is the draw :meth:`infer` makes at step t (Philox draws are
        prefix-stable); more rows repeat the pattern of older models that drew one row per
        image. Computed eagerly even while a graph is being traced, so it becomes a graph
        constant: the builtin-op rollout has no random op.

        Example:
            >>> m = SelectiveAttention(2, image_size=(64, 48), patch_size=16, k=1, k_max=2,
            ...                        max_steps=2, width=2)
            >>> m.location_noise(4).shape
            (4, 1, 2)
        """
        import numpy as np
        import tensorflow as tf

        with tf.init_scope():
            return np.stack([
                ops.convert_to_numpy(
                    keras.random.normal((rows, 2), seed=self.seed * 1009 + t)
                ).astype("float32")
                for t in range(steps)
            ])

    def _rollout(self, x: Any, labels: Any, steps: int, training: bool, *,
                 builtin_ops: bool = False, noise_rows: int = 1) -> dict[str, Any]:
        """Run DeNet for ``steps`` glimpses; classifier in inference mode (no gradient).

        ``builtin_ops`` (inference only): the same numbers from TFLite builtin ops: the
        location draws come from :meth:`location_noise` (``noise_rows`` rows, image i uses
        row ``i % noise_rows``) and the patch class from ``tf.argmax``
        (:mod:`breastzoo.models.shared_ops`).
        """
        if self.location_policy == "grid":
            return self._grid_rollout(x, labels, steps, training, builtin_ops=builtin_ops)
        batch = ops.shape(x)[0]
        loc = self.denet.initial_location(
            batch, "random" if training else "center", self.seed_generator
        )
        lstm_state = self.denet.initial_state(batch)
        sample = not training and self.inference_locations == "sample"
        if sample and builtin_ops:
            import tensorflow as tf

            table = tf.constant(self.location_noise(steps, noise_rows))
            rows = tf.math.floormod(tf.range(batch), noise_rows)
        out: dict[str, list] = {
            k: [] for k in ("patch", "probs", "p", "mu", "select", "loc", "next_loc", "logp",
                            "entropy")
        }
        for t in range(steps):
            patch = self._crop(x, loc)
            feats, probs = self.classifier.features_and_probs(patch, training=False)
            feats, probs = ops.stop_gradient(feats), ops.stop_gradient(probs)
            pred = argmax(probs, -1, builtin_ops=builtin_ops)
            s = self.denet.make_state(
                feats,
                self.avg_train_loss,
                self.best_val_accuracy,
                self.iteration,
                pred,
                labels,
                loc,
            )
            p, mu, lstm_state = self.denet.step(s, lstm_state, training=training)
            select, next_loc, logp = self.denet.sample(
                p, mu, self.seed_generator, deterministic=not training
            )
            if sample:
                # A fixed seed per step keeps inference deterministic while spreading the
                # glimpses the way the trained policy does; the mean alone collapses them.
                # One draw per step shared by the whole batch: an image's ROIs must not depend
                # on its position in the batch.
                if builtin_ops:
                    noise = ops.take(table[t], rows, axis=0)
                else:
                    noise = keras.random.normal((1, 2), seed=self.seed * 1009 + t)
                next_loc = ops.clip(mu + noise * self.denet.location_std(), 0.0, 1.0)
            for key, value in (
                ("patch", patch),
                ("probs", probs),
                ("p", p),
                ("mu", mu),
                ("select", select),
                ("loc", loc),
                ("next_loc", next_loc),
                ("logp", logp),
                ("entropy", self.denet.entropy(p)),
            ):
                out[key].append(value)
            loc = next_loc
        return {key: ops.stack(values, axis=1) for key, values in out.items()}

    def _grid_rollout(self, x: Any, labels: Any, steps: int, training: bool, *,
                      builtin_ops: bool = False, warm: Any = None) -> dict[str, Any]:
        """The grid policy's walk: ``steps`` distinct tiles, the first chosen from the context.

        Step t picks tile t (a draw in training, the most probable unvisited tile at
        inference), crops it, lets SaNet see it (inference mode, no gradient) and DeNet
        decide whether to select it; DeNet's LSTM output then sets the next tile's logits
        (:meth:`_grid_step`, the one definition of a step).

        Training unrolls the walk in Python: REINFORCE needs every step's log-probabilities
        with gradients, and the draws advance the seed generator. Inference runs the same
        step in a loop (:meth:`_grid_walk`), so the traced graph (SavedModel, TFLite, ONNX)
        holds one copy of SaNet and DeNet, not one per glimpse.

        ``warm`` (a scalar bool tensor, training only): draw tiles uniformly instead (the
        SaNet warm-up). Keys as :meth:`_rollout`, plus ``"select_logp"`` and
        ``"move_logp"`` (index t: the move that produced patch t); at inference only
        ``"probs"``, ``"p"``, ``"select"`` and ``"loc"``, all :meth:`_infer` reads.
        """
        denet = self.denet
        context, logits = self._grid_context(x, builtin_ops)
        if not training:
            return self._grid_walk(x, context, logits, steps, builtin_ops=builtin_ops)
        visited = ops.zeros_like(context)
        lstm_state = denet.initial_state(ops.shape(x)[0])
        keys = ("patch", "probs", "p", "select", "loc", "logp", "entropy", "select_logp",
                "move_logp", "feats")
        out: dict[str, list] = {k: [] for k in keys}
        for _ in range(steps):
            logits, visited, lstm_state, step = self._grid_step(
                x, labels, context, logits, visited, lstm_state, training=True,
                builtin_ops=builtin_ops, warm=warm)
            move_logp = ops.sum(step["hot"] * step["log_pi"], axis=-1)
            step["move_logp"] = move_logp
            step["logp"] = step["select_logp"] + move_logp
            step["entropy"] = denet.entropy(step["p"]) + denet.tile_entropy(step["log_pi"])
            for key in keys:
                out[key].append(step[key])
        return {key: ops.stack(values, axis=1) for key, values in out.items()}

    def _grid_context(self, x: Any, builtin_ops: bool) -> tuple[Any, Any]:
        """``(context, first-glimpse logits)``, each ``[B, num_tiles]``, from the image's
        low-resolution thumbnail (read once per walk)."""
        rows, cols = self.denet.grid_shape
        cell = CONTEXT_CELL
        thumb = resize_antialiased(x, (rows * cell, cols * cell), builtin_ops=builtin_ops)
        context = self.denet.context_logits(thumb)
        return context, self.denet.first_tile_logits(context)

    def _grid_step(self, x: Any, labels: Any, context: Any, logits: Any, visited: Any,
                   lstm_state: list[Any], *, training: bool, builtin_ops: bool = False,
                   warm: Any = None) -> tuple[Any, Any, list[Any], dict[str, Any]]:
        """One glimpse of the grid walk.

        Args:
            x: ``[B, H, W, 3]`` images in [0, 1].
            labels: ``[B]`` true classes (training) or ``None``.
            context: ``[B, num_tiles]`` tile saliency of :meth:`_grid_context`.
            logits, visited: ``[B, num_tiles]`` this glimpse's tile logits and the 0/1
                tiles already visited.
            lstm_state: DeNet's ``[h, c]``.
            training: draw the tile and the select action (else: their most probable value).
            builtin_ops, warm: as :meth:`_grid_rollout`.

        Returns:
            ``(next logits, visited, lstm_state, step)``; ``step`` holds ``"patch"``,
            ``"probs"``, ``"feats"``, ``"p"``, ``"select"``, ``"select_logp"``, ``"loc"``,
            ``"hot"`` (the tile taken, one-hot) and ``"log_pi"`` (the tile policy).
        """
        denet = self.denet
        log_pi = denet.tile_policy(logits, visited)
        draw_from = log_pi
        if warm is not None:
            draw_from = ops.where(warm, denet.tile_policy(ops.zeros_like(logits), visited),
                                  log_pi)
        hot, loc, _ = denet.sample_tile(draw_from, self.seed_generator,
                                        deterministic=not training, builtin_ops=builtin_ops)
        patch = self._crop(x, loc)
        feats, probs = self.classifier.features_and_probs(patch, training=False)
        feats, probs = ops.stop_gradient(feats), ops.stop_gradient(probs)
        pred = argmax(probs, -1, builtin_ops=builtin_ops)
        s = denet.make_state(feats, self.avg_train_loss, self.best_val_accuracy,
                             self.iteration, pred, labels, loc)
        p, head, lstm_state = denet.step(s, lstm_state, training=training)
        select, select_logp = denet.sample_select(p, self.seed_generator,
                                                  deterministic=not training)
        step = {"patch": patch, "probs": probs, "feats": feats, "p": p, "select": select,
                "select_logp": select_logp, "loc": loc, "hot": hot, "log_pi": log_pi}
        return head + context, visited + hot, lstm_state, step

    def _grid_walk(self, x: Any, context: Any, logits: Any, steps: int, *,
                   builtin_ops: bool = False) -> dict[str, Any]:
        """The inference walk of the grid policy as a loop over :meth:`_grid_step`.

        Why a loop: unrolled, every glimpse put its own copy of SaNet and DeNet into the
        traced graph (the demo model's TFLite file had 1,800 operators for 9 glimpses, and
        int8 weights shrank it only to 0.79x of fp32). ``keras.ops.fori_loop`` traces to one
        ``tf.while_loop`` whose body is one step; TFLite converts it to its builtin ``WHILE``
        op. The loop carries only fixed-shape tensors: each step's outputs are written into
        preallocated ``[B, steps, ...]`` tensors through a one-hot of the step index (an
        exact copy: ``x * 1 + 0``), not a ``TensorArray``, whose ``TensorList`` ops are not
        TFLite builtins. Eagerly the loop runs step by step in Python: the same numbers.

        Returns:
            ``{"probs" [B, steps, C], "p" [B, steps], "select" [B, steps],
            "loc" [B, steps, 2]}``.
        """
        batch = ops.shape(x)[0]
        visited = ops.zeros_like(context)
        h, c = self.denet.initial_state(batch)
        shapes = {"probs": (self.num_classes,), "p": (), "select": (), "loc": (2,)}
        slots = {key: ops.zeros((batch, steps) + shape, "float32")
                 for key, shape in shapes.items()}

        def body(t: Any, carry: tuple) -> tuple:
            logits, visited, h, c, slots = carry
            logits, visited, (h, c), step = self._grid_step(
                x, None, context, logits, visited, [h, c], training=False,
                builtin_ops=builtin_ops)
            hot_t = ops.one_hot(t, steps, dtype="float32")  # [steps]: slot t
            slots = {
                key: slots[key] + ops.reshape(hot_t, (1, steps) + (1,) * len(shape))
                * ops.expand_dims(ops.cast(step[key], "float32"), 1)
                for key, shape in shapes.items()
            }
            return logits, visited, h, c, slots

        *_, slots = ops.fori_loop(0, steps, body, (logits, visited, h, c, slots))
        return slots

    def infer(self, images: Any) -> dict[str, Any]:
        """Deterministic inference with ROIs.

        Args:
            images: ``[B, H, W, 3]`` uint8 (or float in [0, 255]) at ``image_size``.

        Returns:
            Dict with ``probs`` ``[B, C]``, ``boxes`` ``[B, k_max, 4]`` pixel
            ``(y0, x0, y1, x1)`` of the ROIs in voting order, ``n_rois`` ``[B]`` (how many of
            them voted), ``patch_probs`` ``[B, k_max, C]`` and ``select_prob`` ``[B, k_max]``.
        """
        return self._infer(images)

    def _infer(self, images: Any, builtin_ops: bool = False,
               noise_rows: int = 1) -> dict[str, Any]:
        x = self._scale(images)
        steps = self.walk_steps
        r = self._rollout(x, None, steps, training=False, builtin_ops=builtin_ops,
                          noise_rows=noise_rows)
        # Selected glimpses first, in order; then the rest by decreasing select probability.
        t = ops.cast(ops.arange(steps), "float32")[None, :]
        if self.roi_order == "probability":
            priority = 1.0 - r["p"]
        else:
            priority = ops.where(r["select"] > 0.5, t, steps + (1.0 - r["p"]))
        order = ops.argsort(priority, axis=1)[:, : self.k_max]
        take = ops.one_hot(order, steps)  # [B, k_max, steps]
        patch_probs = ops.einsum("bks,bsc->bkc", take, r["probs"])
        locs = ops.einsum("bks,bsc->bkc", take, r["loc"])
        probs, n_rois = vote(patch_probs, self.k, builtin_ops=builtin_ops)
        return {
            "probs": probs,
            "boxes": self.boxes(locs),
            "n_rois": n_rois,
            "patch_probs": patch_probs,
            "select_prob": ops.einsum("bks,bs->bk", take, r["p"]),
        }

    @property
    def spec_name(self) -> str:
        """This model's ``fit --model`` name (its row of :mod:`breastzoo.models.specs`)."""
        return "resnet50_roi" if self.classifier_name == "resnet50" else "denet_sanet"

    def serving_outputs(self, images: Any, *, builtin_ops: bool = False,
                        noise_rows: int = 1) -> dict[str, Any]:
        """The serving contract's outputs: ``{"probabilities" [B, C], "boxes" [B, k_max, 4],
        "n_rois" [B]}`` (see :mod:`breastzoo.export.serving`).

        Args:
            images: uint8 ``[B, H, W, 3]`` at ``image_size``.
            builtin_ops: only TFLite builtin ops (see :meth:`_rollout`); the same numbers.
            noise_rows: rows of the location-noise table (``builtin_ops`` only).

        Example:
            >>> import numpy as np
            >>> m = SelectiveAttention(2, image_size=(64, 48), patch_size=16, k=1, k_max=2,
            ...                        max_steps=2, width=2)
            >>> sorted(m.serving_outputs(np.zeros((1, 48, 64, 3), "uint8"), builtin_ops=True))
            ['boxes', 'n_rois', 'probabilities']
        """
        if builtin_ops:
            out = self._infer(images, builtin_ops=True, noise_rows=noise_rows)
        else:
            out = self.infer(images)
        return {"probabilities": out["probs"], "boxes": out["boxes"], "n_rois": out["n_rois"]}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.infer(inputs)["probs"]

    # ------------------------------------------------------------------ training

    def set_reward_batch(self, images: Any, labels: Any) -> None:
        """Fix the validation mini-batch that ``rp_source="batch"`` scores after every SaNet
        step (``training.fit_model`` sets it from the validation patients).

        Args:
            images: uint8 ``[N, H, W, 3]`` validation images at ``image_size``.
            labels: their ``N`` class indices.

        Example:
            >>> import numpy as np
            >>> m = SelectiveAttention(2, image_size=(64, 48), patch_size=16, k=1, k_max=2,
            ...                        max_steps=2, width=2, rp_source="batch")
            >>> m.set_reward_batch(np.zeros((2, 48, 64, 3), "uint8"), [0, 1])
        """
        import numpy as np

        images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
        width, height = self.image_size
        if images.ndim != 4 or images.shape[1:] != (height, width, 3) or (
                len(images) != len(labels) or len(labels) == 0):
            raise ValueError(
                f"The reward batch must be N >= 1 images of {height}x{width}x3 with N labels. "
                f"Received: images {images.shape}, labels {labels.shape}"
            )
        self._reward_batch.images, self._reward_batch.labels = images, labels.astype("int32")

    def _reward_batch_accuracy(self) -> Any:
        """Accuracy of the whole model (walk + vote) on the fixed reward batch."""
        if self._reward_batch.images is None:
            raise ValueError(
                "rp_source='batch' needs a fixed validation mini-batch: call "
                "set_reward_batch(images, labels) before fit (breastzoo.training.fit_model "
                "does)."
            )
        probs = self.infer(ops.convert_to_tensor(self._reward_batch.images))["probs"]
        hits = ops.equal(ops.argmax(probs, axis=-1), self._reward_batch.labels)
        return ops.mean(ops.cast(hits, "float32"))

    def _scalar_reward(self) -> Any:
        r = 0.0
        if "rp" in self.reward_terms:
            r = r + self.last_val_accuracy
        if "rc" in self.reward_terms:
            i_gamma = ops.where(self.i_gamma > 0, self.i_gamma, self.iteration + 1.0)
            r = r - ops.log(ops.maximum(i_gamma, 1.0) / self.t_prime)
        return ops.convert_to_tensor(r, "float32")

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        images, labels = data[0], data[1]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        x = self._scale(images)
        batch = ops.shape(x)[0]
        grid = self.location_policy == "grid"
        steps = self.walk_steps if grid else self.max_steps
        ps = self.patch_size
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # SaNet warm-up: uniformly random glimpses, the first k of each walk train SaNet, and
        # DeNet waits (its rewards would come from a classifier that knows nothing yet).
        warm = self.iteration < float(self.warmup_steps)

        with tf.GradientTape(persistent=True) as tape:
            if grid:
                r = self._grid_rollout(x, labels, steps, training=True, warm=warm)
            else:
                r = self._rollout(x, labels, steps, training=True)
            # The first k selected glimpses of each image train the classifier.
            select = r["select"]
            if self.warmup_steps:
                first_k = ops.cast(ops.arange(steps) < self.k, "float32")[None, :]
                select = ops.where(warm, first_k * ops.ones_like(select), select)
            if self.selection == "all":
                # Convergence baseline: SaNet trains on every glimpse DeNet visits.
                keep, chosen, n = ops.ones_like(select), r["patch"], steps
            else:
                keep = select * ops.cast(ops.cumsum(select, axis=1) <= self.k, "float32")
                # Gather those k slots so SaNet's forward and backward pass cost k patches per
                # image, not max_steps (the time saving the paper claims); images with fewer
                # than k selections fill the slots with unselected glimpses of weight 0.
                t = ops.cast(ops.arange(steps), "float32")[None, :]
                order = ops.argsort(ops.where(keep > 0, t, steps + t), axis=1)[:, : self.k]
                take = ops.one_hot(order, steps)  # [B, k, T]
                keep = ops.einsum("bkt,bt->bk", take, keep)
                chosen = ops.einsum("bkt,bthwc->bkhwc", take, r["patch"])
                n = self.k
            chosen = ops.reshape(chosen, (-1, ps, ps, 3))
            if self.patch_dihedral:
                chosen = random_dihedral(chosen, self.seed_generator)
            probs = self.classifier(chosen, training=True)
            probs = ops.reshape(probs, (batch, n, self.num_classes))
            true = ops.one_hot(labels, self.num_classes)[:, None, :]
            log_true = ops.log(ops.clip(ops.sum(probs * true, axis=-1), _EPS, 1.0))  # [B, n]
            n_keep = ops.sum(keep)
            # Keras scales only its built-in losses under tf.distribute; ours by hand.
            sanet_loss = -ops.sum(keep * log_true) / ops.maximum(n_keep, 1.0) / replicas

            # SaNet steps first (DeNet's loss below reads only this rollout's tensors), so
            # rp_source="batch" can score the fixed validation batch after this very step.
            cls_vars = self.classifier.trainable_variables
            with tape.stop_recording():
                self.optimizer.apply(tape.gradient(sanet_loss, cls_vars), cls_vars)
                if self.rp_source == "batch" and "rp" in self.reward_terms:
                    self.last_val_accuracy.assign(self._reward_batch_accuracy())

            reward = self._scalar_reward() * ops.ones((batch,))
            if self.reward == "per_image":
                per_img = ops.sum(keep * ops.stop_gradient(log_true), axis=1)
                n_img = ops.sum(keep, axis=1)
                chance = -math.log(self.num_classes)
                reward = reward + ops.where(n_img > 0, per_img / ops.maximum(n_img, 1.0), chance)
            if self.reward == "per_glimpse":
                # q_t: how well patch t shows the true class (what DeNet's classifier saw).
                q = ops.log(ops.clip(ops.sum(r["probs"] * true, axis=-1), _EPS, 1.0))
                if self.novelty_bonus and grid:
                    q = q + self.novelty_bonus * glimpse_novelty(r["feats"])
                reward = ops.mean(q, axis=1)
                if grid:
                    bern, move = r["select_logp"], r["move_logp"]
                else:
                    bern, move = self.denet.log_prob_parts(r["select"], r["next_loc"], r["p"],
                                                           r["mu"])
                denet_loss = per_glimpse_policy_loss(q, r["select"], bern, move,
                                                     aligned=grid) / replicas
            else:
                advantage = ops.stop_gradient(reward - self.baseline)
                denet_loss = -ops.mean(ops.sum(r["logp"], axis=1) * advantage) / replicas
            if self.entropy_bonus:
                denet_loss = denet_loss - self.entropy_bonus * ops.mean(
                    ops.sum(r["entropy"], axis=1)) / replicas
            if self.warmup_steps:
                denet_loss = denet_loss * (1.0 - ops.cast(warm, "float32"))

        den_vars = self.denet.trainable_variables
        self.denet_optimizer.apply(tape.gradient(denet_loss, den_vars), den_vars)
        del tape

        # Bookkeeping DeNet reads next iteration.
        it = self.iteration + 1.0
        loss_value = sanet_loss * replicas
        if replicas > 1:
            # DeNet's state input must agree on every replica (and worker): the global loss.
            loss_value = tf.distribute.get_replica_context().all_reduce("MEAN", loss_value)
        self.avg_train_loss.assign(self.avg_train_loss + (loss_value - self.avg_train_loss) / it)
        self.iteration.assign(it)
        # (rp_source="batch" comes with reward paper or per_image; __init__ refuses the rest.)
        if self.reward == "per_image" or self.rp_source == "batch":
            # A reward that changes every iteration gets a running baseline (eq. 10's b).
            self.baseline.assign(0.95 * self.baseline + 0.05 * ops.mean(reward))

        correct = ops.cast(ops.equal(ops.argmax(probs, axis=-1), labels[:, None]), "float32")
        self.trackers["loss"].update_state(loss_value)
        self.trackers["accuracy"].update_state(ops.sum(keep * correct) / ops.maximum(n_keep, 1.0))
        self.trackers["denet_loss"].update_state(denet_loss * replicas)
        self.trackers["reward"].update_state(ops.mean(reward))
        self.trackers["baseline"].update_state(self.baseline)
        self.trackers["select_rate"].update_state(ops.mean(r["select"]))
        self.trackers["entropy"].update_state(ops.mean(r["entropy"]))
        return {name: m.result() for name, m in self.trackers.items()}

    def test_step(self, data: Any) -> dict[str, Any]:
        images, labels = data[0], data[1]
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        out = self.infer(images)
        true = ops.one_hot(labels, self.num_classes)
        nll = -ops.log(ops.clip(ops.sum(out["probs"] * true, axis=-1), _EPS, 1.0))
        correct = ops.cast(ops.equal(ops.argmax(out["probs"], axis=-1), labels), "float32")
        # Per-image values, not batch means: a batch mean would weight the images of a short
        # last batch more than the others (53 validation images in batches of 4 scored as 56).
        self.trackers["loss"].update_state(nll)
        self.trackers["accuracy"].update_state(correct)
        return {name: self.trackers[name].result() for name in ("loss", "accuracy")}


class _RewardBatch:
    """Holds ``rp_source="batch"``'s fixed validation images and labels (numpy arrays)."""

    def __init__(self) -> None:
        self.images: Any = None
        self.labels: Any = None


def _read(variable: keras.Variable) -> float:
    # float() fails on a variable created under a tf.distribute strategy (MirroredVariable).
    return float(keras.ops.convert_to_numpy(variable.value))


class SelectiveRewardCallback(keras.callbacks.Callback):
    """Feeds the validation pass into DeNet's reward and state after every epoch.

    Sets r_p (latest validation accuracy), the best validation accuracy (Table I), i_Gamma
    (the iteration at which validation loss first fell below Gamma) and, for the paper's
    reward, the baseline b = mean reward of past epochs (eq. 10).
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        model = self.model
        val_acc = logs.get("val_accuracy")
        val_loss = logs.get("val_loss")
        if val_acc is not None:
            model.last_val_accuracy.assign(float(val_acc))
            model.best_val_accuracy.assign(max(_read(model.best_val_accuracy), float(val_acc)))
        if val_loss is not None and _read(model.i_gamma) == 0 and val_loss < model.gamma:
            model.i_gamma.assign(_read(model.iteration))
        if model.reward == "paper" and model.rp_source == "epoch" and "reward" in logs:
            n = _read(model.epochs_seen) + 1.0
            b = _read(model.baseline)
            model.baseline.assign(b + (float(logs["reward"]) - b) / n)
        model.epochs_seen.assign(_read(model.epochs_seen) + 1.0)
