"""Classical texture anchor: hand-crafted texture/colour features + logistic regression.

The BreaKHis paper (Spanhol et al., IEEE TBME 2016) reports patient-wise baselines built from
classical descriptors (LBP, GLCM, ...) fed to shallow classifiers. This module is a small
anchor in that spirit, so the deep models have a cheap, non-neural number to beat on the same
patient-wise folds. Every descriptor comes from scikit-image; nothing here re-implements it.

Features (:func:`texture_features`, 58 values, computed on a half-resolution image):

* uniform LBP histograms of the grey image, ``P=8, R=1`` (10 bins) and ``P=16, R=2`` (18 bins);
* GLCM contrast, homogeneity, energy, correlation and dissimilarity at distances 1, 2, 4,
  averaged over the angles 0, 45, 90 and 135 degrees, on the grey image quantised to 32 levels
  (15 values);
* the 5th/25th/50th/75th/95th percentiles of the haematoxylin, eosin and DAB channels of
  ``skimage.color.rgb2hed`` colour deconvolution (15 values).

The classifier (:class:`TextureClassifier`) is ``StandardScaler`` + class-balanced
``LogisticRegression``; features are cached per file (path, size and mtime), so the k-fold
loop of :func:`evaluate_texture_kfold` extracts each image once.

Example:
    >>> import numpy as np
    >>> texture_features(np.zeros((64, 96, 3), np.uint8)).shape
    (58,)
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breastzoo.data.records import ImageRecord
from breastzoo.data.splits import PatientLeakError, patient_group

# Bump when the feature definition changes: it is part of every cache key and of saved models,
# so stale cached vectors are never mixed with new ones.
FEATURE_VERSION = 1

LBP_SETTINGS: tuple[tuple[int, int], ...] = ((8, 1), (16, 2))
GLCM_DISTANCES: tuple[int, ...] = (1, 2, 4)
GLCM_ANGLES: tuple[float, ...] = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
GLCM_PROPS: tuple[str, ...] = ("contrast", "homogeneity", "energy", "correlation", "dissimilarity")
GLCM_LEVELS = 32
HED_PERCENTILES: tuple[float, ...] = (5.0, 25.0, 50.0, 75.0, 95.0)
# Smallest image side accepted: GLCM at distance 4 on the half-resolution image needs a few
# pixel pairs in every direction, otherwise its normalised matrix is 0/0.
MIN_SIDE = 16


def feature_names() -> list[str]:
    """Names of the values of :func:`texture_features`, in order.

    Example:
        >>> feature_names()[0], len(feature_names())
        ('lbp8r1_0', 58)
    """
    names = [f"lbp{p}r{r}_{b}" for p, r in LBP_SETTINGS for b in range(p + 2)]
    names += [f"glcm_{prop}_d{d}" for prop in GLCM_PROPS for d in GLCM_DISTANCES]
    names += [f"hed_{c}_p{int(q)}" for c in "HED" for q in HED_PERCENTILES]
    return names


def texture_features(image: np.ndarray) -> np.ndarray:
    """LBP, GLCM and HED-percentile features of one RGB image (see the module docstring).

    Args:
        image: uint8 ``[H, W, 3]`` RGB image, both sides at least ``MIN_SIDE`` pixels.

    Returns:
        float64 vector of ``len(feature_names())`` values, the same length for any image size.

    Raises:
        ValueError: not a uint8 RGB image, or too small.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> bool(np.isfinite(texture_features(rng.integers(0, 256, (40, 40, 3), np.uint8))).all())
        True
    """
    from skimage.color import rgb2gray, rgb2hed
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.transform import downscale_local_mean
    from skimage.util import img_as_ubyte

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"Expected a uint8 RGB image [H, W, 3]. Received: shape={image.shape}, "
            f"dtype={image.dtype}"
        )
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"Image too small (min side {MIN_SIDE}). Received: shape={image.shape}")

    # Half resolution (2x2 block means, i.e. anti-aliased) cuts the cost ~4x; at 100X the
    # nuclei are still ~5-10 px across, which is the scale LBP (R=1, 2) and GLCM (d<=4) see.
    half = downscale_local_mean(image, (2, 2, 1)) / 255.0  # float in [0, 1]
    grey = img_as_ubyte(np.clip(rgb2gray(half), 0.0, 1.0))

    parts: list[np.ndarray] = []
    for p, r in LBP_SETTINGS:
        # "uniform" codes take the values 0..P+1 (P+1 = all non-uniform patterns).
        codes = local_binary_pattern(grey, p, r, method="uniform")
        hist, _ = np.histogram(codes, bins=p + 2, range=(0, p + 2))
        parts.append(hist / max(hist.sum(), 1))

    # 32 grey levels: a 256-level GLCM is sparse (noisy properties) and 64x slower to build.
    quantised = (grey // (256 // GLCM_LEVELS)).astype(np.uint8)
    glcm = graycomatrix(
        quantised, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS, symmetric=True, normed=True
    )
    for prop in GLCM_PROPS:
        values = graycoprops(glcm, prop)  # [distances, angles]
        # A flat image has zero grey-level variance, where skimage defines correlation as 1.
        parts.append(np.nan_to_num(values, nan=1.0).mean(axis=1))

    hed = rgb2hed(half).reshape(-1, 3)
    parts.append(np.percentile(hed, HED_PERCENTILES, axis=0).T.ravel())  # H, then E, then D
    return np.concatenate(parts).astype(np.float64)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB with PIL (no TensorFlow, so it is cheap in workers).

    Example:
        >>> load_rgb("slide.png").shape  # doctest: +SKIP
        (460, 700, 3)
    """
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _cache_key(path: str | os.PathLike) -> str:
    """Path, size and mtime (ns) of a file plus the feature version: a changed file misses."""
    p = Path(path).resolve()
    st = p.stat()
    return f"v{FEATURE_VERSION}|{p}|{st.st_size}|{st.st_mtime_ns}"


