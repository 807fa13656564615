"""Evaluation: PRR/IRR, patient-level accuracy, kappa, PPV, F1, ROC, trial aggregation, tests.

Example:
    >>> from breastzoo.evaluation import image_recognition_rate
    >>> image_recognition_rate([0, 1], [0, 1])
    1.0
"""

from breastzoo.evaluation.metrics import (
    TASKS,
    aggregate_trials,
    binary_class_map,
    evaluate_predictions,
    image_recognition_rate,
    patient_level_accuracy,
    patient_recognition_rate,
    to_binary,
    to_jsonable,
)
from breastzoo.evaluation.stats import compare_methods, holm_correction, sign_test

__all__ = [
    "TASKS",
    "aggregate_trials",
    "binary_class_map",
    "compare_methods",
    "evaluate_predictions",
    "holm_correction",
    "image_recognition_rate",
    "patient_level_accuracy",
    "patient_recognition_rate",
    "sign_test",
    "to_binary",
    "to_jsonable",
]
