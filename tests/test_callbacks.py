"""Validation scores through ``infer`` and keeping the best epoch across resumes."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import balanced_accuracy_score

from breastzoo.callbacks import BalancedAccuracy, KeepBest, ValidationScores


def test_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    y[y == 2] = rng.integers(0, 2, (y == 2).sum()) * 2  # unequal class sizes
    probs = rng.random((200, 3))
    m = BalancedAccuracy(3)
    m.update_state(y[:120], probs[:120])
    m.update_state(y[120:], probs[120:])
    assert float(m.result()) == np.float32(balanced_accuracy_score(y, probs.argmax(-1)))
    m.reset_state()
    m.update_state([1, 1], [[0.2, 0.8, 0.0], [0.9, 0.1, 0.0]])  # only class 1 present
    assert float(m.result()) == 0.5


class _Const(keras.Model):
    """infer() returns fixed probabilities per image: class 0 for everything."""

    def __init__(self) -> None:
        super().__init__()
        self.w = keras.layers.Dense(2)

    def call(self, x):
        return self.w(x)

    def infer(self, x):
        n = tf.shape(x)[0]
        return {"probs": tf.tile([[0.9, 0.1]], [n, 1])}


def test_validation_scores_are_per_image_and_balanced():
    x = np.zeros((5, 3), "float32")
    y = np.array([0, 0, 0, 0, 1])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)  # short last batch
    cb = ValidationScores(ds, 2)
    model = _Const()
    model(x)
    cb.set_model(model)
    logs: dict = {}
    cb.on_epoch_end(0, logs)
    assert logs["val_accuracy"] == 0.8  # 4 of 5 images, not a mean of batch means
    assert logs["val_balanced_accuracy"] == 0.5  # a one-class caller is at chance
    np.testing.assert_allclose(logs["val_loss"], (4 * -np.log(0.9) - np.log(0.1)) / 5,
                               rtol=1e-5)


def test_keep_best_keeps_the_best_epoch_and_survives_a_resume(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = KeepBest(tmp_path)
    cb.set_model(model)
    model.layers[0].kernel.assign(np.full((2, 1), 1.0))
    cb.on_epoch_end(0, {"val_balanced_accuracy": 0.7, "val_loss": 0.5})
    model.layers[0].kernel.assign(np.full((2, 1), 2.0))
    cb.on_epoch_end(1, {"val_balanced_accuracy": 0.6, "val_loss": 0.1})
    # A resumed run: a new callback object must still know epoch 0 was best.
    cb2 = KeepBest(tmp_path)
    cb2.set_model(model)
    model.layers[0].kernel.assign(np.full((2, 1), 3.0))
    cb2.on_epoch_end(2, {"val_balanced_accuracy": 0.65, "val_loss": 0.2})
    assert cb2.best()["epoch"] == 0
    # A tie on the score goes to the lower validation loss.
    cb2.on_epoch_end(3, {"val_balanced_accuracy": 0.7, "val_loss": 0.4})
    assert cb2.best()["epoch"] == 3
    record = cb2.restore(model)
    assert record["epoch"] == 3
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.full((2, 1), 3.0))
