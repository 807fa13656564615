"""TF-MOT magnitude pruning on Keras 3: the import guard, the callback, baked masks, gzip."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from breastzoo.pruning.magnitude import (
    MagnitudePruning,
    gzip_size,
    gzip_weights_size,
    import_tfmot,
    prunable_kernels,
    sparsity,
)

_CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np, keras
    mode = sys.argv[1]
    if mode == "raw":
        import tensorflow_model_optimization  # noqa: F401
    else:
        from breastzoo.pruning.magnitude import import_tfmot
        import_tfmot()
    print("ENV", os.environ.get("TF_USE_LEGACY_KERAS"))
    import tensorflow as tf
    print("TFKERAS", tf.keras.__name__)
    if mode == "guarded":
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(np.ones((8, 4), "float32"), np.zeros(8), epochs=1, verbose=0)
        path = os.path.join(sys.argv[2], "m.keras")
        model.save(path)
        keras.saving.load_model(path, safe_mode=True)
        print("SAVED", type(model).__module__)
    """
)


def _child(mode: str, tmp_path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    return out.stdout


@pytest.mark.slow  # 11 s: a fresh interpreter
def test_import_guard_keeps_keras3_in_a_fresh_process(tmp_path):
    # Unguarded, TF-MOT switches tf.keras to Keras 2 for the whole process ...
    raw = _child("raw", tmp_path)
    assert "ENV 1" in raw and "TFKERAS tf_keras" in raw
    # ... guarded, nothing changes and a Keras 3 model trains, saves and reloads.
    guarded = _child("guarded", tmp_path)
    assert "ENV None" in guarded and "TFKERAS keras." in guarded
    assert "SAVED keras" in guarded


def test_import_guard_restores_existing_value(monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "0")
    assert import_tfmot().__name__ == "tensorflow_model_optimization"
    assert os.environ["TF_USE_LEGACY_KERAS"] == "0"
    assert keras.__version__.startswith("3")


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])


def test_callback_prunes_during_training_and_bakes(tmp_path):
    model = _model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6, 6, 2)).astype("float32"), rng.integers(0, 2, 32)
    dense_size = sparsity(model)["nonzero_params"]
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = MagnitudePruning(0.75, end_step=8, frequency=2)
    history = model.fit(x, y, epochs=3, batch_size=8, callbacks=[callback], verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    stats = sparsity(model)
    for kernel in prunable_kernels(model):
        zeros = (keras.ops.convert_to_numpy(kernel) == 0).mean()
        assert zeros == pytest.approx(0.75, abs=0.02)
    assert stats["nonzero_params"] < 0.4 * dense_size
    path = tmp_path / "sparse.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert sparsity(reloaded)["zeros"] == stats["zeros"]
    # TF-MOT's size figure: gzip of the weights alone (zeros compress).
    assert gzip_weights_size(model) < 0.6 * gzip_weights_size(_model())
    assert gzip_size(path) > 0


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sparsity"):
        MagnitudePruning(1.0, end_step=10)
    with pytest.raises(ValueError, match="end_step"):
        MagnitudePruning(0.5, end_step=0)
    with pytest.raises(FileNotFoundError):
        gzip_size(tmp_path / "missing.keras")
