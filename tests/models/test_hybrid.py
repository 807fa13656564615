"""Hybrid (paper 002): eq. (1) fusion, patch grid, separate branch training, round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from breastzoo.models.hybrid import Hybrid, fuse
from breastzoo.models.inception_sep import InceptionSEP
from tests.helpers import assert_keras_roundtrip

TINY = dict(grid=(2, 1), patch_size=32, width=0.125)


def _images(n: int, w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- fusion on hand-made numbers

# Three patches: the mean says class 0 (0.6), the majority (2 of 3 patches) says class 1.
PATCHES = np.array([[[0.9, 0.1], [0.45, 0.55], [0.45, 0.55]]], "float32")
GLOBAL = np.array([[0.2, 0.8]], "float32")


def test_fuse_mean_rule_is_lambda_weighted_average():
    fused = np.asarray(fuse(PATCHES, GLOBAL, lambda_=0.6, rule="mean"))
    # P_L = (0.6, 0.4); P = 0.6 * P_L + 0.4 * P_G
    np.testing.assert_allclose(fused, [[0.6 * 0.6 + 0.4 * 0.2, 0.6 * 0.4 + 0.4 * 0.8]],
                               rtol=1e-6)
    np.testing.assert_allclose(fused.sum(-1), 1.0, rtol=1e-6)


def test_fuse_lambda_extremes_select_one_branch():
    np.testing.assert_allclose(fuse(PATCHES, GLOBAL, lambda_=0.0), GLOBAL, rtol=1e-6)
    np.testing.assert_allclose(fuse(PATCHES, GLOBAL, lambda_=1.0), [[0.6, 0.4]], rtol=1e-6)


def test_fuse_max_rule_is_a_majority_vote():
    local_max = np.asarray(fuse(PATCHES, GLOBAL, lambda_=1.0, rule="max"))
    # votes (1, 2) plus the mean (0.6, 0.4), over N + 1 = 4
    np.testing.assert_allclose(local_max, [[1.6 / 4, 2.4 / 4]], rtol=1e-6)
    assert int(np.argmax(local_max)) == 1  # majority, although the mean says class 0
    assert int(np.argmax(fuse(PATCHES, GLOBAL, lambda_=1.0, rule="mean"))) == 0


def test_fuse_max_rule_tie_is_broken_by_mean_probability():
    tie = np.array([[[0.9, 0.1], [0.4, 0.6]]], "float32")  # one vote each
    assert int(np.argmax(fuse(tie, [[0.5, 0.5]], lambda_=1.0, rule="max"))) == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(rule="median"), "local_rule='median'"),
    (dict(lambda_=1.5), "lambda_=1.5"),
])
def test_fuse_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fuse(PATCHES, GLOBAL, **kwargs)


# ---------------------------------------------------------------- the model


def test_patch_grid_is_row_major_and_non_overlapping():
    # Image already at the local canvas size (2 columns x 2 rows of 32): the resize is exact.
    model = Hybrid(2, image_size=(64, 64), grid=(2, 2), patch_size=32, width=0.125)
    x = _images(1, 64, 64)
    glob, patches = model.inputs_of_branches(x)
    assert tuple(glob.shape) == (1, 32, 32, 3)
    assert tuple(patches.shape) == (1, 4, 32, 32, 3)
    scaled = x.astype("float32") / 255.0
    for i, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        expected = scaled[0, r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
        np.testing.assert_allclose(np.asarray(patches[0, i]), expected, atol=1e-5)
    assert model.grid_boxes()[1] == [0.0, 32.0, 32.0, 64.0]  # (y0, x0, y1, x1) of row 0, col 1


@pytest.mark.parametrize("rule", ["mean", "max"])
def test_call_fuses_the_two_branches(rule):
    model = Hybrid(3, image_size=(70, 46), lambda_=0.3, local_rule=rule, **TINY)
    x = _images(2, 70, 46)
    p_global, p_patch = model.branch_probs(x, training=False)
    assert tuple(p_patch.shape) == (2, 2, 3)
    expected = fuse(p_patch, p_global, 0.3, rule)
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-5, atol=1e-6)
    out = model.infer(x)
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-5, atol=1e-6)
    assert tuple(out["boxes"].shape) == (2, 2, 4)
    assert np.asarray(out["n_rois"]).tolist() == [2, 2]


def test_branches_are_inception_sep_with_their_own_channels():
    model = Hybrid(2, image_size=(70, 46), global_channels={"4e_1x1": 3}, **TINY)
    assert isinstance(model.global_branch, InceptionSEP)
    assert isinstance(model.local_branch, InceptionSEP)
    assert model.global_branch.channels["4e_1x1"] == 3
    assert model.local_branch.channels["4e_1x1"] == 32  # 256 * 0.125: unpruned
    assert model.get_config()["global_channels"] == {"4e_1x1": 3}


def test_keras_roundtrip_with_stain_normalisation(tmp_path):
    model = Hybrid(2, image_size=(70, 46), stain="reinhard", class_names=["benign", "malignant"],
                   magnification="200X", local_rule="max", **TINY)
    loaded = assert_keras_roundtrip(model, _images(2, 70, 46), tmp_path, atol=1e-5)
    assert loaded.class_names == ["benign", "malignant"] and loaded.grid == (2, 1)
    assert loaded.local_rule == "max" and loaded.lambda_ == pytest.approx(0.6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid=(0, 3)), "grid="),
    (dict(local_rule="vote"), "local_rule='vote'"),
    (dict(lambda_=-0.1), "lambda_=-0.1"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hybrid(2, **{**TINY, **kwargs})


# ---------------------------------------------------------------- training


def test_each_branch_gets_only_its_own_loss_gradient():
    model = Hybrid(2, image_size=(70, 46), **TINY)
    x, y = _images(2, 70, 46), np.array([0, 1], "int32")
    model(x)
    with tf.GradientTape(persistent=True) as tape:
        global_loss, local_loss, _ = model._branch_losses(x, y, training=True)
    g_vars = model.global_branch.trainable_variables
    l_vars = model.local_branch.trainable_variables
    assert all(g is None for g in tape.gradient(global_loss, l_vars))
    assert all(g is None for g in tape.gradient(local_loss, g_vars))
    assert all(g is not None for g in tape.gradient(global_loss, g_vars))
    assert all(g is not None for g in tape.gradient(local_loss, l_vars))


def test_train_step_updates_both_branches_and_reports_metrics():
    model = Hybrid(2, image_size=(70, 46), **TINY)
    x, y = _images(4, 70, 46), np.array([0, 1, 0, 1], "int32")
    model(x)
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)  # eager: fast here
    before = {v.path: np.array(v) for v in model.trainable_variables}
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "global_loss", "local_loss", "accuracy"}
    assert logs["loss"] == pytest.approx(logs["global_loss"] + logs["local_loss"], rel=1e-5)
    changed = {v.path for v in model.trainable_variables
               if not np.allclose(before[v.path], np.array(v))}
    assert any("/global_branch/" in p for p in changed)
    assert any("/local_branch/" in p for p in changed)
    val = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(val) == {"loss", "global_loss", "local_loss", "accuracy"}


@pytest.mark.slow
def test_graph_mode_fit_trains_both_branches():
    # The traced (tf.function) training path, as `breastzoo fit` runs it.
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 8, "int32")
    x = np.where(y[:, None, None, None] == 1, 200, 40).astype("uint8")
    x = np.broadcast_to(x, (16, 46, 70, 3)).copy()
    x = np.clip(x + rng.integers(-20, 20, x.shape), 0, 255).astype("uint8")
    model = Hybrid(2, image_size=(70, 46), dropout=0.0, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(x, y, batch_size=8, epochs=15, verbose=0).history
    for key in ("loss", "global_loss", "local_loss"):  # both branches learn, each on its own
        assert history[key][-1] < history[key][0], (key, history[key])
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