def _features_of_file(path: str) -> np.ndarray:
    return texture_features(load_rgb(path))


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    ``os.replace`` within one folder is atomic, so a reader (or a crash) never sees a half file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name rather than tempfile.mkstemp: mkstemp creates the file 0600, and the
    # rename would then leave results and models unreadable to other users despite the umask.
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_features(
    paths: Sequence[str],
    cache: MutableMapping[str, np.ndarray] | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int = 1,
) -> np.ndarray:
    """Texture features of image files, ``[N, F]``, reusing cached vectors.

    Args:
        paths: image files.
        cache: optional in-memory dict (key: path + size + mtime + feature version); filled in.
        cache_dir: optional folder of ``.npy`` files, one per image, kept across runs.
        n_jobs: joblib worker threads for the cache misses (1 = serial).

    Returns:
        float64 array ``[len(paths), len(feature_names())]``.

    Example:
        >>> extract_features([]).shape
        (0, 58)
    """
    n_features = len(feature_names())
    out = np.zeros((len(paths), n_features), np.float64)
    folder = Path(cache_dir) if cache_dir is not None else None
    missing: list[tuple[int, str, str]] = []
    for i, path in enumerate(paths):
        key = _cache_key(path)
        if cache is not None and key in cache:
            out[i] = cache[key]
            continue
        disk = folder / (hashlib.sha1(key.encode()).hexdigest() + ".npy") if folder else None
        if disk is not None and disk.is_file():
            out[i] = np.load(disk)
            if cache is not None:
                cache[key] = out[i].copy()
            continue
        missing.append((i, str(path), key))
    if missing:
        if n_jobs == 1:
            vectors = [_features_of_file(p) for _, p, _ in missing]
        else:
            from joblib import Parallel, delayed

            # Threads, not processes: a process worker would re-import this package (and with
            # it TensorFlow, via breastzoo.models) for a ~0.1 s job; skimage's LBP and GLCM
            # loops and numpy release the GIL for most of the work.
            vectors = Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(_features_of_file)(p) for _, p, _ in missing
            )
        for (i, _, key), vec in zip(missing, vectors, strict=True):
            out[i] = vec
            if cache is not None:
                cache[key] = vec
            if folder is not None:
                target = folder / (hashlib.sha1(key.encode()).hexdigest() + ".npy")
                _atomic_write(target, lambda tmp, v=vec: _save_npy(tmp, v))
    return out


