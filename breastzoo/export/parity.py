"""Parity of exported models with the Keras model: same probabilities, same votes.

The checks the export tests and ``bench/latency.py`` share:

* :func:`run_images` reads a run folder's images (uint8, the model's input contract) for one
  split part: ``"train"`` (the int8 representative set) or ``"test"`` (parity).
* :func:`compare_outputs` measures how far a candidate's outputs are from the reference's:
  largest absolute probability difference, top-1 agreement, largest box difference.
* :func:`predict_batched` runs any callable (Keras, SavedModel signature, TFLite, ONNX
  runner) over images in batches and concatenates the outputs.

Targets (issue 5): fp32 TFLite and ONNX probabilities within 1e-4 of Keras; int8 TFLite top-1
agreement >= 98% on the test split.

Example:
    >>> ref = {"probabilities": np.array([[0.2, 0.8]])}
    >>> compare_outputs(ref, {"probabilities": np.array([[0.3, 0.7]])})["top1_agreement"]
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from breastzoo.runs import MANIFEST_NAMES, RunFolder, load_prepared

__all__ = [
    "FP32_ATOL",
    "INT8_MIN_AGREEMENT",
    "MANIFEST_NAMES",
    "compare_outputs",
    "keras_runner",
    "predict_batched",
    "run_images",
]

FP32_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.98


def compare_outputs(reference: dict[str, Any], candidate: dict[str, Any]) -> dict[str, float]:
    """How far ``candidate``'s serving outputs are from ``reference``'s.

    Args:
        reference: ``{"probabilities": [N, C], optional "boxes": [N, k, 4]}`` (Keras).
        candidate: the same keys from an exported model.

    Returns:
        ``{"n", "max_abs_diff", "top1_agreement"}`` plus ``"boxes_max_abs_diff"`` when both
        have boxes.

    Raises:
        ValueError: the probability arrays differ in shape.

    Example:
        >>> compare_outputs({"probabilities": np.eye(2)}, {"probabilities": np.eye(2)})["n"]
        2
    """
    ref = np.asarray(reference["probabilities"], dtype="float64")
    cand = np.asarray(candidate["probabilities"], dtype="float64")
    if ref.shape != cand.shape:
        raise ValueError(
            f"Probability shapes differ. Received: reference={ref.shape}, candidate={cand.shape}"
        )
    result = {
        "n": int(ref.shape[0]),
        "max_abs_diff": float(np.max(np.abs(ref - cand))) if ref.size else 0.0,
        "top1_agreement": float(np.mean(ref.argmax(-1) == cand.argmax(-1))) if ref.size else 1.0,
    }
    if "boxes" in reference and "boxes" in candidate:
        diff = np.abs(np.asarray(reference["boxes"]) - np.asarray(candidate["boxes"]))
        result["boxes_max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    return result


def predict_batched(
    fn: Callable[[np.ndarray], dict[str, Any]], images: np.ndarray, batch_size: int = 8
) -> dict[str, np.ndarray]:
    """Run ``fn`` over ``images`` in batches and concatenate each output.

    Args:
        fn: uint8 ``[n, H, W, 3]`` -> dict of arrays with a leading batch axis.
        images: uint8 ``[N, H, W, 3]``.
        batch_size: images per call.

    Example:
        >>> out = predict_batched(lambda x: {"n": x[:, 0, 0, 0]}, np.zeros((5, 2, 2, 3)), 2)
        >>> out["n"].shape
        (5,)
    """
    from breastzoo.checks import positive_int

    positive_int("batch_size", batch_size)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        out = fn(images[start : start + batch_size])
        for key, value in out.items():
            parts.setdefault(key, []).append(np.asarray(value))
    return {key: np.concatenate(values) for key, values in parts.items()}


def keras_runner(model: Any) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The reference: the Keras model's own inference in the serving contract's names.

    Example:
        >>> run = keras_runner(model)  # doctest: +SKIP
        >>> run(images)["probabilities"].shape  # doctest: +SKIP
        (4, 8)
    """
    import tensorflow as tf

    from breastzoo.export.serving import serving_function

    fn = serving_function(model)

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in fn(tf.constant(images, tf.uint8)).items()}

    return run


def run_images(
    run_dir: str | Path,
    part: str = "test",
    *,
    limit: int | None = None,
    seed: int = 0,
    data: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels of one split part of a run folder (patient-wise split of the run).

    Args:
        run_dir: a run folder of ``breastzoo fit`` (its ``config.json`` names data and split)
            or a published zoo version (``run_config.json``).
        part: ``"train"``, ``"val"`` or ``"test"``.
        limit: at most this many images, drawn evenly at random (seeded) when fewer are
            wanted than the part has.
        seed: seed of that draw.
        data: data root override (a moved dataset).

    Returns:
        ``(images uint8 [N, H, W, 3], labels int32 [N])``.

    Raises:
        ValueError: unknown part, or not a run folder / its data is missing.

    Example:
        >>> x, y = run_images("runs/breakhis-100x-denet_sanet-subtype-demo-seed0", "train",
        ...                   limit=32)  # doctest: +SKIP
    """
    from breastzoo.checks import one_of
    from breastzoo.configs import TrainConfig
    from breastzoo.data.pipeline import make_dataset

    one_of("part", part, ("train", "val", "test"))
    # A run folder has config.json; a published zoo version keeps it as run_config.json.
    manifest = RunFolder(run_dir).read_manifest()
    config = TrainConfig.from_dict(manifest["config"])
    prepared = load_prepared(run_dir, manifest=manifest, data=data)
    records = prepared.parts()[part]
    if limit is not None and limit < len(records):
        pick = np.random.default_rng(seed).choice(len(records), size=limit, replace=False)
        records = [records[i] for i in sorted(pick)]
    ds = make_dataset(records, prepared.class_names, task=config.task, batch_size=16,
                      image_size=config.image_size)
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    if not images:
        w, h = config.image_size
        return np.zeros((0, h, w, 3), "uint8"), np.zeros((0,), "int32")
    return np.concatenate(images), np.concatenate(labels).astype("int32")
