"""DeNet: the recurrent decision network of paper 000 (Xu et al. 2020, Fig. 2, Table I, eqs. 1-3).

DeNet never sees pixels. At step t it reads the state S_t = C u Z (Table I): SaNet's feature
vector C of the patch cropped at l_{t-1} plus 7 scalars Z, and outputs

* ``select_prob`` p_t: the probability of the Bernoulli action "train SaNet on this patch";
* ``loc_mean`` mu_t in [0, 1]^2: the mean of the Gaussian policy for the next patch centre l_t.

State vector layout (``STATE_FIELDS``; raw, un-normalised; DeNet l2-normalises it itself)::

    [0 : feature_dim]   C   SaNet feature layer of the current patch (ReLU, 128-d)
    feature_dim + 0     average historical training loss / log(num_classes)
    feature_dim + 1     best validation accuracy so far, in [0, 1]
    feature_dim + 2     iteration number / max_iterations, clipped to [0, 1]
    feature_dim + 3     SaNet's predicted label / (num_classes - 1)
    feature_dim + 4     ground-truth label / (num_classes - 1)
    feature_dim + 5, 6  l_{t-1} = (y, x) patch centre as fractions of the image height / width

Build it with :func:`make_state` (or :meth:`DeNet.make_state`, which knows ``num_classes``).

Network (eqs. 1-3, then an LSTM and two sigmoid heads)::

    S -> l2-normalise -> C' = ReLU(W_c C + b_c)      (feature_units, default 16)
                         Z' = ReLU(W_z Z + b_z)      (z_units, default 8)
                         h  = ReLU(W_s [Z' || C'] + b_s)   (state_units, default 24)
      ``separate_encoders=False`` (ablation "-Eq. 3"): h = ReLU(W S + b), one FC(24)
    h -> LSTMCell(lstm_units, default 32) -> hidden o_t
    o_t -> Dense(1, sigmoid) = p_t;  o_t -> Dense(2, sigmoid) = mu_t

Choices where the paper is silent, all parameters:

* encoder and LSTM sizes (only the ablation's FC(24) is given; ``state_units=24`` matches it);
* scalars in Z are normalised to about [0, 1] as listed above; labels are single scalars as
  Table I lists length 1 for each (not one-hot);
* l2 normalisation ``state_norm="joint"`` divides the whole 135-d S by its norm, as the paper
  states ("l2 normalization to normalize input state features"); ``"separate"`` normalises C
  and Z separately (keeps Z from being swamped by C); ``"none"`` disables it;
* at inference the ground-truth label is unknown: ``inference_label="predicted"`` (default)
  feeds SaNet's predicted label in its place (the value it takes on correctly classified
  training patches), ``"zero"`` feeds 0; :meth:`DeNet.make_state` applies it when
  ``true_label=None``;
* the location policy is N(mu_t, sigma^2 I) with fixed ``loc_std`` (default 0.1) or a learned
  per-axis std (``learn_loc_std=True``); samples are clipped to [0, 1] and log-probabilities
  are evaluated at the clipped value, so :meth:`DeNet.log_prob` recomputes exactly what
  :meth:`DeNet.sample` returned;
* ``init="glorot"`` (default): Glorot-uniform encoder kernels, those reading the
  l2-normalised state scaled by sqrt(d) (see ``DeNet._input_gain``), the LSTM as Keras
  initialises it (Glorot-uniform input kernel, orthogonal recurrent kernel, forget-gate bias 1,
  other biases 0) and small output heads, N(0, 0.01^2) kernels with zero biases. The first
  policy is near-uniform (p and mu within ~2e-3 of 0.5), yet it already depends on the state
  (std over images ~1e-4) and gradients reach every layer;
* ``init="paper"``: the paper's stated init, every kernel (FC, LSTM input and recurrent)
  U(-0.01, 0.01), every bias 0 (LSTM forget-gate bias included, no unit-forget-bias). Each
  layer then shrinks its input about 100x, so p and mu are 0.5 to float32 resolution for
  every state: REINFORCE has no input-dependence to amplify and moves only the heads' biases
  (issue 12; ``tests/models/test_denet_policy.py``). Kept to reproduce the paper;
* ``init="random"`` (ablation "Random Initialisation"): kernels N(0, 1), biases 0.

Interface for the selective-attention model (``breastzoo.models.selective``)::

    denet = DeNet(num_classes=8)
    lstm_state = denet.initial_state(batch)                # [h, c], zeros
    loc = denet.initial_location(batch)                    # centre (0.5, 0.5) or random
    for t in range(max_steps):
        patch = crop(images, loc)                          # caller crops, any way it likes
        feats, probs = sanet.features_and_probs(patch)
        s = denet.make_state(feats, avg_loss, best_val_acc, iteration,
                             argmax(probs), labels_or_None, loc)
        p, mu, lstm_state = denet.step(s, lstm_state)
        select, loc, logp = denet.sample(p, mu, seed_generator)   # or deterministic=True
    # REINFORCE (eq. 10): record the states and actions, then inside the GradientTape
    # recompute p, mu = denet(states) over [B, T, state_dim] and
    # loss = -sum_t denet.log_prob(select_t, loc_t, p_t, mu_t) * (R - b).

``denet(states)`` (``call``) runs the LSTM over a whole recorded state sequence ``[B, T, D]``
and returns ``(select_probs [B, T], loc_means [B, T, 2])``: the same numbers as stepping.

Example:
    >>> import numpy as np
    >>> denet = DeNet(num_classes=8, feature_dim=4)
    >>> s = np.random.rand(2, denet.state_dim).astype("float32")
    >>> p, mu, state = denet.step(s, denet.initial_state(2))
    >>> p.shape, mu.shape
    (TensorShape([2]), TensorShape([2, 2]))
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from breastzoo.checks import one_of, positive_int

__all__ = [
    "HEAD_STD",
    "INFERENCE_LABELS",
    "INITS",
    "LOCATION_POLICIES",
    "STATE_FIELDS",
    "STATE_NORMS",
    "Z_DIM",
    "DeNet",
    "make_state",
]

Z_FIELDS: tuple[str, ...] = (
    "avg_train_loss",
    "best_val_accuracy",
    "iteration",
    "predicted_label",
    "true_label",
    "loc_y",
    "loc_x",
)
Z_DIM = len(Z_FIELDS)
STATE_FIELDS: tuple[str, ...] = ("features",) + Z_FIELDS
INITS: tuple[str, ...] = ("glorot", "paper", "random")
STATE_NORMS: tuple[str, ...] = ("joint", "separate", "none")
INFERENCE_LABELS: tuple[str, ...] = ("predicted", "zero")
LOC_POLICIES: tuple[str, ...] = ("center", "random")
#: How DeNet picks the next glimpse: the paper's Gaussian over [0, 1]^2, or a categorical
#: over a grid of candidate tiles with inhibition of return (not the paper; issue 12).
LOCATION_POLICIES: tuple[str, ...] = ("gaussian", "grid")
#: Low-resolution pixels per grid tile side in the ``"grid"`` policy's context thumbnail.
CONTEXT_CELL = 8
#: Logit added to tiles already visited (inhibition of return); exp() of it is exactly 0.
_VISITED_LOGIT = -1e9
_EPS = 1e-7
_LOG_2PI = math.log(2.0 * math.pi)
#: Std of the output heads' kernels under ``init="glorot"``: small, so the first policy is
#: near-uniform and the REINFORCE updates start from an unbiased explorer.
HEAD_STD = 0.01


def _column(value: Any, batch: Any) -> Any:
    """A scalar or ``[B]`` value as a float32 ``[B, 1]`` column."""
    v = ops.cast(ops.convert_to_tensor(value), "float32")
    v = ops.reshape(v, (-1, 1))
    return ops.broadcast_to(v, (batch, 1))


def make_state(
    features: Any,
    avg_loss: Any,
    best_val_acc: Any,
    iteration: Any,
    pred_label: Any,
    true_label: Any,
    prev_loc: Any,
    *,
    num_classes: int,
    max_iterations: int = 200,
) -> Any:
    """Assemble the raw (un-normalised) DeNet state S = C u Z of Table I.

    Args:
        features: ``[B, feature_dim]`` SaNet feature layer of the current patches (C).
        avg_loss: scalar or ``[B]`` average historical training loss (cross-entropy); divided
            by ``log(num_classes)``, the loss of a uniform guess, so about [0, 1].
        best_val_acc: scalar or ``[B]`` best validation accuracy so far, in [0, 1].
        iteration: scalar or ``[B]`` passed iteration number; divided by ``max_iterations``
            and clipped to [0, 1].
        pred_label: ``[B]`` SaNet's predicted class indices; divided by ``num_classes - 1``.
        true_label: ``[B]`` ground-truth class indices (same scaling); at inference pass the
            substitute chosen by the caller (see ``DeNet.inference_label``).
        prev_loc: ``[B, 2]`` previous patch centre (y, x) as fractions of the image size.
        num_classes: number of classes, for label scaling.
        max_iterations: the iteration normaliser (paper's T' = 200 by default).

    Returns:
        float32 ``[B, feature_dim + 7]``.

    Raises:
        ValueError: ``num_classes < 2`` or ``max_iterations < 1``.

    Example:
        >>> import numpy as np
        >>> s = make_state(np.ones((2, 4)), 0.7, 0.5, 10, [1, 2], [1, 1], np.full((2, 2), 0.5),
        ...                num_classes=3)
        >>> s.shape
        TensorShape([2, 11])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2. Received: num_classes={num_classes!r}")
    positive_int("max_iterations", max_iterations)
    c = ops.cast(ops.convert_to_tensor(features), "float32")
    batch = ops.shape(c)[0]
    label_scale = 1.0 / (num_classes - 1)
    z = [
        _column(avg_loss, batch) / math.log(num_classes),
        _column(best_val_acc, batch),
        ops.clip(_column(iteration, batch) / float(max_iterations), 0.0, 1.0),
        _column(pred_label, batch) * label_scale,
        _column(true_label, batch) * label_scale,
        ops.reshape(ops.cast(ops.convert_to_tensor(prev_loc), "float32"), (-1, 2)),
    ]
    return ops.concatenate([c] + z, axis=-1)


