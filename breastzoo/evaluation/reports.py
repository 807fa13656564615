"""Evaluate a run folder on its test patients and write metrics, predictions and plots.

Writes into the run folder: ``metrics.json`` (keys include ``irr`` and ``prr``, fractions in
[0, 1]; for subtype runs on BreaKHis also ``binary``: the same numbers after mapping subtypes
to benign/malignant; ``roi_hit_rate`` when lesion masks exist), ``predictions.json``,
``confusion_matrix.png``, ``roc.png``, ``history.png`` and ``overlays/*.png`` (ROIs drawn on
test images with SaNet's attention mask beside them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from breastzoo.io import atomic_write_json, read_json

N_OVERLAYS = 4


def _load_prepared(run_dir: Path, manifest: dict, data: str | None) -> Any:
    from breastzoo.data.index import index_dataset
    from breastzoo.data.splits import PatientSplit
    from breastzoo.datasource import DataSource
    from breastzoo.training import PreparedData

    d = manifest["data"]
    root = Path(data) if data else Path(d["root"])
    if not root.is_dir():
        raise ValueError(
            f"Data of run {run_dir} not found at {root}; pass --data PATH to point at it."
        )
    source = DataSource(root, d["dataset"], d["synthetic"])
    index = index_dataset(root, d["dataset"]).filter(manifest["magnification"])
    s = manifest["split"]
    split = PatientSplit(s["train"], s["val"], s["test"], seed=s.get("seed"),
                         source=s.get("source", "stratified"))
    return PreparedData(source, manifest["magnification"], manifest["class_names"],
                        index.records, split)


def predict_records(
    model: Any, records: list, class_names: list[str], config: Any, data_root: Path | None = None
) -> dict:
    """Run ``model.infer`` over records in order; collect probabilities, ROIs and metadata.

    ``data_root`` locates lesion masks, which ``oracle_roi`` models need as inputs.
    """
    from breastzoo.data.pipeline import make_dataset
    from breastzoo.evaluation.lesions import CANDIDATES, lesion_points, load_mask

    ds = make_dataset(records, class_names, task=config.task, batch_size=config.batch_size,
                      image_size=config.image_size, with_path=True)
    oracle = config.model == "oracle_roi"
    out: dict[str, list] = {"probs": [], "boxes": [], "labels": [], "paths": [], "patients": []}
    for images, labels, meta in ds:
        inputs = images
        if oracle:
            pts = []
            for p in meta["path"].numpy():
                p = p.decode()
                pts.append(lesion_points(load_mask(p, data_root), CANDIDATES, p)[: config.k])
            inputs = {"images": images, "centres": np.stack(pts)}
        result = model.infer(inputs)
        probs = np.asarray(result["probs"])
        boxes = np.asarray(result["boxes"])
        n = np.asarray(result["n_rois"])
        out["probs"].extend(probs)
        out["boxes"].extend(boxes[i, : n[i]] for i in range(len(n)))
        out["labels"].extend(np.asarray(labels).tolist())
        out["paths"].extend(p.decode() for p in meta["path"].numpy())
        out["patients"].extend(p.decode() for p in meta["patient"].numpy())
    out["probs"] = np.stack(out["probs"]) if out["probs"] else np.zeros((0, len(class_names)))
    return out


def evaluate_run(
    run_dir: str | Path,
    *,
    prepared: Any = None,
    data: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Evaluate ``run_dir/model.keras`` on the run's test patients and write the report.

    Args:
        run_dir: a run folder written by ``breastzoo fit``.
        prepared: data already indexed by the caller (skips re-indexing).
        data: override the data root recorded in ``config.json`` (moved dataset).
        log: where to print the summary line.

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        ValueError: not a finished run folder, or its data cannot be found.

    Example:
        >>> evaluate_run("runs/breakhis-100x-denet_sanet-subtype-demo-seed0")  # doctest: +SKIP
    """
    import keras

    import breastzoo.models.baselines  # noqa: F401 - registers classes for load_model
    import breastzoo.models.ensemble  # noqa: F401
    import breastzoo.models.hybrid  # noqa: F401
    import breastzoo.models.selective  # noqa: F401
    from breastzoo.configs import TrainConfig
    from breastzoo.evaluation.lesions import load_mask, roi_hit_rate
    from breastzoo.evaluation.metrics import evaluate_predictions

    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.exists():
        raise ValueError(f"Not a finished run folder (no model.keras). Received: {run_dir}")
    manifest = read_json(run_dir / "config.json")
    config = TrainConfig.from_dict(manifest["config"])
    if prepared is None:
        prepared = _load_prepared(run_dir, manifest, data)
    test = prepared.parts()["test"]
    model = keras.saving.load_model(model_path, safe_mode=True)
    pred = predict_records(model, test, prepared.class_names, config, prepared.source.root)

    metrics = evaluate_predictions(
        np.asarray(pred["labels"]), pred["probs"], pred["patients"], prepared.class_names,
        task=config.task,
    )
    if config.task == "subtype" and prepared.source.dataset in ("breakhis", "bach"):
        from breastzoo.evaluation.metrics import to_binary

        metrics["binary"] = evaluate_predictions(
            to_binary(np.asarray(pred["labels"]), prepared.class_names),
            to_binary(pred["probs"], prepared.class_names),
            pred["patients"], ["benign", "malignant"], task="binary",
        )
    masks = [load_mask(p, prepared.source.root) for p in pred["paths"]]
    # Whole-image models have no ROIs: the image centre hitting the lesion means nothing (the
    # hybrid's "ROIs" are its patch grid, which tiles the whole image).
    whole_image = config.model in ("sanet_resize", "resnet50_full", "hybrid")
    metrics["roi_hit_rate"] = None if whole_image else roi_hit_rate(pred["boxes"], masks)
    metrics["mean_rois"] = float(np.mean([len(b) for b in pred["boxes"]])) if test else None
    metrics["model"] = config.model
    metrics["data"] = manifest["data"]["description"]
    metrics["magnification"] = prepared.magnification
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(
        run_dir / "predictions.json",
        {
            "class_names": prepared.class_names,
            "images": [
                {"path": p, "patient": pt, "label": int(y), "pred": int(np.argmax(pr)),
                 "probs": pr.tolist(), "boxes": np.asarray(b).tolist()}
                for p, pt, y, pr, b in zip(pred["paths"], pred["patients"], pred["labels"],
                                           pred["probs"], pred["boxes"], strict=True)
            ],
        },
    )
    _plots(run_dir, model, metrics, pred, prepared, config)
    log(
        f"{run_dir}: IRR {metrics['irr']:.3f}  PRR {metrics['prr']:.3f}  "
        f"kappa {metrics['kappa']:.3f}  on {metrics['n_images']} test images of "
        f"{metrics['n_patients']} patients ({manifest['data']['description']})"
    )
    return metrics