def _save_npy(tmp: str, vec: np.ndarray) -> None:
    with open(tmp, "wb") as fh:  # a file object, so numpy does not append a second ".npy"
        np.save(fh, vec)


def _record_labels(
    records: Sequence[ImageRecord], class_names: Sequence[str], task: str
) -> np.ndarray:
    from breastzoo.data.pipeline import record_labels

    return np.asarray(record_labels(records, class_names, task), np.int64)


class TextureClassifier:
    """Texture features + ``StandardScaler`` + class-balanced logistic regression.

    ``C=0.1`` (stronger L2 than sklearn's default 1.0): with ~60 correlated features and a
    dozen training patients, weaker regularisation fits patient-specific colour and texture.

    Args:
        C: inverse L2 strength of the logistic regression.
        max_iter: solver iterations (lbfgs; high so it converges on unscaled-looking data).
        cache: optional dict shared between classifiers (e.g. across k folds) that maps
            file keys to feature vectors; a fresh private dict when ``None``.
        cache_dir: optional folder for an on-disk feature cache (``.npy`` per image).
        n_jobs: feature-extraction threads.

    Example:
        >>> clf = TextureClassifier(cache_dir="runs/texture_cache")  # doctest: +SKIP
        >>> clf.fit(train_records, ["benign", "malignant"], "binary")  # doctest: +SKIP
        >>> clf.predict_proba(test_records)[:, 1]  # P(malignant)  # doctest: +SKIP
    """

    def __init__(
        self,
        C: float = 0.1,
        max_iter: int = 10000,
        cache: MutableMapping[str, np.ndarray] | None = None,
        cache_dir: str | os.PathLike | None = None,
        n_jobs: int = 1,
    ) -> None:
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.cache: MutableMapping[str, np.ndarray] = {} if cache is None else cache
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.n_jobs = int(n_jobs)
        self.pipeline: Any = None
        self.class_names: list[str] = []
        self.task = "binary"

    def features(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """Feature matrix ``[N, F]`` of ``records`` (through the cache)."""
        return extract_features(
            [r.path for r in records], self.cache, self.cache_dir, n_jobs=self.n_jobs
        )

    def fit(
        self, records: Sequence[ImageRecord], class_names: Sequence[str], task: str = "binary"
    ) -> TextureClassifier:
        """Train on ``records``.

        Args:
            records: training images.
            class_names: class names in label order (``["benign", "malignant"]`` for binary).
            task: ``"binary"`` (uses ``record.label``) or ``"subtype"`` (``record.subtype``).

        Returns:
            ``self``.

        Raises:
            ValueError: no records, fewer than two classes present, unknown class or task.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = _record_labels(records, class_names, task)
        if len(np.unique(y)) < 2:
            raise ValueError(
                "Training needs at least two classes. Received: "
                f"{len(records)} records of classes {sorted({int(v) for v in y})}"
            )
        self.pipeline = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, class_weight="balanced", max_iter=self.max_iter),
        )
        self.pipeline.fit(self.features(records), y)
        self.class_names = [str(c) for c in class_names]
        self.task = task
        return self

    def predict_proba_features(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, len(class_names)]`` of precomputed features ``x``.

        Classes absent from training get probability 0 (their column is still present, so the
        columns always follow ``class_names``).
        """
        if self.pipeline is None:
            raise ValueError("TextureClassifier is not fitted. Call fit() or load() first.")
        probs = np.zeros((len(x), len(self.class_names)), np.float64)
        if len(x):
            probs[:, self.pipeline.classes_] = self.pipeline.predict_proba(x)
        return probs

    def predict_proba(self, records: Sequence[ImageRecord]) -> np.ndarray:
        """Class probabilities ``[N, len(class_names)]`` of ``records``."""
        return self.predict_proba_features(self.features(records))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model with joblib, atomically (temp file + ``os.replace``).

        The feature cache is not saved. Returns the path written.
        """
        import joblib

        if self.pipeline is None:
            raise ValueError("TextureClassifier is not fitted. Call fit() before save().")
        state = {
            "format": "breastzoo.texture",
            "feature_version": FEATURE_VERSION,
            "pipeline": self.pipeline,
            "class_names": self.class_names,
            "task": self.task,
            "C": self.C,
            "max_iter": self.max_iter,
        }
        path = Path(path)
        _atomic_write(path, lambda tmp: joblib.dump(state, tmp))
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        cache: MutableMapping[str, np.ndarray] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> TextureClassifier:
        """Read a model written by :meth:`save`.

        joblib files are pickles: load only files you (or the project) wrote.

        Raises:
            ValueError: not a texture model, or written with another feature version.
        """
        import joblib

        state = joblib.load(path)
        if not isinstance(state, dict) or state.get("format") != "breastzoo.texture":
            raise ValueError(f"Not a breastzoo texture model. Received: path={str(path)!r}")
        if state["feature_version"] != FEATURE_VERSION:
            raise ValueError(
                "Texture model was saved with another feature definition. Received: "
                f"feature_version={state['feature_version']}, expected {FEATURE_VERSION}"
            )
        clf = cls(C=state["C"], max_iter=state["max_iter"], cache=cache, cache_dir=cache_dir)
        clf.pipeline = state["pipeline"]
        clf.class_names = list(state["class_names"])
        clf.task = state["task"]
        return clf


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}


def _fold_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    patients: Sequence[str],
    class_names: Sequence[str],
    task: str,
) -> dict[str, Any]:
    from sklearn.metrics import balanced_accuracy_score

    from breastzoo.evaluation.metrics import evaluate_predictions

    m = evaluate_predictions(y, probs, list(patients), class_names, task=task)
    pred = probs.argmax(axis=1)
    names = m["class_names"]
    if task == "binary" and len(class_names) > 2:  # metrics mapped subtypes to benign/malignant
        from breastzoo.evaluation.metrics import to_binary

        y, pred = to_binary(y, class_names), to_binary(pred, class_names)
    auc = m["auc"].get("positive", m["auc"]["macro"])
    true_counts = Counter(int(v) for v in y)
    pred_counts = Counter(int(v) for v in pred)
    return {
        "n_images": m["n_images"],
        "n_patients": m["n_patients"],
        "irr": m["irr"],
        "prr": m["prr"],
        "patient_level": m["patient_level"],
        "auc": auc,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "sensitivity": m.get("sensitivity"),
        "specificity": m.get("specificity"),
        "true_counts": {n: true_counts.get(i, 0) for i, n in enumerate(names)},
        "pred_counts": {n: pred_counts.get(i, 0) for i, n in enumerate(names)},
        # Accuracy of always answering this test set's most common class: the floor for IRR.
        "majority_rate": max(true_counts.values()) / len(y),
        "confusion_matrix": m["confusion_matrix"],
    }


def evaluate_texture_kfold(
    records: Sequence[ImageRecord],
    folds: list[list[str]],
    class_names: Sequence[str],
    task: str = "binary",
    *,
    C: float = 0.1,
    cache: MutableMapping[str, np.ndarray] | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Patient-wise k-fold evaluation of :class:`TextureClassifier`.

    Each fold (a list of test patient ids) is predicted by a model trained on every other
    patient in ``records``. Features are extracted once for all records.

    Args:
        records: all images of the study.
        folds: test patient ids of each fold, e.g. from
            ``breastzoo.data.splits.kfold_patients(records, k, seed, task="binary")``.
        class_names: class names in label order.
        task: ``"binary"`` or ``"subtype"``.
        C: logistic-regression inverse L2 strength.
        cache, cache_dir, n_jobs: feature cache and threads (see :class:`TextureClassifier`).

    Returns:
        ``{"folds": [per-fold metrics], "pooled": metrics of all folds' predictions together,
        "summary": {metric: {"mean", "std", "n"}} over folds, "majority_rate", "n_images",
        "feature_seconds", "seconds"}``. Per-fold metrics hold ``irr``, ``prr``, ``auc``,
        ``balanced_accuracy``, ``true_counts``, ``pred_counts``, ``majority_rate``, ...

    Raises:
        PatientLeakError: a test patient's group (:func:`patient_group`) also has patients
            in training, or a patient is in two folds.

    Example:
        >>> folds = kfold_patients(records, k=4, seed=0, task="binary")  # doctest: +SKIP
        >>> res = evaluate_texture_kfold(records, folds, ["benign", "malignant"])  # doctest: +SKIP
        >>> res["summary"]["balanced_accuracy"]["mean"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    records = list(records)
    seen: dict[str, int] = {}
    for f, fold in enumerate(folds):
        for p in fold:
            if p in seen:
                raise PatientLeakError(f"Patient {p} is in folds {seen[p]} and {f}.")
            seen[p] = f
    cache = {} if cache is None else cache
    clf_kwargs = {"C": C, "cache": cache, "cache_dir": cache_dir, "n_jobs": n_jobs}
    TextureClassifier(**clf_kwargs).features(records)  # fill the cache once
    feature_seconds = time.perf_counter() - start

    y_all = _record_labels(records, class_names, task)
    per_fold: list[dict[str, Any]] = []
    pooled_y: list[np.ndarray] = []
    pooled_p: list[np.ndarray] = []
    pooled_patients: list[str] = []
    for f, fold in enumerate(folds):
        test_ids = set(fold)
        test_groups = {patient_group(p) for p in test_ids}
        test = [r for r in records if r.patient in test_ids]
        train = [r for r in records if r.patient not in test_ids]
        leaked = sorted({r.patient for r in train if patient_group(r.patient) in test_groups})
        if leaked:
            raise PatientLeakError(
                f"Fold {f}: training patients {leaked} share a patient group with the test fold."
            )
        if not test:
            raise ValueError(f"Fold {f} has no images. Received: fold={sorted(fold)}")
        clf = TextureClassifier(**clf_kwargs).fit(train, class_names, task)
        probs = clf.predict_proba(test)
        y = y_all[[r.patient in test_ids for r in records]]
        patients = [r.patient for r in test]
        metrics = _fold_metrics(y, probs, patients, class_names, task)
        metrics["test_patients"] = sorted(test_ids)
        per_fold.append(metrics)
        pooled_y.append(y)
        pooled_p.append(probs)
        pooled_patients.extend(patients)

    pooled = _fold_metrics(
        np.concatenate(pooled_y), np.concatenate(pooled_p), pooled_patients, class_names, task
    )
    keys = ("irr", "prr", "patient_level", "auc", "balanced_accuracy", "sensitivity")
    summary = {k: _mean_std([m[k] for m in per_fold]) for k in keys + ("specificity",)}
    return {
        "task": task,
        "class_names": list(pooled["true_counts"]),
        "C": C,
        "n_images": len(records),
        "folds": per_fold,
        "pooled": pooled,
        "summary": summary,
        "majority_rate": pooled["majority_rate"],
        "feature_seconds": feature_seconds,
        "seconds": time.perf_counter() - start,
    }
