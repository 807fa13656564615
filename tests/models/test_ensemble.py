"""Bagging ensemble (paper 002): Sum and Max vote rules, one saved model, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from breastzoo.models.baselines import WholeImageClassifier
from breastzoo.models.ensemble import Ensemble, combine
from breastzoo.models.hybrid import Hybrid
from tests.helpers import assert_keras_roundtrip

# Three members, one image: the average says class 0, the majority (2 of 3) says class 1.
MEMBERS = np.array([[[0.95, 0.05], [0.4, 0.6], [0.45, 0.55]]], "float32")


def test_sum_rule_averages_probabilities():
    np.testing.assert_allclose(combine(MEMBERS, "sum"), [[0.6, 0.4]], rtol=1e-6)


def test_max_rule_is_a_majority_vote():
    out = np.asarray(combine(MEMBERS, "max"))
    # votes (1, 2) plus the mean (0.6, 0.4), over M + 1 = 4: a distribution
    np.testing.assert_allclose(out, [[1.6 / 4, 2.4 / 4]], rtol=1e-6)
    assert int(np.argmax(out)) == 1 and int(np.argmax(combine(MEMBERS, "sum"))) == 0


def test_max_rule_tie_goes_to_the_higher_average():
    tie = np.array([[[0.9, 0.1], [0.3, 0.7]], [[0.6, 0.4], [0.1, 0.9]]], "float32")
    assert np.argmax(combine(tie, "max"), axis=-1).tolist() == [0, 1]


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="vote='mean'"):
        combine(MEMBERS, "mean")


def _member(seed: int, classes=("benign", "malignant")) -> WholeImageClassifier:
    import keras

    keras.utils.set_random_seed(seed)
    return WholeImageClassifier(2, image_size=(40, 32), input_size=16, width=2,
                                class_names=list(classes), magnification="200X")


@pytest.mark.parametrize("rule", ["sum", "max"])
def test_ensemble_combines_its_members_outputs(rule):
    members = [_member(s) for s in range(3)]
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 40, 3), dtype=np.uint8)
    ensemble = Ensemble(members, rule=rule)
    stacked = np.stack([np.asarray(m(x, training=False)) for m in members], axis=1)
    np.testing.assert_allclose(ensemble(x), combine(stacked, rule), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ensemble.member_probs(x), stacked, rtol=1e-5, atol=1e-6)
    out = ensemble.infer(x)  # what evaluation calls
    np.testing.assert_allclose(out["probs"], combine(stacked, rule), rtol=1e-5, atol=1e-6)
    assert tuple(out["boxes"].shape) == (4, 1, 4)
    # The input contract is the members'.
    assert ensemble.class_names == ["benign", "malignant"] and ensemble.image_size == (40, 32)


def test_ensemble_roundtrip_is_one_file(tmp_path):
    ensemble = Ensemble([_member(0), _member(1)], rule="max")
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)
    loaded = assert_keras_roundtrip(ensemble, x, tmp_path)
    assert loaded.rule == "max" and len(loaded.members) == 2
    assert loaded.magnification == "200X"


@pytest.mark.slow  # 13 s
def test_ensemble_of_hybrids_roundtrip(tmp_path):
    members = [Hybrid(2, image_size=(70, 46), grid=(2, 1), patch_size=32, width=0.125,
                      class_names=["benign", "malignant"]) for _ in range(2)]
    x = np.random.default_rng(2).integers(0, 256, (2, 46, 70, 3), dtype=np.uint8)
    loaded = assert_keras_roundtrip(Ensemble(members), x, tmp_path, atol=1e-5)
    assert all(isinstance(m, Hybrid) for m in loaded.members)
    assert tuple(loaded.infer(x)["boxes"].shape) == (2, 2, 4)  # the first member's patch grid


@pytest.mark.parametrize("members, rule, match", [
    (1, "sum", "at least 2 members"),
    (2, "median", "rule='median'"),
])
def test_bad_ensembles_are_refused(members, rule, match):
    with pytest.raises(ValueError, match=match):
        Ensemble([_member(s) for s in range(members)], rule=rule)


def test_members_must_agree_on_classes():
    with pytest.raises(ValueError, match="disagree on the classes"):
        Ensemble([_member(0), _member(1, classes=("normal", "cancer"))])