def _plots(run_dir: Path, model: Any, metrics: dict, pred: dict, prepared: Any,
           config: Any) -> None:
    from breastzoo import viz

    viz.plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), prepared.class_names,
                              run_dir / "confusion_matrix.png",
                              title=f"{config.model} ({prepared.source.label})")
    viz.plot_roc(metrics, run_dir / "roc.png")
    history_path = run_dir / "history.json"
    if history_path.exists():
        epochs = read_json(history_path)["epochs"]
        keys = sorted({k for e in epochs for k in e} - {"epoch"})
        viz.plot_history({k: [e.get(k, float("nan")) for e in epochs] for k in keys},
                         run_dir / "history.png")
    _overlays(run_dir / "overlays", model, pred, prepared, config)


def _overlays(folder: Path, model: Any, pred: dict, prepared: Any, config: Any) -> None:
    """ROI boxes on a few test images (one per class first), attention masks pasted beside."""
    from PIL import Image

    from breastzoo import viz

    chosen: list[int] = []
    for cls in range(len(prepared.class_names)):
        idx = [i for i, y in enumerate(pred["labels"]) if y == cls]
        if idx:
            chosen.append(idx[0])
    chosen = (chosen + [i for i in range(len(pred["labels"])) if i not in chosen])[:N_OVERLAYS]
    names = prepared.class_names
    for i in chosen:
        with Image.open(pred["paths"][i]) as im:
            image = np.asarray(im.convert("RGB"))
        boxes = np.asarray(pred["boxes"][i]).astype(int)
        attention = _attention_canvas(model, image, boxes)
        true, guess = names[pred["labels"][i]], names[int(np.argmax(pred["probs"][i]))]
        viz.plot_roi_overlay(
            image, boxes, folder / f"{Path(pred['paths'][i]).stem}.png", attention=attention,
            title=f"true {true} / predicted {guess}",
        )


def _attention_canvas(model: Any, image: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
    """SaNet's attention mask of every ROI pasted into an image-sized canvas (0 elsewhere)."""
    classifier = getattr(model, "classifier", None)
    if classifier is None or not hasattr(classifier, "attention_mask") or len(boxes) == 0:
        return None
    h, w = image.shape[:2]
    canvas = np.zeros((h, w), "float32")
    patches = []
    for y0, x0, y1, x1 in boxes:
        patch = image[max(y0, 0):y1, max(x0, 0):x1]
        if patch.shape[:2] != (y1 - y0, x1 - x0):
            return None  # image differs in size from the model's contract
        patches.append(patch)
    from breastzoo.models.preprocessing import to_unit_range

    x = to_unit_range(np.stack(patches), getattr(model, "preprocess", None))
    masks = np.asarray(classifier.attention_mask(x, upsample=True))
    for (y0, x0, y1, x1), m in zip(boxes, masks, strict=True):
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], m)
    return canvas
