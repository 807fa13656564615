"""DeNet: shapes, ranges, initialisation, policy maths, state normalisation, serialisation."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from breastzoo.models import DeNet, make_state
from breastzoo.models.denet import Z_DIM
from tests.helpers import assert_keras_roundtrip

FEAT = 6
TINY = {"num_classes": 4, "feature_dim": FEAT, "lstm_units": 8, "seed": 3}


def states(batch=3, steps=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, FEAT + Z_DIM) if steps is None else (batch, steps, FEAT + Z_DIM)
    return rng.uniform(0, 2, shape).astype("float32")


def np_(x):
    return keras.ops.convert_to_numpy(x)


def test_step_shapes_and_ranges():
    denet = DeNet(**TINY, init="random")  # larger weights: outputs away from 0.5
    p, mu, lstm_state = denet.step(states(), denet.initial_state(3))
    assert p.shape == (3,) and mu.shape == (3, 2)
    assert [t.shape for t in lstm_state] == [(3, 8), (3, 8)]
    assert np.all((np_(p) > 0) & (np_(p) < 1))
    assert np.all((np_(mu) > 0) & (np_(mu) < 1))
    assert denet.state_dim == FEAT + 7


def test_paper_init_is_small_uniform_with_zero_biases():
    denet = DeNet(**TINY, init="paper")  # no longer the default (issue 12)
    denet.build((None, denet.state_dim))
    kernels = [v for v in denet.weights if "kernel" in v.name]
    biases = [v for v in denet.weights if "bias" in v.name]
    # 4 FC layers (C, Z, state encoders) + 2 heads + LSTM input and recurrent kernels.
    assert len(kernels) == 7 and len(biases) == 6
    for v in kernels:
        w = np_(v)
        assert np.abs(w).max() <= 0.01, v.path
        assert np.abs(w).max() > 0.001, v.path  # actually random, not zeros
    for v in biases:
        assert np.all(np_(v) == 0.0), v.path


def test_glorot_init_is_the_default_with_scaled_encoders_keras_lstm_and_small_heads():
    denet = DeNet(**TINY)
    denet.build((None, denet.state_dim))
    assert denet.init == "glorot"
    w = np_(denet.feature_encoder.kernel)
    # Glorot-uniform limit times the sqrt(state_dim) gain for the l2-normalised input.
    limit = math.sqrt(6.0 / (FEAT + 16)) * math.sqrt(FEAT + Z_DIM)
    assert np.abs(w).max() <= limit and np.abs(w).max() > limit / 2
    units = TINY["lstm_units"]
    bias = np_(denet.lstm.bias)
    # Keras' unit forget bias: gates i, f, c, o; f starts at 1 so the cell remembers.
    np.testing.assert_array_equal(bias[units : 2 * units], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[units : 2 * units]), 0.0)
    recurrent = np_(denet.lstm.recurrent_kernel)
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(units), atol=1e-5)  # orthogonal
    for head in (denet.select_head, denet.loc_head):
        assert np.abs(np_(head.kernel)).max() < 0.05  # N(0, 0.01^2): near-uniform policy
        np.testing.assert_array_equal(np_(head.bias), 0.0)
    p, mu, _ = denet.step(states(), denet.initial_state(3))
    assert np.abs(np_(p) - 0.5).max() < 0.01 and np.abs(np_(mu) - 0.5).max() < 0.01


def test_random_init_is_standard_normal():
    denet = DeNet(**{**TINY, "feature_dim": 128}, init="random")
    denet.build((None, denet.state_dim))
    w = np_(denet.feature_encoder.kernel).ravel()
    assert abs(w.mean()) < 0.1 and 0.9 < w.std() < 1.1


def test_ablation_single_encoder():
    denet = DeNet(**TINY, separate_encoders=False)
    denet.build((None, denet.state_dim))
    assert denet.feature_encoder is None and denet.z_encoder is None
    assert tuple(denet.state_encoder.kernel.shape) == (FEAT + 7, 24)
    p, mu, _ = denet.step(states(), denet.initial_state(3))
    assert p.shape == (3,) and mu.shape == (3, 2)


def test_state_normalisation():
    s = states()
    joint = DeNet(**TINY)
    np.testing.assert_allclose(np.linalg.norm(np_(joint.normalize_state(s)), axis=1), 1.0, 1e-5)
    separate = np_(DeNet(**TINY, state_norm="separate").normalize_state(s))
    np.testing.assert_allclose(np.linalg.norm(separate[:, :FEAT], axis=1), 1.0, 1e-5)
    np.testing.assert_allclose(np.linalg.norm(separate[:, FEAT:], axis=1), 1.0, 1e-5)
    np.testing.assert_allclose(np_(DeNet(**TINY, state_norm="none").normalize_state(s)), s)
    # A normalised state makes the decision invariant to the scale of the raw state.
    joint = DeNet(**TINY, init="random")
    a = joint.step(s, joint.initial_state(3))
    b = joint.step(5.0 * s, joint.initial_state(3))
    np.testing.assert_allclose(np_(a[0]), np_(b[0]), rtol=1e-5)
    np.testing.assert_allclose(np_(a[1]), np_(b[1]), rtol=1e-5)


def test_make_state_layout_and_inference_label():
    feats = np.ones((2, FEAT), "float32")
    s = np_(
        make_state(
            feats,
            math.log(4),
            0.8,
            100,
            [3, 0],
            [1, 2],
            [[0.25, 0.5], [1.0, 0.0]],
            num_classes=4,
            max_iterations=200,
        )
    )
    assert s.shape == (2, FEAT + 7)
    np.testing.assert_allclose(s[:, :FEAT], 1.0)
    np.testing.assert_allclose(s[0, FEAT:], [1.0, 0.8, 0.5, 1.0, 1 / 3, 0.25, 0.5], rtol=1e-6)
    np.testing.assert_allclose(s[1, FEAT:], [1.0, 0.8, 0.5, 0.0, 2 / 3, 1.0, 0.0], rtol=1e-6)
    late = np_(make_state(feats, 0.0, 0.0, 10_000, [0, 0], [0, 0], np.zeros((2, 2)), num_classes=4))
    assert np.all(late[:, FEAT + 2] == 1.0)  # iteration clipped to [0, 1]
    # At inference the unknown true label is replaced by the prediction, or by 0.
    predicted = np_(DeNet(**TINY).make_state(feats, 1.0, 0.5, 3, [3, 0], None, np.zeros((2, 2))))
    np.testing.assert_allclose(predicted[:, FEAT + 4], predicted[:, FEAT + 3])
    zero = np_(
        DeNet(**TINY, inference_label="zero").make_state(
            feats, 1.0, 0.5, 3, [3, 0], None, np.zeros((2, 2))
        )
    )
    np.testing.assert_allclose(zero[:, FEAT + 4], 0.0)


@pytest.mark.parametrize("learn_loc_std", [False, True])
def test_log_prob_and_entropy_match_numpy(learn_loc_std):
    denet = DeNet(**TINY, loc_std=0.2, learn_loc_std=learn_loc_std)
    denet.build((None, denet.state_dim))
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 5)
    mu = rng.uniform(0, 1, (5, 2))
    select = np.array([1, 0, 1, 1, 0], dtype="float32")
    loc = rng.uniform(0, 1, (5, 2))
    sigma = 0.2
    ref = (
        select * np.log(p)
        + (1 - select) * np.log(1 - p)
        + np.sum(-0.5 * ((loc - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), axis=1)
    )
    np.testing.assert_allclose(np_(denet.log_prob(select, loc, p, mu)), ref, rtol=1e-4)
    entropy = np_(denet.entropy(p))
    ref_entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p)) + 2 * 0.5 * np.log(
        2 * np.pi * np.e * sigma**2
    )
    assert np.all(np.isfinite(entropy))
    np.testing.assert_allclose(entropy, ref_entropy, rtol=1e-4)
    # Extreme probabilities stay finite (clipped).
    assert np.all(
        np.isfinite(np_(denet.log_prob([1.0, 0.0], [[0, 0]] * 2, [0.0, 1.0], [[0, 0]] * 2)))
    )
    assert np.all(np.isfinite(np_(denet.entropy([0.0, 1.0]))))
    if learn_loc_std:
        assert any("log_loc_std" in v.path for v in denet.trainable_variables)


def test_sampling_deterministic_and_seeded():
    denet = DeNet(**TINY)
    p = np.array([0.2, 0.7, 0.51], "float32")
    mu = np.array([[0.1, 0.9], [0.5, 0.5], [0.0, 1.0]], "float32")
    a = denet.sample(p, mu, deterministic=True)
    b = denet.sample(p, mu, deterministic=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np_(x), np_(y))
    np.testing.assert_array_equal(np_(a[0]), [0.0, 1.0, 1.0])
    np.testing.assert_allclose(np_(a[1]), mu)
    np.testing.assert_allclose(np_(a[2]), np_(denet.log_prob(a[0], a[1], p, mu)), rtol=1e-6)

    s1 = denet.sample(p, mu, keras.random.SeedGenerator(7))
    s2 = denet.sample(p, mu, keras.random.SeedGenerator(7))
    np.testing.assert_array_equal(np_(s1[1]), np_(s2[1]))
    # Stochastic draws follow p and stay in [0, 1].
    many = np.full((4000,), 0.3, "float32")
    sel, loc, logp = denet.sample(
        many, np.full((4000, 2), 0.95, "float32"), keras.random.SeedGenerator(1)
    )
    assert abs(float(np.mean(np_(sel))) - 0.3) < 0.03
    assert np_(loc).min() >= 0.0 and np_(loc).max() <= 1.0
    np.testing.assert_allclose(
        np_(logp), np_(denet.log_prob(sel, loc, many, np.full((4000, 2), 0.95))), rtol=1e-5
    )
    with pytest.raises(ValueError, match="seed_generator=None"):
        denet.sample(p, mu)


def test_call_over_sequence_matches_stepping_and_gradients_flow():
    denet = DeNet(**TINY, init="random")
    seq = states(batch=2, steps=4)
    p_seq, mu_seq = denet(seq)
    assert p_seq.shape == (2, 4) and mu_seq.shape == (2, 4, 2)
    lstm_state = denet.initial_state(2)
    for t in range(4):
        p, mu, lstm_state = denet.step(seq[:, t], lstm_state)
        np.testing.assert_allclose(np_(p), np_(p_seq[:, t]), rtol=1e-5)
        np.testing.assert_allclose(np_(mu), np_(mu_seq[:, t]), rtol=1e-5)
    # REINFORCE: the log-probability of fixed actions is differentiable w.r.t. every weight.
    select = np.ones((2, 4), "float32")
    loc = np.full((2, 4, 2), 0.3, "float32")
    with tf.GradientTape() as tape:
        p_seq, mu_seq = denet(seq, training=True)
        loss = -tf.reduce_sum(denet.log_prob(select, loc, p_seq, mu_seq))
    grads = tape.gradient(loss, denet.trainable_variables)
    assert all(g is not None for g in grads)
    assert all(np.all(np.isfinite(np_(g))) for g in grads)


def test_step_traces_in_tf_function():
    denet = DeNet(**TINY)
    generator = keras.random.SeedGenerator(0)

    @tf.function
    def rollout(s):
        lstm_state = denet.initial_state(tf.shape(s)[0])
        p, mu, lstm_state = denet.step(s, lstm_state)
        return denet.sample(p, mu, generator)

    sel, loc, logp = rollout(tf.constant(states()))
    assert sel.shape == (3,) and loc.shape == (3, 2) and logp.shape == (3,)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"separate_encoders": False, "learn_loc_std": True, "state_norm": "separate"}],
)
def test_roundtrip(tmp_path, kwargs):
    denet = DeNet(**TINY, init="random", **kwargs)
    loaded = assert_keras_roundtrip(denet, states(batch=2, steps=3), tmp_path)
    for key, value in kwargs.items():
        assert getattr(loaded, key) == value


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"init": "xavier"}, "init='xavier'"),
        ({"state_norm": "l1"}, "state_norm='l1'"),
        ({"lstm_units": 0}, "lstm_units=0"),
        ({"loc_std": -0.1}, "loc_std=-0.1"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"inference_label": "true"}, "inference_label='true'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeNet(**{**TINY, **kwargs})


def test_wrong_state_length():
    denet = DeNet(**TINY)
    with pytest.raises(ValueError, match="feature_dim \\+ 7 = 13"):
        denet(np.zeros((1, 2, 5), "float32"))
