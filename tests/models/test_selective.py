"""SelectiveAttention: train_step updates both networks, vote tie-break, inference, round-trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from breastzoo.models.selective import (
    SelectiveAttention,
    SelectiveRewardCallback,
    per_glimpse_policy_loss,
    vote,
)
from tests.helpers import assert_keras_roundtrip

W, H = 64, 48


def tiny(**kw) -> SelectiveAttention:
    args = dict(
        num_classes=3,
        image_size=(W, H),
        patch_size=16,
        k=3,
        k_max=5,
        max_steps=4,
        width=2,
        feature_dim=8,
        seed=1,
    )
    args.update(kw)
    return SelectiveAttention(**args)


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, H, W, 3), dtype=np.uint8), rng.integers(0, 3, (n,))


def test_vote_majority_and_tie_break():
    eye = np.eye(3, dtype="float32")
    probs, n = vote(eye[[0, 0, 0, 1, 2, 1]][None], k=5)  # 3-1-1 -> decided at 5
    assert int(np.argmax(probs[0])) == 0 and int(n[0]) == 5
    probs, n = vote(eye[[0, 0, 1, 1, 2, 1, 0]][None], k=5)  # 2-2-1 tie -> 6th ROI decides
    assert int(np.argmax(probs[0])) == 1 and int(n[0]) == 6
    p = eye[[0, 1, 0, 1]] * 0.6 + 0.1  # tie never resolved: mean probabilities decide
    p[1, 1] = 0.9
    p /= p.sum(axis=-1, keepdims=True)
    probs, n = vote(p[None], k=4)
    assert int(n[0]) == 4 and int(np.argmax(probs[0])) == 1
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="k=7"):
        vote(p[None], k=7)


@pytest.mark.slow  # 27-29 s per case
@pytest.mark.parametrize("kw", [dict(reward="per_image"), dict(reward="per_glimpse"),
                                dict(patch_dihedral=True)])
def test_train_step_updates_both_networks_with_finite_reward(kw):
    model = tiny(**kw)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), denet_optimizer=keras.optimizers.Adam(0.01)
    )
    x, y = batch()
    model(x)
    before_cls = [v.numpy().copy() for v in model.classifier.trainable_variables]
    before_den = [v.numpy().copy() for v in model.denet.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert any(
        not np.allclose(a, b.numpy())
        for a, b in zip(before_cls, model.classifier.trainable_variables, strict=True)
    )
    assert any(
        not np.allclose(a, b.numpy())
        for a, b in zip(before_den, model.denet.trainable_variables, strict=True)
    )
    for key in ("loss", "reward", "baseline", "select_rate", "entropy", "denet_loss"):
        assert np.isfinite(logs[key]), key
    assert 0.0 <= logs["select_rate"] <= 1.0
    assert float(model.iteration) == 1.0


def test_paper_reward_terms_and_callback():
    model = tiny(reward="paper", t_prime=200)
    model.compile()
    x, y = batch()
    model(x)
    model.iteration.assign(9.0)  # next iteration is 10: r_c = -log(10 / 200)
    model.last_val_accuracy.assign(0.5)
    np.testing.assert_allclose(float(model._scalar_reward()), 0.5 - np.log(10 / 200), rtol=1e-5)
    no_rc = tiny(reward_terms=("rp",))
    no_rc(x)
    no_rc.last_val_accuracy.assign(0.5)
    np.testing.assert_allclose(float(no_rc._scalar_reward()), 0.5)

    cb = SelectiveRewardCallback()
    cb.set_model(model)
    cb.on_epoch_end(0, {"val_accuracy": 0.6, "val_loss": 0.2, "reward": 2.0})
    assert float(model.best_val_accuracy) == pytest.approx(0.6)
    assert float(model.i_gamma) == 9.0  # val loss fell below Gamma = 0.25 at iteration 9
    assert float(model.baseline) == pytest.approx(2.0)
    cb.on_epoch_end(1, {"val_accuracy": 0.4, "val_loss": 0.1, "reward": 4.0})
    assert float(model.best_val_accuracy) == pytest.approx(0.6)
    assert float(model.i_gamma) == 9.0  # first time only
    assert float(model.baseline) == pytest.approx(3.0)  # mean of past epochs' rewards


@pytest.mark.slow  # 29-41 s; fit is covered by test_training
def test_fit_and_evaluate_run():
    model = tiny()
    model.compile()
    x, y = batch(8)
    hist = model.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        validation_data=(x, y),
        verbose=0,
        callbacks=[SelectiveRewardCallback()],
    )
    assert {"loss", "val_accuracy", "reward", "select_rate"} <= set(hist.history)
    assert float(model.epochs_seen) == 2.0


@pytest.mark.slow  # 18 s on 2 cores
def test_evaluate_scores_every_image_once_with_a_short_last_batch():
    model = tiny()
    model.compile()
    x, y = batch(5, seed=3)
    probs = np.asarray(model.infer(x)["probs"])
    correct = np.argmax(probs, axis=-1) == y
    nll = -np.log(np.clip(probs[np.arange(5), y], 1e-7, 1.0))
    # Batches of 4 + 1: a mean of batch means would weight the fifth image 4 times.
    scores = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert scores["accuracy"] == pytest.approx(correct.mean())
    assert scores["loss"] == pytest.approx(nll.mean(), rel=1e-4)


def test_inference_is_deterministic_with_boxes_inside_image():
    model = tiny()
    x, _ = batch(2)
    a, b = model.infer(x), model.infer(x)
    np.testing.assert_array_equal(a["probs"], b["probs"])
    boxes = np.asarray(a["boxes"])
    assert boxes.shape == (2, 5, 4)
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 2] <= H).all()
    assert (boxes[..., 1] >= 0).all() and (boxes[..., 3] <= W).all()
    np.testing.assert_array_equal(boxes[..., 2] - boxes[..., 0], 16)
    assert set(np.asarray(a["n_rois"]).tolist()) <= {3, 4, 5}
    np.testing.assert_allclose(np.sum(a["probs"], axis=-1), 1.0, rtol=1e-5)


def test_roi_order_probability_ranks_glimpses_by_select_probability():
    x, _ = batch(3)
    model = tiny(roi_order="probability")
    ranked = model.infer(x)
    sel = np.asarray(ranked["select_prob"])
    assert (np.diff(sel, axis=1) <= 1e-7).all()  # non-increasing along the voting order
    # The same model (two tiny() calls need not draw the same SaNet weights), ordered the
    # other way.
    model.roi_order = "selected"
    walked = model.infer(x)
    # Same DeNet weights and walk, ranked differently: ranking by probability puts the walk's
    # most probable glimpse first, at least as probable as any the "selected" order votes on
    # (with an input-dependent policy the two orders need not share their top glimpse).
    assert (sel[:, 0] >= np.asarray(walked["select_prob"]).max(axis=1) - 1e-7).all()
    with pytest.raises(ValueError, match="roi_order='best'"):
        tiny(roi_order="best")


def test_per_glimpse_loss_credits_each_action_with_its_patch():
    import tensorflow as tf

    q = np.array([[0.0, -2.0, -1.0]], "float32")  # mean -1: gains +1, -1, 0
    select = np.array([[1.0, 1.0, 0.0]], "float32")
    lp_sel = tf.Variable(np.zeros((1, 3), "float32"))
    lp_move = tf.Variable(np.zeros((1, 3), "float32"))
    with tf.GradientTape() as tape:
        loss = per_glimpse_policy_loss(q, select, lp_sel, lp_move)
    g_sel, g_move = tape.gradient(loss, [lp_sel, lp_move])
    # Selecting the good patch is reinforced, selecting the bad one discouraged; an unselected
    # patch gives its select action no credit.
    np.testing.assert_allclose(g_sel.numpy(), [[-1.0, 1.0, 0.0]])
    # Move 0 led to the bad glimpse 1, move 1 to the average glimpse 2; the last move led
    # nowhere.
    np.testing.assert_allclose(g_move.numpy(), [[1.0, 0.0, 0.0]])


def test_per_glimpse_baseline_is_the_image_own_mean():
    import tensorflow as tf

    # Image 0 is easy (every glimpse good), image 1 has one good and one bad glimpse. Credit
    # goes to what a glimpse added over the same image's others: none for image 0's, +1/-1 for
    # image 1's. A batch-wide baseline (-0.5) would credit every glimpse of the easy image.
    q = np.array([[0.0, 0.0], [0.0, -2.0]], "float32")
    select = np.ones((2, 2), "float32")
    lp_sel = tf.Variable(np.zeros((2, 2), "float32"))
    lp_move = tf.Variable(np.zeros((2, 2), "float32"))
    with tf.GradientTape() as tape:
        loss = per_glimpse_policy_loss(q, select, lp_sel, lp_move, aligned=True)
    g_sel, g_move = tape.gradient(loss, [lp_sel, lp_move])
    np.testing.assert_allclose(g_sel.numpy(), [[0.0, 0.0], [-0.5, 0.5]])
    # aligned: move t produced patch t, so it earns patch t's credit.
    np.testing.assert_allclose(g_move.numpy(), [[0.0, 0.0], [-0.5, 0.5]])
    # The credit follows the patches: swap which glimpse was the bad one and it flips.
    with tf.GradientTape() as tape:
        loss = per_glimpse_policy_loss(q[:, ::-1], select, lp_sel, lp_move, aligned=True)
    np.testing.assert_allclose(tape.gradient(loss, lp_move).numpy(), [[0.0, 0.0], [0.5, -0.5]])


def test_grid_policy_rejects_a_walk_longer_than_the_grid():
    with pytest.raises(ValueError, match="tiles, fewer than"):
        tiny(location_policy="grid", max_steps=20, k_max=20)  # 4x3 grid of 16-px tiles
    with pytest.raises(ValueError, match="warmup_steps"):
        tiny(warmup_steps=-1)


def test_prediction_does_not_depend_on_position_in_batch():
    model = tiny()
    x, _ = batch(3)
    a = model.infer(x)
    b = model.infer(x[::-1])
    np.testing.assert_allclose(np.asarray(a["probs"]), np.asarray(b["probs"])[::-1], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(a["boxes"]), np.asarray(b["boxes"])[::-1])


def test_keras_roundtrip(tmp_path):
    model = tiny(class_names=["a", "b", "c"], magnification="100X")
    x, _ = batch(2)
    loaded = assert_keras_roundtrip(model, x, tmp_path)
    assert loaded.class_names == ["a", "b", "c"]


def test_bad_parameters_name_the_value():
    with pytest.raises(ValueError, match="k=6"):
        tiny(k=6)
    with pytest.raises(ValueError, match="patch_size=100"):
        tiny(patch_size=100)
    with pytest.raises(ValueError, match="reward='best'"):
        tiny(reward="best")


@pytest.mark.slow  # 29-41 s; fit is covered by test_training
def test_selection_all_trains_on_every_glimpse():
    model = tiny(selection="all", reward="per_image")
    model.compile()
    x, y = batch()
    model(x)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    with pytest.raises(ValueError, match="selection='some'"):
        tiny(selection="some")


@pytest.mark.slow  # 60-130 s: traces a training step with an inference walk inside
def test_rp_from_a_fixed_batch_is_scored_after_the_sanet_step():
    """rp_source="batch" (eqs. 5-6): r_p is the fixed validation batch's accuracy measured
    after this iteration's SaNet update and before DeNet's, so it depends on the patches
    the step trained on; the baseline then moves every iteration."""
    model = tiny(reward="paper", rp_source="batch", reward_terms=("rp",))
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  denet_optimizer=keras.optimizers.Adam(0.05))
    x, y = batch(4, seed=0)
    xv, yv = batch(6, seed=1)
    model(x)
    model.set_reward_batch(xv, yv)
    model.last_val_accuracy.assign(-1.0)  # impossible: the step must overwrite it
    denet_before = [v.numpy().copy() for v in model.denet.variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    rp = float(model.last_val_accuracy)
    assert rp in {i / 6 for i in range(7)}  # an accuracy over the 6 fixed images
    assert logs["reward"] == pytest.approx(rp)
    assert float(model.baseline) == pytest.approx(0.05 * rp)  # running mean from 0
    # Re-score with the updated SaNet and the DeNet of before the step: the same accuracy.
    for var, value in zip(model.denet.variables, denet_before, strict=True):
        var.assign(value)
    probs = model.infer(xv)["probs"]
    assert rp == pytest.approx(float(np.mean(np.argmax(probs, -1) == yv)))


def test_rp_source_options_are_checked():
    with pytest.raises(ValueError, match="rp_source='later'"):
        tiny(rp_source="later")
    with pytest.raises(ValueError, match="per_glimpse"):
        tiny(reward="per_glimpse", rp_source="batch")
    model = tiny(reward="paper", rp_source="batch")
    assert model.get_config()["rp_source"] == "batch"
    with pytest.raises(ValueError, match="set_reward_batch"):
        model._reward_batch_accuracy()
    xv, yv = batch(3, seed=1)
    with pytest.raises(ValueError, match="images"):
        model.set_reward_batch(xv[:, :10], yv)
    model.set_reward_batch(xv, yv)
    accuracy = float(np.mean(np.argmax(model.infer(xv)["probs"], -1) == yv))
    assert float(model._reward_batch_accuracy()) == pytest.approx(accuracy)
