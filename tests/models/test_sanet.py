"""SaNet: shapes, probabilities, the attention mask and eq. 4, training, serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from breastzoo.models import ResidualUnit, SaNet
from tests.helpers import assert_keras_roundtrip

TINY = {"width": 2, "feature_dim": 6, "patch_size": 32}


@pytest.fixture
def patches():
    return np.random.default_rng(0).uniform(0, 1, (3, 32, 32, 3)).astype("float32")


@pytest.fixture
def net():
    keras.utils.set_random_seed(0)
    return SaNet(num_classes=4, **TINY)


def test_shapes_and_probabilities(net, patches):
    probs = keras.ops.convert_to_numpy(net(patches))
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    feats, probs2 = net.features_and_probs(patches)
    assert feats.shape == (3, 6)
    assert np.all(keras.ops.convert_to_numpy(feats) >= 0.0)  # ReLU feature layer
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probs2), probs, atol=1e-6)


def test_any_patch_size(net):
    odd = np.random.default_rng(1).uniform(0, 1, (2, 37, 23, 3)).astype("float32")
    assert net(odd).shape == (2, 4)
    assert net.attention_mask(odd).shape == (2, 10, 6)  # ceil(37/4), ceil(23/4)
    assert net.attention_mask(odd, upsample=True).shape == (2, 37, 23)


def test_traces_with_unknown_size(net):
    # Height and width unknown at trace time: the mask branch must crop dynamically.
    fn = tf.function(
        lambda x: net.features_and_probs(x),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    feats, probs = fn(tf.random.uniform((2, 29, 34, 3)))
    assert feats.shape == (2, 6) and probs.shape == (2, 4)


def test_mask_in_unit_interval(net, patches):
    mask = keras.ops.convert_to_numpy(net.attention_mask(patches))
    assert mask.shape == (3, 8, 8)
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    full = keras.ops.convert_to_numpy(net.feature_maps(patches)["mask"])
    assert full.shape == (3, 8, 8, 8) and full.min() >= 0.0 and full.max() <= 1.0


def test_attention_is_one_plus_mask_times_trunk(net, patches):
    maps = {k: keras.ops.convert_to_numpy(v) for k, v in net.feature_maps(patches).items()}
    np.testing.assert_allclose(
        maps["attended"], (1.0 + maps["mask"]) * maps["trunk"], rtol=1e-5, atol=1e-6
    )
    before = keras.ops.convert_to_numpy(net(patches, training=False))

    # Drive the mask to ~0: the attended features become the trunk features (the residual
    # "worst case" of eq. 4) and the prediction changes, so the mask really modulates.
    kernel, bias = net.mask_conv.get_weights()
    net.mask_conv.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    maps0 = {k: keras.ops.convert_to_numpy(v) for k, v in net.feature_maps(patches).items()}
    assert maps0["mask"].max() < 1e-9
    np.testing.assert_allclose(maps0["attended"], maps0["trunk"], rtol=1e-6, atol=1e-6)
    after = keras.ops.convert_to_numpy(net(patches, training=False))
    assert not np.allclose(before, after)


def test_one_gradient_step_reduces_loss_and_reaches_mask(net, patches):
    labels = np.array([0, 1, 2])
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    optimizer = keras.optimizers.Adam(1e-2)

    def loss_and_grads():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, net(patches, training=True))
        return loss, tape.gradient(loss, net.trainable_variables)

    loss0, grads = loss_and_grads()
    by_path = {v.path: g for v, g in zip(net.trainable_variables, grads, strict=True)}
    assert all(g is not None for g in grads)
    mask_kernel = next(p for p in by_path if "mask_conv" in p and p.endswith("kernel"))
    assert float(tf.reduce_max(tf.abs(by_path[mask_kernel]))) > 0.0
    for _ in range(5):
        optimizer.apply(grads, net.trainable_variables)
        loss, grads = loss_and_grads()
    assert float(loss) < float(loss0)


def test_fit_with_compile(net, patches):
    # Eager: tracing the full train step (Adam's update graph especially) costs many seconds
    # on CPU; graph tracing of the forward pass is covered by test_traces_with_unknown_size.
    net.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=True,
    )
    history = net.fit(patches, np.array([0, 1, 2]), epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_roundtrip(net, patches, tmp_path):
    loaded = assert_keras_roundtrip(net, patches, tmp_path)
    assert loaded.patch_size == (32, 32)
    assert loaded.get_config()["width"] == 2


def test_roundtrip_residual_unit(tmp_path):
    inner = ResidualUnit(8, bottleneck=2, strides=2)
    model = keras.Sequential([keras.Input((9, 9, 4)), inner])
    assert model.output_shape == (None, 5, 5, 8)
    assert_keras_roundtrip(model, np.ones((1, 9, 9, 4), "float32"), tmp_path)


def test_rejects_integer_images(net):
    with pytest.raises(TypeError, match="dtype=uint8"):
        net(np.zeros((1, 32, 32, 3), np.uint8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": -1}, "width=-1"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"feature_dim": 0}, "feature_dim=0"),
        ({"patch_size": (1, 2, 3)}, "patch_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"num_classes": 3, "width": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SaNet(**args)
