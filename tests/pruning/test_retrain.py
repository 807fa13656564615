"""Retraining after pruning: the warm-restart schedule and distillation from the unpruned model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from breastzoo.models.factory import warm_restart_schedule
from breastzoo.pruning.magnitude import MagnitudePruning, sparsity
from breastzoo.pruning.retrain import Distiller, model_outputs


def _net(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64).astype("int32")


def _kl(p, q):
    p, q = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), -1)))


def test_warm_restart_climbs_then_decays_to_zero():
    s = warm_restart_schedule(1e-3, total_steps=50, warmup_steps=10)
    rates = [float(s(i)) for i in range(51)]
    assert rates[0] == pytest.approx(1e-4)
    assert max(rates) == pytest.approx(1e-3) and int(np.argmax(rates)) == 10
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))  # decays
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_distillation_pulls_the_student_towards_the_teacher(data):
    x, y = data
    teacher, student = _net(1), _net(2)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    before = _kl(teacher.predict(x, verbose=0), student.predict(x, verbose=0))
    d = Distiller(student, teacher, alpha=1.0, temperature=1.0)
    d.compile(optimizer=keras.optimizers.Adam(3e-2))
    history = d.fit(x, y, epochs=40, batch_size=64, verbose=0).history
    after = _kl(teacher.predict(x, verbose=0), student.predict(x, verbose=0))
    assert after < 0.3 * before, (before, after)
    assert history["distill_loss"][-1] < history["distill_loss"][0]
    # The teacher is frozen: its weights never move.
    for a, b in zip(teacher_before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_alpha_zero_is_plain_cross_entropy(data):
    x, y = data
    plain, distilled = _net(2), _net(2)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    plain.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    d = Distiller(distilled, _net(1), alpha=0.0)
    d.compile(optimizer=keras.optimizers.SGD(0.1))
    d.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), distilled.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_sample_weights_weigh_the_label_term(data):
    x, y = data
    w = np.where(y == 0, 1.0, 0.0).astype("float32")  # only class 0 counts
    student = _net(2)
    d = Distiller(student, _net(1), alpha=0.0)
    d.compile(optimizer=keras.optimizers.Adam(5e-2))
    d.fit(x, y, sample_weight=w, epochs=20, batch_size=64, verbose=0)
    assert (student.predict(x, verbose=0).argmax(1) == 0).mean() > 0.9


def test_magnitude_pruning_of_the_student_leaves_the_teacher_dense(data):
    x, y = data
    teacher, student = _net(1), _net(2)
    d = Distiller(student, teacher, alpha=0.5)
    d.compile(optimizer="adam")
    d.fit(x, y, epochs=2, batch_size=16, verbose=0,
          callbacks=[MagnitudePruning(0.5, end_step=8, frequency=2, target=student)])
    assert sparsity(student)["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert sparsity(teacher)["sparsity"] == 0.0


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="alpha"):
        Distiller(_net(1), _net(2), alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(_net(1), _net(2), temperature=0)


@pytest.mark.slow  # 33 s: two tiny hybrids, an eager step
def test_a_hybrid_distils_both_branches():
    from breastzoo.configs import preset
    from breastzoo.models.factory import build_model

    config = preset("tiny", "hybrid").replace(task="binary", grid=(2, 1))
    keras.utils.set_random_seed(0)
    teacher = build_model(config, ["benign", "malignant"])
    student = build_model(config, ["benign", "malignant"])
    x = np.random.default_rng(0).integers(0, 255, (4, 92, 140, 3)).astype("uint8")
    outs = model_outputs(student, x, training=False)
    assert [len(o.shape) for o in outs] == [2, 3]  # global per image, local per patch
    d = Distiller(student, teacher, alpha=0.5)
    d.compile(optimizer="adam", run_eagerly=True)
    before = [w.copy() for w in student.get_weights()]
    logs = d.fit(x, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and logs["distill_loss"][0] >= 0
    moved = [not np.allclose(a, b) for a, b in zip(before, student.get_weights(), strict=True)]
    assert any(moved)
