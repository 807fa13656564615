"""Evaluation numbers for both papers: PRR/IRR (paper 000), IL/PL, kappa, PPV, F1, ROC (paper 002).

Every function takes plain arrays (integer labels, ``[N, C]`` probabilities, one patient id per
image) and returns plain Python values, so results can be written with ``json.dump`` as they are
(numpy scalars become Python numbers and NaN becomes ``None``).

Definitions:

* IRR (paper 000, eq. 12) = correctly classified images / all images; this is also paper 002's
  image-level accuracy "IL".
* PRR (paper 000, eq. 11) = mean over test patients of (correct images of the patient / images
  of the patient). Every patient counts once, however many images it has.
* ``patient_level`` (paper 002, "PL") = fraction of patients whose *majority-voted* image
  prediction equals the patient's label. This is a different number from PRR.

Example:
    >>> import numpy as np
    >>> y = np.array([0] * 10 + [1] * 2)
    >>> pred = np.array([0] * 10 + [0] * 2)
    >>> patients = ["A"] * 10 + ["B"] * 2
    >>> round(image_recognition_rate(y, pred), 4), patient_recognition_rate(y, pred, patients)
    (0.8333, 0.5)
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from breastzoo.data.constants import BACH_BINARY, BINARY_CLASSES, SUBTYPE_CLASS, SUBTYPE_NAMES
from breastzoo.io import to_jsonable

TASKS: tuple[str, ...] = ("subtype", "binary")
# Names that mean "the positive (cancer) class" in a two-class problem, in order of preference.
_POSITIVE_NAMES: tuple[str, ...] = ("malignant", "cancer", "carcinoma", "tumor", "positive")

__all__ = [
    "TASKS",
    "aggregate_trials",
    "binary_class_map",
    "evaluate_predictions",
    "image_recognition_rate",
    "patient_level_accuracy",
    "patient_recognition_rate",
    "to_binary",
    "to_jsonable",
]


# --------------------------------------------------------------------------- helpers


def _labels(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of integer labels. Received: shape={arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices. Received: dtype={arr.dtype}")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _check_same_length(**arrays: Sequence[Any] | np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Inputs must have the same length. Received lengths: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"Inputs must not be empty. Received lengths: {lengths}")
    return n


def _safe_float(fn, *args, **kwargs) -> float:
    """Call a sklearn metric, turning undefined results (and their warnings) into NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(fn(*args, **kwargs))
        except ValueError:
            return float("nan")
    return value


# --------------------------------------------------------------------------- rates


def image_recognition_rate(y_true: Any, y_pred: Any) -> float:
    """Image recognition rate (IRR, paper 000 eq. 12): correct images / all images.

    Args:
        y_true: ``[N]`` integer true labels.
        y_pred: ``[N]`` integer predicted labels.

    Returns:
        IRR as a fraction in ``[0, 1]``.

    Example:
        >>> image_recognition_rate([0, 1, 1], [0, 1, 0])
        0.6666666666666666
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _check_same_length(y_true=t, y_pred=p)
    return float(np.mean(t == p))


def patient_recognition_rate(y_true: Any, y_pred: Any, patients: Sequence[Any]) -> float:
    """Patient recognition rate (PRR, paper 000 eq. 11): mean over patients of their image accuracy.

    Args:
        y_true: ``[N]`` integer true labels.
        y_pred: ``[N]`` integer predicted labels.
        patients: ``[N]`` patient id of every image (any hashable values).

    Returns:
        PRR as a fraction in ``[0, 1]``; each patient counts once.

    Example:
        >>> patient_recognition_rate([0, 0, 1], [0, 0, 0], ["a", "a", "b"])
        0.5
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    pid = np.asarray([str(x) for x in patients])
    _check_same_length(y_true=t, y_pred=p, patients=pid)
    rates = [float(np.mean(t[pid == u] == p[pid == u])) for u in np.unique(pid)]
    return float(np.mean(rates))