@keras.saving.register_keras_serializable(package="breastzoo")
class DeNet(keras.Model):
    """LSTM decision network: state S_t -> (select probability, next-location mean).

    Args:
        num_classes: classes of the SaNet it drives (for label scaling in :meth:`make_state`).
        feature_dim: length of SaNet's feature vector C (128 in the paper).
        feature_units: size l' of the encoded C' (eq. 1).
        z_units: size u' of the encoded Z' (eq. 2).
        state_units: size q of h (eq. 3) and of the single FC of the "-Eq. 3" ablation (24).
        lstm_units: LSTM hidden size.
        separate_encoders: ``True`` = eqs. 1-3; ``False`` = ablation "-Eq. 3", one FC+ReLU.
        init: one of :data:`INITS`: ``"glorot"`` (Glorot encoders, Keras' LSTM init, small
            N(0, 0.01^2) heads), ``"paper"`` (U(-0.01, 0.01) kernels, zero biases) or
            ``"random"`` (N(0, 1) kernels). Only the construction of fresh weights depends on
            it; loading a saved model restores its weights whatever ``init`` says.
        state_norm: ``"joint"`` (paper), ``"separate"`` or ``"none"`` l2 normalisation of S.
        loc_std: standard deviation of the Gaussian location policy (initial value if learned).
        learn_loc_std: learn a per-axis log-std instead of keeping ``loc_std`` fixed.
        inference_label: what :meth:`make_state` feeds as the ground-truth label when it is
            unknown: ``"predicted"`` (SaNet's prediction) or ``"zero"``.
        max_iterations: the iteration normaliser of :meth:`make_state` (paper's T' = 200).
        seed: seed of the ``init`` initialisers (``None`` = Keras' global seeding).
        location_policy: ``"gaussian"`` (the paper: N(mu_t, sigma^2) over [0, 1]^2) or
            ``"grid"`` (not the paper): a categorical over the ``grid_shape`` tiles of
            :meth:`tile_locations`, with inhibition of return (a visited tile gets probability
            0). Its logits are the LSTM's tile head plus a per-image tile saliency that a
            small convolutional context network reads from a low-resolution thumbnail of the
            whole image (:meth:`context_logits`, the "context network" of Ba et al. 2015's
            deep recurrent attention model). The paper's DeNet never sees pixels, so its
            first glimpse, and every move away from tissue that shows nothing, is blind.
        grid_shape: ``(rows, cols)`` of the tile grid (``"grid"`` only).
        **kwargs: passed to ``keras.Model``.

    Call:
        ``denet(states)`` with ``states`` float ``[B, T, feature_dim + 7]`` returns
        ``(select_probs [B, T], loc_means [B, T, 2])`` by stepping the LSTM from zeros.

    Example:
        >>> import numpy as np
        >>> denet = DeNet(num_classes=2, feature_dim=4, lstm_units=8)
        >>> p, mu = denet(np.random.rand(3, 5, 11).astype("float32"))
        >>> p.shape, mu.shape
        (TensorShape([3, 5]), TensorShape([3, 5, 2]))
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int = 128,
        feature_units: int = 16,
        z_units: int = 8,
        state_units: int = 24,
        lstm_units: int = 32,
        separate_encoders: bool = True,
        init: str = "glorot",
        state_norm: str = "joint",
        loc_std: float = 0.1,
        learn_loc_std: bool = False,
        inference_label: str = "predicted",
        max_iterations: int = 200,
        seed: int | None = None,
        location_policy: str = "gaussian",
        grid_shape: tuple[int, int] | list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.location_policy = one_of("location_policy", location_policy, LOCATION_POLICIES)
        if self.location_policy == "grid":
            if grid_shape is None or len(grid_shape) != 2:
                raise ValueError(
                    "The grid location policy needs grid_shape=(rows, cols). "
                    f"Received: grid_shape={grid_shape!r}"
                )
            self.grid_shape: tuple[int, int] | None = (
                positive_int("grid rows", grid_shape[0]), positive_int("grid cols", grid_shape[1])
            )
        else:
            self.grid_shape = None
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        self.num_classes = num_classes
        self.feature_dim = positive_int("feature_dim", feature_dim)
        self.feature_units = positive_int("feature_units", feature_units)
        self.z_units = positive_int("z_units", z_units)
        self.state_units = positive_int("state_units", state_units)
        self.lstm_units = positive_int("lstm_units", lstm_units)
        self.separate_encoders = bool(separate_encoders)
        self.init = one_of("init", init, INITS)
        self.state_norm = one_of("state_norm", state_norm, STATE_NORMS)
        self.inference_label = one_of("inference_label", inference_label, INFERENCE_LABELS)
        self.max_iterations = positive_int("max_iterations", max_iterations)
        if not (isinstance(loc_std, int | float) and math.isfinite(loc_std) and loc_std > 0):
            raise ValueError(f"loc_std must be a positive number. Received: loc_std={loc_std!r}")
        self.loc_std = float(loc_std)
        self.learn_loc_std = bool(learn_loc_std)
        self.seed = seed
        self.state_dim = self.feature_dim + Z_DIM

        dense = self._dense_kwargs
        if self.separate_encoders:
            self.feature_encoder = layers.Dense(
                self.feature_units,
                activation="relu",
                name="feature_encoder",
                **dense(0, gain=self._input_gain("features")),
            )
            self.z_encoder = layers.Dense(
                self.z_units,
                activation="relu",
                name="z_encoder",
                **dense(1, gain=self._input_gain("z")),
            )
            state_gain = 1.0
        else:
            self.feature_encoder = None
            self.z_encoder = None
            state_gain = self._input_gain("state")
        self.state_encoder = layers.Dense(
            self.state_units, activation="relu", name="state_encoder", **dense(2, gain=state_gain)
        )
        self.lstm = layers.LSTMCell(
            self.lstm_units,
            kernel_initializer=self._kernel_init(3),
            recurrent_initializer=self._kernel_init(4, "recurrent"),
            bias_initializer="zeros",
            # Keras' default forget-gate bias of 1 (remember by default) for "glorot"; the
            # paper initialises every bias to 0.
            unit_forget_bias=self.init == "glorot",
            name="lstm",
        )
        self.select_head = layers.Dense(
            1, activation="sigmoid", name="select_head", **dense(5, "head")
        )
        self.loc_head = None
        if self.grid_shape is None:
            self.loc_head = layers.Dense(2, activation="sigmoid", name="loc_head",
                                         **dense(6, "head"))
        self.log_loc_std = None
        self.tile_head = None
        self.context_net = None
        if self.grid_shape is not None:
            # Tile logits from the LSTM: where to go next given what was seen so far.
            self.tile_head = layers.Dense(self.num_tiles, name="tile_head", **dense(7, "head"))
            # Per-tile saliency from a thumbnail with CONTEXT_CELL^2 pixels per tile: two 3x3
            # convolutions, average-pooled to one 16-d vector per tile, then one score. The
            # last layer is a small head, so the first policy is near-uniform.
            self.context_net = keras.Sequential(
                [
                    layers.Conv2D(16, 3, padding="same", activation="relu",
                                  name="context_conv1", **dense(8)),
                    layers.Conv2D(16, 3, padding="same", activation="relu",
                                  name="context_conv2", **dense(9)),
                    layers.AveragePooling2D(CONTEXT_CELL, name="context_pool"),
                    layers.Dense(16, activation="relu", name="context_dense", **dense(10)),
                    layers.Dense(1, name="context_score", **dense(11, "head")),
                ],
                name="context_net",
            )

    # ------------------------------------------------------------------ initialisers

    def _input_gain(self, part: str) -> float:
        """Gain of the ``init="glorot"`` kernel of a layer reading the normalised state.

        Glorot's scale assumes inputs of unit variance per element; an l2-normalised vector of
        length d has per-element rms 1/sqrt(d) (1/sqrt(135) = 0.086 for the paper's joint
        norm), so a plain Glorot first layer starts ~sqrt(d) too small, and the LSTM (which
        contracts small inputs further) passes the heads almost no state-dependence (issue 12:
        the ``tiny`` preset's first select probability varied by 6e-6 across 8 distinct images
        without the gain, 6e-5 with it). The gain sqrt(d) restores unit-scale pre-activations.

        Args:
            part: ``"features"`` (C encoder), ``"z"`` (Z encoder) or ``"state"`` (the single
                FC of the "-Eq. 3" ablation, reading all of S).

        Returns:
            ``sqrt(d)`` for the length d of the unit vector the layer reads (1 if
            ``state_norm="none"``).

        Example:
            >>> DeNet(num_classes=2, feature_dim=9, state_norm="separate")._input_gain("z")
            2.6457513110645907
        """
        if self.state_norm == "none":
            return 1.0
        if self.state_norm == "joint":
            return math.sqrt(self.state_dim)
        sizes = {"features": self.feature_dim, "z": Z_DIM, "state": self.state_dim / 2.0}
        # "separate" with one FC: two unit vectors side by side, norm sqrt(2) over state_dim.
        return math.sqrt(sizes[part])

    def _kernel_init(
        self, offset: int, role: str = "hidden", gain: float = 1.0
    ) -> keras.initializers.Initializer:
        """Kernel initialiser of one layer under ``self.init``.

        Args:
            offset: added to ``seed`` so that seeded layers do not share identical weights.
            role: ``"hidden"`` (encoders, LSTM input kernel), ``"recurrent"`` (LSTM
                recurrent kernel) or ``"head"`` (select and location heads); only
                ``init="glorot"`` treats them differently.
            gain: multiplier of a ``"hidden"`` Glorot-uniform kernel (``init="glorot"`` only).

        Returns:
            A seeded Keras initializer.

        Example:
            >>> DeNet(num_classes=2)._kernel_init(5, "head").stddev
            0.01
        """
        seed = None if self.seed is None else self.seed + offset
        if self.init == "paper":
            return keras.initializers.RandomUniform(-0.01, 0.01, seed=seed)
        if self.init == "random":
            return keras.initializers.RandomNormal(0.0, 1.0, seed=seed)
        if role == "head":
            # Small heads, as on-policy RL practice recommends: the first policy is
            # near-uniform (max explorer), but their input, the LSTM output, is state-dependent
            # and O(0.1), so their gradients and (under Adam) their growth are too.
            return keras.initializers.RandomNormal(0.0, HEAD_STD, seed=seed)
        if role == "recurrent":
            return keras.initializers.Orthogonal(seed=seed)
        # Glorot-uniform scaled by gain: variance gain^2 * 2 / (fan_in + fan_out).
        return keras.initializers.VarianceScaling(
            gain**2, mode="fan_avg", distribution="uniform", seed=seed
        )

    def _dense_kwargs(self, offset: int, role: str = "hidden", gain: float = 1.0) -> dict[str, Any]:
        return {
            "kernel_initializer": self._kernel_init(offset, role, gain),
            "bias_initializer": "zeros",
        }

    # ------------------------------------------------------------------ Keras plumbing

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        if shape[-1] != self.state_dim:
            raise ValueError(
                f"DeNet expects states of length feature_dim + {Z_DIM} = {self.state_dim}. "
                f"Received: input_shape={shape}"
            )
        if self.separate_encoders:
            self.feature_encoder.build((None, self.feature_dim))
            self.z_encoder.build((None, Z_DIM))
            self.state_encoder.build((None, self.feature_units + self.z_units))
        else:
            self.state_encoder.build((None, self.state_dim))
        self.lstm.build((None, self.state_units))
        self.select_head.build((None, self.lstm_units))
        if self.loc_head is not None:
            self.loc_head.build((None, self.lstm_units))
        else:
            self.tile_head.build((None, self.lstm_units))
            rows, cols = self.grid_shape
            self.context_net.build((None, rows * CONTEXT_CELL, cols * CONTEXT_CELL, 3))
        if self.learn_loc_std:
            self.log_loc_std = self.add_weight(
                shape=(2,),
                initializer=keras.initializers.Constant(math.log(self.loc_std)),
                name="log_loc_std",
            )
        self.built = True

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "feature_dim": self.feature_dim,
                "feature_units": self.feature_units,
                "z_units": self.z_units,
                "state_units": self.state_units,
                "lstm_units": self.lstm_units,
                "separate_encoders": self.separate_encoders,
                "init": self.init,
                "state_norm": self.state_norm,
                "loc_std": self.loc_std,
                "learn_loc_std": self.learn_loc_std,
                "inference_label": self.inference_label,
                "max_iterations": self.max_iterations,
                "seed": self.seed,
                "location_policy": self.location_policy,
                "grid_shape": None if self.grid_shape is None else list(self.grid_shape),
            }
        )
        return config

    def _ensure_built(self, state_dim: int | None) -> None:
        if not self.built:
            self.build((None, self.state_dim if state_dim is None else state_dim))

    # ------------------------------------------------------------------ state

    def make_state(
        self,
        features: Any,
        avg_loss: Any,
        best_val_acc: Any,
        iteration: Any,
        pred_label: Any,
        true_label: Any | None,
        prev_loc: Any,
    ) -> Any:
        """:func:`make_state` with this model's ``num_classes``, ``max_iterations`` and
        ``inference_label`` (used when ``true_label`` is ``None``).

        Example:
            >>> import numpy as np
            >>> d = DeNet(num_classes=3, feature_dim=2)
            >>> d.make_state(np.ones((1, 2)), 1.0, 0.5, 3, [2], None, [[0.5, 0.5]]).shape
            TensorShape([1, 9])
        """
        if true_label is None:
            true_label = pred_label if self.inference_label == "predicted" else 0.0
        return make_state(
            features,
            avg_loss,
            best_val_acc,
            iteration,
            pred_label,
            true_label,
            prev_loc,
            num_classes=self.num_classes,
            max_iterations=self.max_iterations,
        )

    def normalize_state(self, state: Any) -> Any:
        """l2-normalise a raw ``[B, state_dim]`` state according to ``state_norm``.

        Example:
            >>> import numpy as np
            >>> DeNet(num_classes=2, feature_dim=1).normalize_state(np.full((1, 8), 2.0)).shape
            TensorShape([1, 8])
        """
        s = ops.cast(ops.convert_to_tensor(state), self.compute_dtype)
        if self.state_norm == "none":
            return s

        def l2(x: Any) -> Any:
            return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + _EPS)

        if self.state_norm == "joint":
            return l2(s)
        return ops.concatenate([l2(s[:, : self.feature_dim]), l2(s[:, self.feature_dim :])], -1)

    def encode(self, state: Any) -> Any:
        """Eqs. 1-3 (or the "-Eq. 3" single FC): raw ``[B, state_dim]`` -> ``[B, state_units]``."""
        s = self.normalize_state(state)
        if not self.separate_encoders:
            return self.state_encoder(s)
        c = self.feature_encoder(s[:, : self.feature_dim])
        z = self.z_encoder(s[:, self.feature_dim :])
        # Eq. 3 concatenates Z' before C'.
        return self.state_encoder(ops.concatenate([z, c], axis=-1))

    # ------------------------------------------------------------------ stepping

    def initial_state(self, batch_size: int | Any) -> list[Any]:
        """Zero LSTM state ``[h, c]``, each ``[batch_size, lstm_units]``.

        Example:
            >>> [t.shape for t in DeNet(num_classes=2, lstm_units=4).initial_state(3)]
            [TensorShape([3, 4]), TensorShape([3, 4])]
        """
        return [ops.zeros((batch_size, self.lstm_units), dtype=self.compute_dtype)] * 2

    def initial_location(
        self, batch_size: int | Any, policy: str = "center", seed_generator: Any = None
    ) -> Any:
        """The first location l_0 (the paper does not say; centre by default).

        Args:
            batch_size: number of images.
            policy: ``"center"`` (0.5, 0.5) or ``"random"`` (uniform in [0, 1]^2).
            seed_generator: ``keras.random.SeedGenerator`` or int seed for ``"random"``.

        Returns:
            float ``[batch_size, 2]`` (y, x) fractions of the image size.

        Example:
            >>> DeNet(num_classes=2).initial_location(1).numpy().tolist()
            [[0.5, 0.5]]
        """
        one_of("policy", policy, LOC_POLICIES)
        if policy == "center":
            return ops.full((batch_size, 2), 0.5, dtype=self.compute_dtype)
        return keras.random.uniform((batch_size, 2), seed=seed_generator, dtype=self.compute_dtype)

    def step(self, state: Any, lstm_state: list[Any], training: bool | None = None) -> tuple:
        """One decision step: raw state S_t and LSTM state -> (p_t, mu_t, new LSTM state).

        Args:
            state: raw ``[B, state_dim]`` state from :meth:`make_state`.
            lstm_state: ``[h, c]`` from :meth:`initial_state` or the previous step.
            training: passed to the layers (no dropout or BN here; kept for symmetry).

        Returns:
            ``(select_prob [B] in (0, 1), loc_mean [B, 2] in (0, 1), [h, c])``; under the
            ``"grid"`` policy the middle value is the LSTM's tile logits ``[B, num_tiles]``
            (add :meth:`context_logits` and mask visited tiles with :meth:`tile_policy`).

        Example:
            >>> import numpy as np
            >>> d = DeNet(num_classes=2, feature_dim=1)
            >>> p, mu, st = d.step(np.ones((1, 8), "float32"), d.initial_state(1))
            >>> float(p[0]) > 0
            True
        """
        self._ensure_built(None)
        h = self.encode(state)
        out, new_state = self.lstm(h, list(lstm_state), training=training)
        select_prob = ops.squeeze(self.select_head(out), axis=-1)
        loc_mean = self.tile_head(out) if self.grid_shape is not None else self.loc_head(out)
        return select_prob, loc_mean, list(new_state)

    def call(self, inputs: Any, training: bool | None = None) -> tuple[Any, Any]:
        if len(inputs.shape) != 3:
            raise ValueError(f"DeNet expects [B, T, state_dim] inputs. Received: {inputs.shape}")
        steps = inputs.shape[1]
        if steps is None:
            raise ValueError("DeNet.call needs a static number of steps T. Received: T=None")
        lstm_state = self.initial_state(ops.shape(inputs)[0])
        probs, locs = [], []
        for t in range(steps):
            p, mu, lstm_state = self.step(inputs[:, t, :], lstm_state, training=training)
            probs.append(p)
            locs.append(mu)
        return ops.stack(probs, axis=1), ops.stack(locs, axis=1)

    # ------------------------------------------------------------------ policy

    def location_std(self) -> Any:
        """Per-axis std ``[2]`` of the Gaussian location policy (fixed or learned)."""
        if self.log_loc_std is not None:
            return ops.exp(self.log_loc_std)
        return ops.full((2,), self.loc_std, dtype=self.compute_dtype)

    def sample(
        self,
        select_prob: Any,
        loc_mean: Any,
        seed_generator: Any = None,
        deterministic: bool = False,
    ) -> tuple[Any, Any, Any]:
        """Sample the two actions and their joint log-probability.

        Args:
            select_prob: ``[B]`` Bernoulli parameters p_t.
            loc_mean: ``[B, 2]`` Gaussian means mu_t.
            seed_generator: ``keras.random.SeedGenerator`` (or int seed) for stochastic mode.
            deterministic: inference mode: select = (p_t > 0.5), loc = mu_t, no randomness.

        Returns:
            ``(select [B] float 0/1, loc [B, 2] in [0, 1], log_prob [B])``; actions carry no
            gradient, ``log_prob`` is differentiable w.r.t. ``select_prob`` and ``loc_mean``.

        Example:
            >>> import numpy as np, keras
            >>> d = DeNet(num_classes=2)
            >>> sel, loc, lp = d.sample(np.array([0.9]), np.array([[0.2, 0.7]]),
            ...                         keras.random.SeedGenerator(0))
            >>> sel.shape, loc.shape, lp.shape
            (TensorShape([1]), TensorShape([1, 2]), TensorShape([1]))
        """
        p = ops.cast(ops.convert_to_tensor(select_prob), self.compute_dtype)
        mu = ops.cast(ops.convert_to_tensor(loc_mean), self.compute_dtype)
        if deterministic:
            select = ops.cast(p > 0.5, self.compute_dtype)
            loc = ops.clip(mu, 0.0, 1.0)
        else:
            if seed_generator is None:
                raise ValueError(
                    "Stochastic sampling needs a keras.random.SeedGenerator. "
                    "Received: seed_generator=None"
                )
            dtype = self.compute_dtype
            u = keras.random.uniform(ops.shape(p), seed=seed_generator, dtype=dtype)
            select = ops.cast(u < p, dtype)
            noise = keras.random.normal(ops.shape(mu), seed=seed_generator, dtype=dtype)
            loc = ops.clip(mu + noise * self.location_std(), 0.0, 1.0)
        select = ops.stop_gradient(select)
        loc = ops.stop_gradient(loc)
        return select, loc, self.log_prob(select, loc, p, mu)

    def log_prob(self, select: Any, loc: Any, select_prob: Any, loc_mean: Any) -> Any:
        """log pi(select, loc | S) = log Bernoulli(select; p) + log N(loc; mu, sigma^2 I).

        Args:
            select: ``[B]`` 0/1 actions.
            loc: ``[B, 2]`` locations.
            select_prob: ``[B]`` p_t.
            loc_mean: ``[B, 2]`` mu_t.

        Returns:
            ``[B]`` log-probabilities (probabilities clipped to [1e-7, 1 - 1e-7]).

        Example:
            >>> import numpy as np
            >>> d = DeNet(num_classes=2, loc_std=1.0)
            >>> round(float(d.log_prob([1.0], [[0.0, 0.0]], [0.5], [[0.0, 0.0]])[0]), 4)
            -2.531
        """
        bern, gauss = self.log_prob_parts(select, loc, select_prob, loc_mean)
        return bern + gauss

    def log_prob_parts(
        self, select: Any, loc: Any, select_prob: Any, loc_mean: Any
    ) -> tuple[Any, Any]:
        """The two terms of :meth:`log_prob` apart, for rewards that credit each action.

        Args:
            select: 0/1 actions, any shape ``S``.
            loc: locations ``S + [2]``.
            select_prob: p_t, shape ``S``.
            loc_mean: mu_t, shape ``S + [2]``.

        Returns:
            ``(log Bernoulli(select; p), log N(loc; mu, sigma^2 I))``, each of shape ``S``.

        Example:
            >>> d = DeNet(num_classes=2, loc_std=1.0)
            >>> bern, gauss = d.log_prob_parts([1.0], [[0.0, 0.0]], [0.5], [[0.0, 0.0]])
            >>> round(float(bern[0]), 4), round(float(gauss[0]), 4)
            (-0.6931, -1.8379)
        """
        dtype = self.compute_dtype
        a = ops.cast(ops.convert_to_tensor(select), dtype)
        p = ops.clip(ops.cast(ops.convert_to_tensor(select_prob), dtype), _EPS, 1.0 - _EPS)
        bern = a * ops.log(p) + (1.0 - a) * ops.log(1.0 - p)
        std = self.location_std()
        z = (ops.cast(ops.convert_to_tensor(loc), dtype) - ops.cast(loc_mean, dtype)) / std
        gauss = ops.sum(-0.5 * ops.square(z) - ops.log(std) - 0.5 * _LOG_2PI, axis=-1)
        return bern, gauss

    def entropy(self, select_prob: Any) -> Any:
        """Entropy of the joint policy: Bernoulli(p) + Gaussian(sigma) over both axes.

        The Gaussian part does not depend on the mean; with a fixed std it is a constant, so an
        entropy bonus then acts on the select action only.

        Args:
            select_prob: ``[B]`` p_t.

        Returns:
            ``[B]`` entropies in nats.

        Example:
            >>> round(float(DeNet(num_classes=2, loc_std=1.0).entropy([0.5])[0]), 4)
            3.531
        """
        dtype = self.compute_dtype
        p = ops.clip(ops.cast(ops.convert_to_tensor(select_prob), dtype), _EPS, 1.0 - _EPS)
        bern = -(p * ops.log(p) + (1.0 - p) * ops.log(1.0 - p))
        if self.grid_shape is not None:  # the move's entropy is tile_entropy's
            return bern
        gauss = ops.sum(0.5 * (_LOG_2PI + 1.0) + ops.log(self.location_std()))
        return bern + gauss

    # ------------------------------------------------------------------ grid policy

    @property
    def num_tiles(self) -> int:
        """Number of candidate tiles of the ``"grid"`` policy (0 for ``"gaussian"``)."""
        return 0 if self.grid_shape is None else self.grid_shape[0] * self.grid_shape[1]

    def tile_locations(self) -> Any:
        """``[num_tiles, 2]`` float32 (y, x) locations in [0, 1]^2 of the grid tiles, row-major.

        Locations 0 and 1 put a window flush with the image border, so ``rows`` and ``cols``
        evenly spaced values cover the whole image whenever ``rows * window >= height``.

        Example:
            >>> DeNet(2, location_policy="grid", grid_shape=(2, 3)).tile_locations().tolist()[:3]
            [[0.0, 0.0], [0.0, 0.5], [0.0, 1.0]]
        """
        import numpy as np

        if self.grid_shape is None:
            raise ValueError("tile_locations needs location_policy='grid'.")
        rows, cols = self.grid_shape

        def axis(n: int) -> Any:
            return np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])

        yy, xx = np.meshgrid(axis(rows), axis(cols), indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=-1).astype("float32")

    def context_logits(self, thumbnail: Any) -> Any:
        """Per-image tile saliency ``[B, num_tiles]`` from a ``[B, rows * CONTEXT_CELL,
        cols * CONTEXT_CELL, 3]`` thumbnail of the whole image in [0, 1].

        Example:
            >>> import numpy as np
            >>> d = DeNet(2, location_policy="grid", grid_shape=(2, 3))
            >>> d.context_logits(np.zeros((1, 16, 24, 3), "float32")).shape
            TensorShape([1, 6])
        """
        self._ensure_built(None)
        score = self.context_net(ops.convert_to_tensor(thumbnail, self.compute_dtype))
        return ops.reshape(score, (-1, self.num_tiles))

    def first_tile_logits(self, context: Any) -> Any:
        """Logits of the first glimpse: the tile head at a zero LSTM output plus the context.

        Example:
            >>> import numpy as np
            >>> d = DeNet(2, location_policy="grid", grid_shape=(1, 2))
            >>> d.first_tile_logits(np.zeros((3, 2), "float32")).shape
            TensorShape([3, 2])
        """
        self._ensure_built(None)
        # A zero LSTM output leaves the tile head's bias.
        return ops.cast(context, self.compute_dtype) + self.tile_head.bias[None, :]

    def tile_policy(self, logits: Any, visited: Any) -> Any:
        """Log-probabilities ``[B, num_tiles]`` over the tiles not yet visited.

        Args:
            logits: ``[B, num_tiles]`` tile logits (head + context).
            visited: ``[B, num_tiles]`` 0/1; a visited tile gets log-probability about -1e9.

        Example:
            >>> import numpy as np
            >>> d = DeNet(2, location_policy="grid", grid_shape=(1, 2))
            >>> lp = d.tile_policy(np.zeros((1, 2), "float32"), np.array([[1.0, 0.0]]))
            >>> round(float(np.exp(lp[0, 1])), 3)
            1.0
        """
        masked = ops.cast(logits, self.compute_dtype) + _VISITED_LOGIT * ops.cast(
            visited, self.compute_dtype
        )
        return ops.log_softmax(masked, axis=-1)

    def sample_tile(
        self, log_probs: Any, seed_generator: Any = None, deterministic: bool = False, *,
        builtin_ops: bool = False,
    ) -> tuple[Any, Any, Any]:
        """Pick the next tile: a draw (training) or the most probable tile (inference).

        Args:
            log_probs: ``[B, num_tiles]`` from :meth:`tile_policy`.
            seed_generator: ``keras.random.SeedGenerator`` for draws.
            deterministic: take the argmax: deterministic per image, whatever the batch.
            builtin_ops: argmax with ``tf.argmax`` (a TFLite builtin).

        Returns:
            ``(one_hot [B, num_tiles], loc [B, 2], log_prob [B])``; the one-hot and location
            carry no gradient, ``log_prob`` does.

        Example:
            >>> import numpy as np
            >>> d = DeNet(2, location_policy="grid", grid_shape=(1, 2))
            >>> hot, loc, lp = d.sample_tile(np.log([[0.2, 0.8]]), deterministic=True)
            >>> loc.numpy().tolist()
            [[0.5, 1.0]]
        """
        from breastzoo.models.shared_ops import argmax

        log_probs = ops.cast(ops.convert_to_tensor(log_probs), self.compute_dtype)
        if deterministic:
            index = argmax(log_probs, -1, builtin_ops=builtin_ops)
        else:
            if seed_generator is None:
                raise ValueError(
                    "Stochastic sampling needs a keras.random.SeedGenerator. "
                    "Received: seed_generator=None"
                )
            index = ops.squeeze(keras.random.categorical(log_probs, 1, seed=seed_generator),
                                axis=-1)
        hot = ops.stop_gradient(ops.one_hot(index, self.num_tiles, dtype=self.compute_dtype))
        loc = ops.matmul(hot, ops.convert_to_tensor(self.tile_locations(), self.compute_dtype))
        return hot, loc, ops.sum(hot * log_probs, axis=-1)

    def sample_select(
        self, select_prob: Any, seed_generator: Any = None, deterministic: bool = False
    ) -> tuple[Any, Any]:
        """The select action alone (the grid policy draws its move with :meth:`sample_tile`).

        Args:
            select_prob: ``[B]`` p_t.
            seed_generator: ``keras.random.SeedGenerator`` for draws.
            deterministic: select = (p_t > 0.5).

        Returns:
            ``(select [B] 0/1 without gradient, log Bernoulli(select; p) [B])``.

        Example:
            >>> d = DeNet(2, location_policy="grid", grid_shape=(1, 2))
            >>> sel, lp = d.sample_select([0.9], deterministic=True)
            >>> float(sel[0]), round(float(lp[0]), 4)
            (1.0, -0.1054)
        """
        dtype = self.compute_dtype
        p = ops.cast(ops.convert_to_tensor(select_prob), dtype)
        if deterministic:
            select = ops.cast(p > 0.5, dtype)
        else:
            if seed_generator is None:
                raise ValueError(
                    "Stochastic sampling needs a keras.random.SeedGenerator. "
                    "Received: seed_generator=None"
                )
            select = ops.cast(keras.random.uniform(ops.shape(p), seed=seed_generator,
                                                   dtype=dtype) < p, dtype)
        select = ops.stop_gradient(select)
        q = ops.clip(p, _EPS, 1.0 - _EPS)
        return select, select * ops.log(q) + (1.0 - select) * ops.log(1.0 - q)

    def tile_entropy(self, log_probs: Any) -> Any:
        """Entropy ``[B]`` (nats) of the tile policy over the tiles not yet visited.

        Example:
            >>> import numpy as np
            >>> d = DeNet(2, location_policy="grid", grid_shape=(1, 2))
            >>> round(float(d.tile_entropy(np.log([[0.5, 0.5]]))[0]), 4)
            0.6931
        """
        log_probs = ops.cast(ops.convert_to_tensor(log_probs), self.compute_dtype)
        return -ops.sum(ops.exp(log_probs) * ops.maximum(log_probs, -1e4), axis=-1)
