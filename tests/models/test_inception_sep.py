"""InceptionSEP branch (paper 002): acceptance counts, shapes, gates, training, serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from breastzoo.models.complexity import count_macs
from breastzoo.models.inception_sep import (
    HEAD_MODULES,
    MODULES,
    InceptionSEP,
    SEPBlock,
    default_channels,
)
from tests.helpers import assert_keras_roundtrip

TINY = 0.125


@pytest.fixture
def images():
    return np.random.default_rng(0).uniform(0, 1, (2, 40, 36, 3)).astype("float32")


def test_paper_size_params_and_macs():
    # Acceptance figures of PAPERS.md B: 3.77 M params (+-1 %), 1.46 G MACs (+-3 %).
    net = InceptionSEP(num_classes=2)
    macs = count_macs(net, np.zeros((1, 224, 224, 3), "float32"))
    assert abs(net.count_params() - 3.77e6) <= 0.01 * 3.77e6, net.count_params()
    assert abs(macs - 1.46e9) <= 0.03 * 1.46e9, macs


def test_paper_widths_and_head():
    net = InceptionSEP(num_classes=2)
    assert [net.module_channels(m) for m in MODULES] == [256, 480, 512, 512, 512, 528, 832]
    assert sum(net.module_channels(m) for m in HEAD_MODULES) == 2384
    net.build((None, 224, 224, 3))
    assert tuple(net.classifier.kernel.shape) == (2384, 2)
    assert net.channels["3a_se"] == 16 and net.channels["4e_se"] == 52


def test_shapes_probabilities_and_gates(images):
    keras.utils.set_random_seed(0)
    net = InceptionSEP(num_classes=3, width=TINY)
    probs = keras.ops.convert_to_numpy(net(images))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    gates = net.se_gates(images)
    assert list(gates) == list(MODULES)
    for module, g in gates.items():
        g = keras.ops.convert_to_numpy(g)
        assert g.shape == (2, net.module_channels(module))
        assert np.all((g >= 0) & (g <= 1))


def test_small_inputs_and_bad_arguments():
    net = InceptionSEP(num_classes=2, width=TINY)
    assert net(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 2)
    with pytest.raises(TypeError, match="float"):
        net(np.zeros((1, 32, 32, 3), "uint8"))
    with pytest.raises(ValueError, match="Received: channels"):
        InceptionSEP(2, channels={"nope": 3})
    with pytest.raises(ValueError, match="width"):
        default_channels(0)
    with pytest.raises(ValueError, match="dropout"):
        InceptionSEP(2, dropout=1.5)


def test_sep_block_scales_by_gates():
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, 3, 8)).astype("float32")
    block = SEPBlock(2)
    y = keras.ops.convert_to_numpy(block(x))
    s = keras.ops.convert_to_numpy(block.gates(x))
    np.testing.assert_allclose(y, x * s[:, None, None, :], rtol=1e-6)


def test_trains(images):
    keras.utils.set_random_seed(0)
    net = InceptionSEP(num_classes=2, width=TINY, dropout=0.0)
    # Eager: tracing this ~6000-op training graph takes a minute on 2 busy cores, while a
    # few eager steps take seconds.
    net.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                run_eagerly=True)
    history = net.fit(images, np.array([0, 1]), epochs=3, batch_size=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_keras_roundtrip_with_explicit_channels(images, tmp_path):
    channels = dict(default_channels(TINY))
    channels["4b_1x1"] = 3
    channels["3a_pool"] = 1
    net = InceptionSEP(num_classes=2, width=TINY, channels=channels)
    loaded = assert_keras_roundtrip(net, images, tmp_path)
    assert loaded.channels == channels