def patient_level_accuracy(
    y_true: Any,
    y_pred: Any,
    patients: Sequence[Any],
    probs: np.ndarray | None = None,
) -> tuple[float, dict[str, dict[str, Any]]]:
    """Patient-level accuracy by majority vote of a patient's images (paper 002, "PL").

    A patient's label is the most frequent true label of its images (BreaKHis patients have one
    label). A voting tie is broken by the larger summed probability when ``probs`` is given,
    else by the smaller class index, so the result is deterministic.

    Args:
        y_true: ``[N]`` integer true labels.
        y_pred: ``[N]`` integer predicted labels.
        patients: ``[N]`` patient ids.
        probs: optional ``[N, C]`` probabilities for tie breaking.

    Returns:
        ``(accuracy, per_patient)`` where ``per_patient[id]`` holds ``n_images``, ``correct``,
        ``accuracy`` (the patient's image accuracy, the PRR term), ``label`` and ``voted``.

    Example:
        >>> acc, _ = patient_level_accuracy([0, 0, 0, 1], [0, 0, 1, 0], ["a", "a", "a", "b"])
        >>> acc
        0.5
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    pid = np.asarray([str(x) for x in patients])
    _check_same_length(y_true=t, y_pred=p, patients=pid)
    per_patient: dict[str, dict[str, Any]] = {}
    hits = []
    for u in np.unique(pid):
        idx = pid == u
        label = Counter(t[idx].tolist()).most_common(1)[0][0]
        counts = Counter(p[idx].tolist())
        top = max(counts.values())
        tied = sorted(c for c, n in counts.items() if n == top)
        if len(tied) > 1 and probs is not None:
            summed = np.asarray(probs)[idx].sum(axis=0)
            voted = max(tied, key=lambda c: (summed[c], -c))
        else:
            voted = tied[0]
        correct = int(np.sum(t[idx] == p[idx]))
        per_patient[str(u)] = {
            "n_images": int(idx.sum()),
            "correct": correct,
            "accuracy": correct / int(idx.sum()),
            "label": int(label),
            "voted": int(voted),
        }
        hits.append(voted == label)
    return float(np.mean(hits)), per_patient


# --------------------------------------------------------------------------- binary mapping


def binary_class_map(class_names: Sequence[str]) -> list[int]:
    """Index (0 benign, 1 malignant) of every fine class name.

    Accepts BreaKHis subtype codes (``"DC"``) or folder names (``"ductal_carcinoma"``), BACH
    class names (``"InSitu"``) and the binary names themselves.

    Args:
        class_names: ordered fine class names.

    Returns:
        One 0/1 index per class name.

    Raises:
        ValueError: a class name with no benign/malignant mapping.

    Example:
        >>> binary_class_map(["A", "DC", "Normal", "malignant"])
        [0, 1, 0, 1]
    """
    by_folder = {v: SUBTYPE_CLASS[k] for k, v in SUBTYPE_NAMES.items()}
    out = []
    for name in class_names:
        coarse = (
            SUBTYPE_CLASS.get(name)
            or BACH_BINARY.get(name)
            or by_folder.get(name)
            or (name if name in BINARY_CLASSES else None)
        )
        if coarse is None:
            raise ValueError(
                "No benign/malignant mapping for a class name. "
                f"Received: class_name={name!r}; known: {sorted(SUBTYPE_CLASS)} "
                f"{sorted(BACH_BINARY)} {list(BINARY_CLASSES)}"
            )
        out.append(BINARY_CLASSES.index(coarse))
    return out


def to_binary(y: Any, class_names: Sequence[str]) -> np.ndarray:
    """Map fine labels or probabilities (BreaKHis subtypes, BACH classes) to benign/malignant.

    Integer labels ``[N]`` map through ``SUBTYPE_CLASS`` / ``BACH_BINARY``; probabilities
    ``[N, C]`` become ``[N, 2]`` by summing the probabilities of the subtypes of each class.
    Class order of the result is ``BINARY_CLASSES`` = ``("benign", "malignant")``.

    Args:
        y: ``[N]`` integer labels or ``[N, C]`` probabilities, with ``C == len(class_names)``.
        class_names: the fine class names, in label order.

    Returns:
        ``[N]`` int64 labels in {0, 1} or ``[N, 2]`` float probabilities.

    Raises:
        ValueError: wrong shape, a label outside the classes, or an unmappable class name.

    Example:
        >>> to_binary([0, 4], ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]).tolist()
        [0, 1]
    """
    mapping = np.asarray(binary_class_map(class_names), dtype=np.int64)
    arr = np.asarray(y)
    if arr.ndim == 1:
        labels = _labels(arr, "y")
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"Labels must lie in [0, {len(class_names)}). "
                f"Received: min={labels.min()}, max={labels.max()}"
            )
        return mapping[labels]
    if arr.ndim == 2:
        if arr.shape[1] != len(class_names):
            raise ValueError(
                "Probability columns must match class_names. "
                f"Received: probs.shape={arr.shape}, len(class_names)={len(class_names)}"
            )
        out = np.zeros((arr.shape[0], 2), dtype=np.float64)
        for j, c in enumerate(mapping):
            out[:, c] += arr[:, j]
        return out
    raise ValueError(f"y must be [N] labels or [N, C] probabilities. Received: shape={arr.shape}")


# --------------------------------------------------------------------------- full evaluation


def _positive_index(class_names: Sequence[str]) -> int:
    lowered = [c.lower() for c in class_names]
    for name in _POSITIVE_NAMES:
        if name in lowered:
            return lowered.index(name)
    return 1  # by convention the second class is the positive one


def _roc(t: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> tuple[dict, dict]:
    from sklearn.metrics import roc_auc_score, roc_curve

    roc: dict[str, dict[str, Any]] = {}
    per_class_auc: dict[str, float | None] = {}
    for k, name in enumerate(class_names):
        positives = t == k
        # ROC is undefined without both positives and negatives (a class absent from a small
        # test split is common in BreaKHis): record null rather than crash or warn.
        if positives.all() or not positives.any():
            roc[name] = {"fpr": None, "tpr": None, "thresholds": None}
            per_class_auc[name] = None
            continue
        fpr, tpr, thr = roc_curve(positives.astype(int), probs[:, k])
        # sklearn's first threshold is +inf ("predict nothing positive"); JSON has no inf, so it
        # is written as null like every other undefined number.
        thr = np.where(np.isfinite(thr), thr, np.nan)
        roc[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
        per_class_auc[name] = _safe_float(roc_auc_score, positives.astype(int), probs[:, k])
    valid = [v for v in per_class_auc.values() if v is not None and math.isfinite(v)]
    macro = float(np.mean(valid)) if valid else float("nan")
    return roc, {"macro": macro, "per_class": per_class_auc}


def evaluate_predictions(
    y_true: Any,
    probs: Any,
    patients: Sequence[Any],
    class_names: Sequence[str],
    *,
    task: str = "subtype",
    y_pred: Any | None = None,
    part: str = "test",
) -> dict[str, Any]:
    """Every evaluation number of both papers, as a JSON-serialisable dict.

    With ``task="binary"`` and more than two ``class_names`` (an 8-subtype model evaluated as
    benign vs malignant) labels and probabilities are first mapped with :func:`to_binary`.

    Honest about small test sets: a class absent from ``y_true`` has no ROC curve or AUC
    (``None``), and when only one class is present every AUC is ``None``; each absent class
    adds a line to ``warnings`` (``"test part has no 'benign' images: AUC undefined"``), as
    does a model that predicts a single class for every image.

    Args:
        y_true: ``[N]`` integer true labels.
        probs: ``[N, C]`` class probabilities (rows need not sum exactly to 1).
        patients: ``[N]`` patient id of every image.
        class_names: ``C`` class names in label order.
        task: ``"subtype"`` (multi-class as given) or ``"binary"``.
        y_pred: optional ``[N]`` predicted labels that replace ``argmax(probs)``, e.g. the
            majority vote over DeNet's ROIs; ``probs`` are then used only for ROC/AUC.
        part: what is evaluated, for the warnings (``"test"``, ``"external"``, ...).

    Returns:
        Dict with ``irr``, ``prr``, ``accuracy`` (== ``irr``), ``kappa``, ``precision``,
        ``recall``, ``f1``, ``ppv`` (each ``{"macro", "per_class"}``; binary also adds
        ``"positive"`` for the malignant class), ``sensitivity``/``specificity`` (binary only),
        ``confusion_matrix`` (rows = true), ``class_names``, ``task``, ``roc`` (per class
        ``fpr``/``tpr``/``thresholds``, one-vs-rest), ``auc`` (``macro`` over the classes present,
        ``per_class``; binary also ``"positive"``), ``patient_level`` (PL accuracy),
        ``per_patient``, ``n_images``, ``n_patients``, ``balanced_accuracy`` (mean recall
        over the classes present), ``label_counts`` and ``prediction_counts`` (images per
        class name, true and predicted) and ``warnings`` (list of strings). Undefined values
        are ``None``.

    Raises:
        ValueError: unknown task, mismatched lengths or shapes, labels out of range.

    Example:
        >>> m = evaluate_predictions([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["p", "q"],
        ...                          ["benign", "malignant"], task="binary")
        >>> m["irr"], m["auc"]["macro"]
        (1.0, 1.0)
        >>> one = evaluate_predictions([1, 1], [[0.2, 0.8], [0.6, 0.4]], ["p", "q"],
        ...                            ["benign", "malignant"], task="binary")
        >>> one["auc"]["macro"], one["warnings"][0]
        (None, "test part has no 'benign' images: AUC undefined")
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    if task not in TASKS:
        raise ValueError(f"Unknown task. Received: task={task!r}; expected one of {TASKS}")
    names = [str(c) for c in class_names]
    t = _labels(y_true, "y_true")
    p_arr = np.asarray(probs, dtype=np.float64)
    if p_arr.ndim != 2 or p_arr.shape[1] != len(names):
        raise ValueError(
            "probs must be [N, len(class_names)]. "
            f"Received: probs.shape={p_arr.shape}, len(class_names)={len(names)}"
        )
    pred = np.argmax(p_arr, axis=1) if y_pred is None else _labels(y_pred, "y_pred")
    n = _check_same_length(y_true=t, probs=p_arr, patients=list(patients), y_pred=pred)
    for label_name, arr in (("y_true", t), ("y_pred", pred)):
        if arr.min() < 0 or arr.max() >= len(names):
            raise ValueError(
                f"{label_name} must lie in [0, {len(names)}). "
                f"Received: min={arr.min()}, max={arr.max()}"
            )

    if task == "binary" and len(names) > 2:
        t, pred, p_arr = to_binary(t, names), to_binary(pred, names), to_binary(p_arr, names)
        names = list(BINARY_CLASSES)
    elif task == "binary" and len(names) != 2:
        raise ValueError(f"task='binary' needs 2 or more classes. Received: class_names={names}")

    labels = list(range(len(names)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prec, rec, f1, _ = precision_recall_fscore_support(
            t, pred, labels=labels, average=None, zero_division=0
        )
    kappa = _safe_float(cohen_kappa_score, t, pred, labels=labels)
    cm = confusion_matrix(t, pred, labels=labels)
    roc, auc = _roc(t, p_arr, names)
    label_counts = {name: int(np.sum(t == k)) for k, name in enumerate(names)}
    prediction_counts = {name: int(np.sum(pred == k)) for k, name in enumerate(names)}
    absent = [name for name, count in label_counts.items() if count == 0]
    notes = []
    if len(absent) == len(names) - 1:
        # One class only: no ROC is defined, whatever the per-class bookkeeping says.
        auc = {"macro": None, "per_class": dict.fromkeys(names)}
        roc = {name: {"fpr": None, "tpr": None, "thresholds": None} for name in names}
        notes += [f"{part} part has no {name!r} images: AUC undefined" for name in absent]
    else:
        notes += [f"{part} part has no {name!r} images: its AUC is undefined (macro AUC over "
                  f"the {len(names) - len(absent)} classes present)" for name in absent]
    predicted = [name for name, count in prediction_counts.items() if count]
    if len(predicted) == 1 and len(names) > 1:
        notes.append(f"the model predicts {predicted[0]!r} for all {n} {part} images")
    balanced = _safe_float(balanced_accuracy_score, t, pred)
    pl, per_patient = patient_level_accuracy(t, pred, patients, probs=p_arr)
    irr = image_recognition_rate(t, pred)

    def summary(values: np.ndarray) -> dict[str, Any]:
        per_class = dict(zip(names, values.tolist(), strict=True))
        return {"macro": float(np.mean(values)), "per_class": per_class}

    out: dict[str, Any] = {
        "task": task,
        "class_names": names,
        "n_images": n,
        "n_patients": len(per_patient),
        "irr": irr,
        "prr": patient_recognition_rate(t, pred, patients),
        "accuracy": irr,
        "balanced_accuracy": balanced,
        "kappa": kappa,
        "precision": summary(prec),
        "recall": summary(rec),
        "f1": summary(f1),
        # PPV is precision; kept under its clinical name because paper 002 reports "PPV".
        "ppv": summary(prec),
        "confusion_matrix": cm.tolist(),
        "roc": roc,
        "auc": auc,
        "patient_level": pl,
        "per_patient": per_patient,
        "label_counts": label_counts,
        "prediction_counts": prediction_counts,
        "warnings": notes,
    }
    if len(names) == 2:
        pos = _positive_index(names)
        neg = 1 - pos
        out["positive_class"] = names[pos]
        for key, arr in (("precision", prec), ("recall", rec), ("f1", f1), ("ppv", prec)):
            out[key]["positive"] = float(arr[pos])
        out["auc"]["positive"] = auc["per_class"][names[pos]]
        out["sensitivity"] = float(rec[pos])
        out["specificity"] = float(rec[neg])
        npv_den = cm[neg, neg] + cm[pos, neg]
        out["npv"] = float(cm[neg, neg] / npv_den) if npv_den else float("nan")
    return to_jsonable(out)


# --------------------------------------------------------------------------- trials


def _flatten_scalars(d: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    flat: dict[str, float | None] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if key in ("per_patient", "roc"):  # per-unit detail, not a trial-level metric
                continue
            flat.update(_flatten_scalars(value, prefix=f"{name}."))
        elif value is None:
            flat[name] = None
        elif isinstance(value, bool | np.bool_):
            continue
        elif isinstance(value, int | float | np.integer | np.floating):
            flat[name] = float(value)
    return flat


def aggregate_trials(trials: Sequence[Mapping[str, Any]], *, ddof: int = 1) -> dict[str, Any]:
    """Mean and standard deviation of every scalar metric over repeated trials (``--trials N``).

    Nested scalars are flattened with dots (``"f1.macro"``, ``"auc.per_class.DC"``); lists,
    ``roc`` and ``per_patient`` are skipped. ``None`` (undefined) values are ignored per metric.

    Args:
        trials: metric dicts, e.g. from :func:`evaluate_predictions`.
        ddof: delta degrees of freedom of the std; 1 (sample std, default) as usual for "mean
            +- std over five trials"; falls back to 0 when a metric has a single value.

    Returns:
        ``{"n_trials": N, "metrics": {name: {"mean", "std", "n", "values"}}}``.

    Raises:
        ValueError: no trials, or ``ddof`` negative.

    Example:
        >>> aggregate_trials([{"irr": 0.9}, {"irr": 1.0}])["metrics"]["irr"]["mean"]
        0.95
    """
    if not trials:
        raise ValueError("aggregate_trials needs at least one trial. Received: trials=[]")
    if ddof < 0:
        raise ValueError(f"ddof must be >= 0. Received: ddof={ddof}")
    flats = [_flatten_scalars(t) for t in trials]
    keys: list[str] = []
    for f in flats:
        keys.extend(k for k in f if k not in keys)
    metrics: dict[str, Any] = {}
    for key in keys:
        values = [f.get(key) for f in flats]
        finite = np.asarray(
            [v for v in values if v is not None and math.isfinite(v)], dtype=np.float64
        )
        if finite.size == 0:
            mean = std = float("nan")
        else:
            mean = float(finite.mean())
            std = float(finite.std(ddof=ddof if finite.size > ddof else 0))
        metrics[key] = {"mean": mean, "std": std, "n": int(finite.size), "values": values}
    return to_jsonable({"n_trials": len(trials), "metrics": metrics})
