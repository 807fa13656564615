"""Evaluation numbers: PRR vs IRR, kappa, binary mapping, ROC edge cases, trial aggregation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from breastzoo.data.constants import BACH_CLASSES, SUBTYPES
from breastzoo.evaluation import (
    aggregate_trials,
    evaluate_predictions,
    image_recognition_rate,
    patient_level_accuracy,
    patient_recognition_rate,
    to_binary,
    to_jsonable,
)


def one_hot_probs(pred, num_classes, confidence=0.9):
    probs = np.full((len(pred), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


@pytest.fixture
def two_patients():
    # Patient A: 10 images, all correct; patient B: 2 images, both wrong.
    y_true = np.array([0] * 10 + [1] * 2)
    y_pred = np.array([0] * 10 + [0] * 2)
    patients = ["A"] * 10 + ["B"] * 2
    return y_true, y_pred, patients


def test_prr_differs_from_irr(two_patients):
    y_true, y_pred, patients = two_patients
    assert image_recognition_rate(y_true, y_pred) == pytest.approx(10 / 12)
    assert patient_recognition_rate(y_true, y_pred, patients) == pytest.approx(0.5)


def test_prr_counts_each_patient_once_whatever_the_order():
    y_true = np.array([0, 1, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1])
    patients = ["p", "q", "p", "q", "q"]  # p: 2/2, q: 2/3
    assert patient_recognition_rate(y_true, y_pred, patients) == pytest.approx((1 + 2 / 3) / 2)
    # Patient ids of mixed types are compared as strings.
    assert patient_recognition_rate([1, 1], [1, 0], [7, "7"]) == pytest.approx(0.5)


def test_patient_level_majority_vote():
    y_true = [2, 2, 2, 1, 1]
    y_pred = [2, 2, 0, 0, 1]  # p votes 2 (correct); q ties 0/1 -> probs break the tie
    probs = one_hot_probs(np.array(y_pred), 3)
    probs[4] = [0.0, 1.0, 0.0]
    acc, per_patient = patient_level_accuracy(y_true, y_pred, ["p"] * 3 + ["q"] * 2, probs)
    assert acc == 1.0
    assert per_patient["q"]["voted"] == 1
    assert per_patient["p"]["accuracy"] == pytest.approx(2 / 3)


def test_kappa_against_hand_value():
    # Confusion [[2, 1], [0, 1]]: po = 3/4, pe = (3/4)(2/4) + (1/4)(2/4) = 1/2, kappa = 1/2.
    y_true = np.array([0, 0, 0, 1])
    y_pred = np.array([0, 0, 1, 1])
    m = evaluate_predictions(
        y_true,
        one_hot_probs(y_pred, 2),
        ["a", "b", "c", "d"],
        ["benign", "malignant"],
        task="binary",
    )
    assert m["kappa"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[2, 1], [0, 1]]
    # Malignant is the positive class: PPV 1/2, sensitivity 1, specificity 2/3.
    assert m["ppv"]["positive"] == pytest.approx(0.5)
    assert m["sensitivity"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(1.0)
    assert m["f1"]["positive"] == pytest.approx(2 / 3)


def test_full_report_is_json_and_consistent(two_patients):
    y_true, y_pred, patients = two_patients
    m = evaluate_predictions(y_true, one_hot_probs(y_pred, 3), patients, ["x", "y", "z"])
    text = json.dumps(m, allow_nan=False)  # NaN would make this raise
    assert json.loads(text)["irr"] == pytest.approx(10 / 12)
    assert m["accuracy"] == m["irr"]
    assert m["prr"] == pytest.approx(0.5)
    assert m["n_images"] == 12 and m["n_patients"] == 2
    assert m["patient_level"] == pytest.approx(0.5)  # A right, B voted wrong
    assert np.asarray(m["confusion_matrix"]).sum() == 12
    assert set(m["precision"]) == {"macro", "per_class"}
    assert set(m["precision"]["per_class"]) == {"x", "y", "z"}
    for key in ("irr", "prr", "kappa"):
        assert -1.0 <= m[key] <= 1.0


def test_roc_with_missing_class_does_not_crash():
    rng = np.random.default_rng(0)
    y_true = np.array([0, 1, 0, 1, 0, 1])  # class 2 never occurs
    probs = rng.dirichlet(np.ones(3), size=6)
    m = evaluate_predictions(y_true, probs, list("abcdef"), ["u", "v", "w"])
    assert m["roc"]["w"]["fpr"] is None
    assert m["auc"]["per_class"]["w"] is None
    assert m["auc"]["macro"] is not None and 0.0 <= m["auc"]["macro"] <= 1.0
    assert len(m["roc"]["u"]["fpr"]) == len(m["roc"]["u"]["tpr"])
    json.dumps(m, allow_nan=False)


def test_single_class_everything_undefined_is_null():
    m = evaluate_predictions([0, 0], [[1.0, 0.0], [1.0, 0.0]], ["a", "a"], ["n", "m"])
    assert m["auc"]["macro"] is None
    assert m["irr"] == 1.0
    json.dumps(m, allow_nan=False)


def test_perfect_auc_and_y_pred_override():
    y_true = np.array([0, 1, 2, 0, 1, 2])
    probs = one_hot_probs(y_true, 3)
    m = evaluate_predictions(y_true, probs, list("aabbcc"), ["a", "b", "c"], y_pred=[0] * 6)
    assert m["auc"]["macro"] == pytest.approx(1.0)
    assert m["irr"] == pytest.approx(2 / 6)  # the override, not argmax(probs), is scored


def test_to_binary_labels_and_probs():
    labels = np.arange(8)
    assert to_binary(labels, SUBTYPES).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    probs = np.full((1, 8), 1 / 8)
    probs[0, :] = [0.1, 0.1, 0.1, 0.1, 0.3, 0.1, 0.1, 0.1]
    np.testing.assert_allclose(to_binary(probs, SUBTYPES), [[0.4, 0.6]])
    assert to_binary([0, 1, 2, 3], BACH_CLASSES).tolist() == [0, 0, 1, 1]
    assert to_binary([0, 1], ["ductal_carcinoma", "adenosis"]).tolist() == [1, 0]


def test_to_binary_rejects_unknown_names_and_labels():
    with pytest.raises(ValueError, match="class_name='cat'"):
        to_binary([0], ["cat", "DC"])
    with pytest.raises(ValueError, match="max=8"):
        to_binary([8], SUBTYPES)


def test_binary_task_on_subtype_predictions():
    # DC predicted as LC is wrong as a subtype but right as malignant.
    y_true = np.array([4, 0])
    y_pred = np.array([5, 1])
    m = evaluate_predictions(y_true, one_hot_probs(y_pred, 8), ["p", "q"], SUBTYPES, task="binary")
    assert m["class_names"] == ["benign", "malignant"]
    assert m["irr"] == 1.0
    sub = evaluate_predictions(y_true, one_hot_probs(y_pred, 8), ["p", "q"], SUBTYPES)
    assert sub["irr"] == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "ternary"}, "task='ternary'"),
        ({"y_true": [0, 5]}, "max=5"),
        ({"patients": ["a"]}, "same length"),
    ],
)
def test_evaluate_rejects_bad_input(kwargs, match):
    args = {
        "y_true": [0, 1],
        "probs": [[0.6, 0.4], [0.3, 0.7]],
        "patients": ["a", "b"],
        "class_names": ["benign", "malignant"],
        "task": "subtype",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate_predictions(
            args["y_true"], args["probs"], args["patients"], args["class_names"], task=args["task"]
        )


def test_aggregate_trials_mean_std():
    trials = [
        {"irr": 0.9, "f1": {"macro": 0.8}, "auc": {"macro": None}, "class_names": ["a"]},
        {"irr": 1.0, "f1": {"macro": 0.6}, "auc": {"macro": 0.7}, "class_names": ["a"]},
    ]
    agg = aggregate_trials(trials)
    assert agg["n_trials"] == 2
    assert agg["metrics"]["irr"]["mean"] == pytest.approx(0.95)
    assert agg["metrics"]["irr"]["std"] == pytest.approx(np.std([0.9, 1.0], ddof=1))
    assert agg["metrics"]["f1.macro"]["mean"] == pytest.approx(0.7)
    assert agg["metrics"]["auc.macro"] == {"mean": 0.7, "std": 0.0, "n": 1, "values": [None, 0.7]}
    assert "class_names" not in agg["metrics"]
    json.dumps(agg, allow_nan=False)
    with pytest.raises(ValueError, match="trials=\\[\\]"):
        aggregate_trials([])


def test_aggregate_real_reports(two_patients):
    y_true, y_pred, patients = two_patients
    m = evaluate_predictions(y_true, one_hot_probs(y_pred, 2), patients, ["benign", "malignant"])
    agg = aggregate_trials([m, m, m])
    assert agg["metrics"]["prr"]["std"] == 0.0
    assert not any(k.startswith("per_patient") or k.startswith("roc") for k in agg["metrics"])


def test_to_jsonable_handles_numpy_and_nan():
    out = to_jsonable({"a": np.float32("nan"), "b": np.int64(3), "c": (np.bool_(True),)})
    assert out == {"a": None, "b": 3, "c": [True]}


def test_one_class_labels_give_no_auc_and_a_warning():
    # Only malignant images, some confidently "benign": a number here would be invented.
    y_true = [1, 1, 1, 1]
    probs = [[0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.9, 0.1]]
    m = evaluate_predictions(y_true, probs, ["a", "a", "b", "b"], ["benign", "malignant"],
                             task="binary")
    assert m["auc"] == {"macro": None, "per_class": {"benign": None, "malignant": None},
                        "positive": None}
    assert all(curve["fpr"] is None for curve in m["roc"].values())
    assert m["warnings"] == ["test part has no 'benign' images: AUC undefined"]
    assert m["label_counts"] == {"benign": 0, "malignant": 4}
    assert m["prediction_counts"] == {"benign": 2, "malignant": 2}
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # recall of the one class present
    json.dumps(m, allow_nan=False)
    # The same from an 8-subtype model scored as benign/malignant, and on external data.
    sub = evaluate_predictions([4, 5], one_hot_probs(np.array([4, 0]), 8), ["p", "q"], SUBTYPES,
                               task="binary", part="external")
    assert sub["auc"]["macro"] is None
    assert sub["warnings"] == ["external part has no 'benign' images: AUC undefined"]


def test_absent_class_and_collapsed_predictions_are_reported():
    y_true = np.array([0, 1, 0, 1, 0, 1])  # class "w" never occurs
    m = evaluate_predictions(y_true, one_hot_probs(np.zeros(6, int), 3), list("abcdef"),
                             ["u", "v", "w"])
    assert m["auc"]["per_class"]["w"] is None and m["auc"]["macro"] is not None
    assert m["warnings"][0].startswith("test part has no 'w' images: its AUC is undefined")
    assert m["warnings"][1] == "the model predicts 'u' for all 6 test images"
    assert m["prediction_counts"] == {"u": 6, "v": 0, "w": 0}
    assert m["balanced_accuracy"] == pytest.approx(0.5)


def test_balanced_accuracy_is_mean_recall():
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 8 + [0, 1]
    m = evaluate_predictions(y_true, one_hot_probs(np.array(y_pred), 2), list("abcdefghij"),
                             ["benign", "malignant"])
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["irr"] == pytest.approx(0.9)
    assert m["warnings"] == []
