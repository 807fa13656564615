"""count_macs / complexity: exact counts on small layers, grouped and recurrent layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from breastzoo.models.complexity import complexity, count_macs


def test_dense_and_conv_exact():
    dense = keras.Sequential([keras.layers.Dense(3)])
    assert count_macs(dense, np.zeros((1, 4), "float32")) == 12
    conv = keras.Sequential([keras.layers.Conv2D(5, 3, strides=2, padding="same")])
    # 4x4 output positions x 3x3x2 kernel x 5 filters.
    assert count_macs(conv, np.zeros((1, 8, 8, 2), "float32")) == 16 * 9 * 2 * 5


def test_per_sample_and_grouped():
    conv = keras.Sequential([keras.layers.Conv2D(4, 1, groups=2)])
    one = count_macs(conv, np.zeros((1, 3, 3, 4), "float32"))
    assert one == 9 * 2 * 4
    assert count_macs(conv, np.zeros((5, 3, 3, 4), "float32")) == one


def test_depthwise_separable_and_lstm():
    dw = keras.Sequential([keras.layers.DepthwiseConv2D(3, padding="same")])
    assert count_macs(dw, np.zeros((1, 4, 4, 2), "float32")) == 16 * 9 * 2
    sep = keras.Sequential([keras.layers.SeparableConv2D(3, 3, padding="same")])
    assert count_macs(sep, np.zeros((1, 4, 4, 2), "float32")) == 16 * (9 * 2 + 2 * 3)
    lstm = keras.Sequential([keras.layers.LSTM(5)])
    # Cells inside the layer are not counted twice.
    assert count_macs(lstm, np.zeros((2, 7, 3), "float32")) == 7 * 4 * (3 + 5) * 5


def test_patches_restored_and_params():
    from keras.src.layers.convolutional.base_conv import BaseConv

    before = BaseConv.__dict__["call"]
    model = keras.Sequential([keras.layers.Conv2D(2, 1), keras.layers.Dense(3)])
    result = complexity(model, np.zeros((1, 2, 2, 1), "float32"))
    assert BaseConv.__dict__["call"] is before
    assert result == {"params": 4 + 9, "macs": 4 * 2 + 4 * 2 * 3}


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        count_macs(keras.Sequential([keras.layers.Dense(1)]), np.zeros((1, 2)), batch_size=0)
