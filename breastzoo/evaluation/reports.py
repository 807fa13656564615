"""Evaluate a run folder on its test patients, or on another data tree, and write the report.

:func:`evaluate_run` writes into the run folder: ``metrics.json`` (keys include ``irr`` and
``prr``, fractions in [0, 1]; for subtype runs on BreaKHis also ``binary``: the same numbers
after mapping subtypes to benign/malignant; ``roi_hit_rate`` when lesion masks exist;
``prediction_counts`` and ``warnings``), ``predictions.json``, ``confusion_matrix.png``,
``roc.png``, ``history.png`` and ``overlays/*.png`` (ROIs drawn on test images with SaNet's
attention mask beside them).

:func:`evaluate_external` scores the run on every image of another tree (external
validation) and writes the same metrics, predictions and plots plus ``patients.csv`` into
``RUN/external/<tree name>/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from breastzoo import runs
from breastzoo.io import atomic_write_json, read_json
from breastzoo.models.specs import model_spec

N_OVERLAYS = 4


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
    oracle = model_spec(config.model).needs_lesion_centres
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


def _load_run(run_dir: str | Path) -> tuple[runs.RunFolder, dict, Any]:
    """``(run folder, manifest, config)`` of a finished run folder."""
    from breastzoo.configs import TrainConfig

    run = runs.RunFolder(run_dir).require_finished()
    manifest = run.read_manifest()
    return run, manifest, TrainConfig.from_dict(manifest["config"])


def _score(
    model: Any,
    records: list,
    *,
    class_names: list[str],
    config: Any,
    data_root: Path,
    dataset: str,
    out_dir: runs.RunFolder,
    part: str,
    title: str,
    extra: dict,
    notes: list[str] | None = None,
) -> tuple[dict, dict]:
    """Predict ``records``, compute the metrics and write metrics.json, predictions.json,
    confusion_matrix.png and roc.png into ``out_dir`` (the run folder, or an external report
    folder); shared by the run's own test part and external data.
    Returns ``(metrics, predictions)``."""
    from breastzoo import viz
    from breastzoo.evaluation.lesions import load_mask, roi_hit_rate
    from breastzoo.evaluation.metrics import evaluate_predictions, to_binary

    pred = predict_records(model, records, class_names, config, data_root)
    labels = np.asarray(pred["labels"])
    metrics = evaluate_predictions(labels, pred["probs"], pred["patients"], class_names,
                                   task=config.task, part=part)
    if config.task == "subtype" and dataset in ("breakhis", "bach"):
        metrics["binary"] = evaluate_predictions(
            to_binary(labels, class_names), to_binary(pred["probs"], class_names),
            pred["patients"], ["benign", "malignant"], task="binary", part=part,
        )
    masks = [load_mask(p, data_root) for p in pred["paths"]]
    # Whole-image models have no ROIs: the image centre hitting the lesion means nothing (the
    # hybrid's "ROIs" are its patch grid, which tiles the whole image).
    whole_image = not model_spec(config.model).selects_rois
    metrics["roi_hit_rate"] = None if whole_image else roi_hit_rate(pred["boxes"], masks)
    metrics["mean_rois"] = (float(np.mean([len(b) for b in pred["boxes"]]))
                            if pred["boxes"] else None)
    metrics["model"] = config.model
    metrics.update(extra)
    metrics["warnings"] = list(notes or []) + metrics["warnings"]
    out_dir.path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir.metrics_path, metrics)
    atomic_write_json(
        out_dir.predictions_path,
        {
            "class_names": class_names,
            "images": [
                {"path": p, "patient": pt, "label": int(y), "pred": int(np.argmax(pr)),
                 "probs": pr.tolist(), "boxes": np.asarray(b).tolist()}
                for p, pt, y, pr, b in zip(pred["paths"], pred["patients"], pred["labels"],
                                           pred["probs"], pred["boxes"], strict=True)
            ],
        },
    )
    viz.plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), class_names,
                              out_dir.confusion_matrix_plot, title=title)
    viz.plot_roc(metrics, out_dir.roc_plot)
    return metrics, pred


def summary_line(where: str | Path, metrics: dict, part: str, description: str) -> str:
    """The one-line result of an evaluation, with the images predicted per class (a model
    that collapsed to one class shows at a glance).

    Example:
        >>> m = {"irr": 0.5, "prr": 0.5, "balanced_accuracy": 0.5, "kappa": 0.0,
        ...      "n_images": 4, "n_patients": 2, "prediction_counts": {"b": 4, "m": 0}}
        >>> summary_line("runs/x", m, "test", "demo")
        'runs/x: IRR 0.500  PRR 0.500  bal.acc 0.500  kappa 0.000  on 4 test images of 2 \
patients (demo); predicted per class: b 4, m 0'
    """

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    counts = ", ".join(f"{k} {v}" for k, v in metrics.get("prediction_counts", {}).items())
    return (
        f"{where}: IRR {fmt(metrics['irr'])}  PRR {fmt(metrics['prr'])}  "
        f"bal.acc {fmt(metrics.get('balanced_accuracy'))}  kappa {fmt(metrics['kappa'])}  "
        f"on {metrics['n_images']} {part} images of {metrics['n_patients']} patients "
        f"({description}); predicted per class: {counts}"
    )


def _log_result(log: Callable[[str], None], line: str, metrics: dict) -> None:
    log(line)
    for note in metrics.get("warnings", []):
        log(f"  warning: {note}")


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
        log: where to print the summary line (and one line per warning).

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        ValueError: not a finished run folder, or its data cannot be found.

    Example:
        >>> evaluate_run("runs/breakhis-100x-denet_sanet-subtype-demo-seed0")  # doctest: +SKIP
    """
    run, manifest, config = _load_run(run_dir)
    if prepared is None:
        prepared = runs.load_prepared(run.path, manifest=manifest, data=data)
    test = prepared.parts()["test"]
    model = runs.load_model(run.model_path)
    metrics, pred = _score(
        model, test, class_names=prepared.class_names, config=config,
        data_root=prepared.source.root, dataset=prepared.source.dataset, out_dir=run,
        part="test", title=f"{config.model} ({prepared.source.label})",
        extra={"data": manifest["data"]["description"],
               "magnification": prepared.magnification},
    )
    if run.history_path.exists():
        from breastzoo import viz

        epochs = read_json(run.history_path)["epochs"]
        keys = sorted({k for e in epochs for k in e} - {"epoch"})
        viz.plot_history({k: [e.get(k, float("nan")) for e in epochs] for k in keys},
                         run.history_plot)
    _overlays(run.overlays, model, pred, prepared, config)
    _log_result(log, summary_line(run.path, metrics, "test", manifest["data"]["description"]),
                metrics)
    return metrics


_GENERIC_TREE_NAMES = {"breakhis_v1", "histology_slides", "breast", "photos"}


def _tree_name(root: Path) -> str:
    """A readable name for a data tree: its folder, skipping generic archive levels."""
    root = root.resolve()
    while root.name.lower() in _GENERIC_TREE_NAMES and root.parent != root:
        root = root.parent
    return root.name or "data"


def write_patient_table(path: str | Path, metrics: dict) -> Path:
    """Per-patient CSV of an evaluation: ``patient, label, n_images, n_correct,
    patient_accuracy, predicted_majority`` (class names; one row per patient, sorted).

    Args:
        path: the CSV to write (atomically).
        metrics: a dict from :func:`breastzoo.evaluation.metrics.evaluate_predictions`.

    Example:
        >>> write_patient_table("patients.csv", metrics)  # doctest: +SKIP
    """
    import csv
    import io

    from breastzoo.io import atomic_write_bytes

    names = metrics["class_names"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient", "label", "n_images", "n_correct", "patient_accuracy",
                     "predicted_majority"])
    for patient, row in sorted(metrics["per_patient"].items()):
        writer.writerow([patient, names[row["label"]], row["n_images"], row["correct"],
                         f"{row['accuracy']:.4f}", names[row["voted"]]])
    return atomic_write_bytes(path, buffer.getvalue().encode())


def holds_run_split(run_dir: str | Path, data: str | Path) -> bool:
    """Whether the tree at ``data`` holds any of the run's own test patients (then ``--data``
    is the run's data folder, moved; otherwise the tree is another one to validate on).

    Args:
        run_dir: a finished run folder.
        data: a data tree.

    Example:
        >>> holds_run_split("runs/r", "../shared/realdata")  # doctest: +SKIP
        True
    """
    from breastzoo.data.index import index_dataset

    _, manifest, _ = _load_run(run_dir)
    root = Path(data).expanduser()
    if not root.is_dir():
        return False
    test = set(manifest["split"]["test"])
    return any(r.patient in test for r in index_dataset(root).records)


def evaluate_external(
    run_dir: str | Path,
    data: str | Path,
    *,
    mag: str | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """External validation: score a trained run on EVERY image of another data tree.

    Splits are ignored: all images of ``data`` at the run's magnification (or ``mag``) are
    predicted. Their classes go through the run's ``class_names`` (subtype or benign /
    malignant, by the run's task). Patients the tree shares (by numeric patient id) with the
    run's own split are reported in ``warnings``: such a tree is not external.

    Writes into ``out`` (default ``RUN/external/<tree name>``, ``-<mag>`` appended when not
    the run's magnification): ``metrics.json`` (the metrics of :func:`evaluate_run`),
    ``predictions.json``, ``patients.csv`` (:func:`write_patient_table`),
    ``confusion_matrix.png`` and ``roc.png``.

    Args:
        run_dir: a finished run folder.
        data: the other tree (any dataset kind breastzoo indexes; auto-detected).
        mag: magnification to score (default: the run's).
        out: output folder.
        log: where to print the summary line.

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        ValueError: not a finished run, missing tree, no images at the magnification, or a
            class of the tree the run does not know (each naming the value).

    Example:
        >>> evaluate_external("runs/r", "../shared/realdata")["n_images"]  # doctest: +SKIP
        277
    """
    from breastzoo.data.index import index_dataset
    from breastzoo.data.records import normalize_magnification
    from breastzoo.data.splits import class_of, patient_group
    from breastzoo.data.testbed import read_manifest
    from breastzoo.datasource import DataSource

    run, manifest, config = _load_run(run_dir)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise ValueError(f"External data folder does not exist. Received: data={str(data)!r}")
    run_mag = manifest.get("magnification")
    magnification = normalize_magnification(mag) if mag is not None else run_mag
    index = index_dataset(root)
    notes = []
    if magnification and any(r.magnification for r in index.records):
        records = index.filter(magnification).records
    else:
        records = list(index.records)  # BACH / plain folders: no magnification to select
        if magnification:
            notes.append(f"{root} records no magnification; all its images are scored "
                         f"(the run is {magnification})")
            magnification = None
    if not records:
        raise ValueError(f"No usable images in {root} at {magnification or 'any magnification'}."
                         f" Received: data={str(data)!r}, mag={mag!r}")
    class_names = list(manifest["class_names"])
    unknown = sorted({class_of(r, config.task) for r in records} - set(class_names))
    if unknown:
        raise ValueError(
            f"{root} has class(es) the run does not know: {', '.join(map(repr, unknown))}; "
            f"run {run.path.name} ({config.task}) knows {', '.join(class_names)}"
        )
    source = DataSource(root, index.dataset, read_manifest(root) is not None)
    if model_spec(config.model).needs_lesion_centres and not source.synthetic:
        raise ValueError(f"oracle_roi reads lesion masks, which only the synthetic testbed has. "
                         f"Received: data={str(data)!r}")
    split = manifest.get("split", {})
    seen = {patient_group(p): part for part in ("train", "val", "test")
            for p in split.get(part, [])}
    shared = sorted({patient_group(r.patient) for r in records} & set(seen))
    if shared:
        by_part = {part: [g for g in shared if seen[g] == part] for part in ("train", "val",
                                                                            "test")}
        detail = "; ".join(f"{part}: {', '.join(g)}" for part, g in by_part.items() if g)
        notes.append(f"not external: {len(shared)} patient number(s) of this tree are in the "
                     f"run's own split ({detail})")
    name = _tree_name(root)
    if magnification and magnification != run_mag:
        name = f"{name}-{magnification.lower()}"
    out_dir = runs.RunFolder(out) if out else run.external(name)
    model = runs.load_model(run.model_path)
    description = f"external: {source.label}"
    metrics, _ = _score(
        model, records, class_names=class_names, config=config, data_root=root,
        dataset=index.dataset, out_dir=out_dir, part="external",
        title=f"{config.model} on {name} (external)",
        extra={"data": description, "magnification": magnification,
               "external": {"root": str(root.resolve()), "dataset": index.dataset,
                            "run": str(run.path), "run_magnification": run_mag,
                            "synthetic": source.synthetic}},
        notes=notes,
    )
    write_patient_table(out_dir.patient_table, metrics)
    _log_result(log, summary_line(out_dir.path, metrics, "external", description), metrics)
    return metrics


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
        attention = viz.attention_canvas(model, image, boxes)
        true, guess = names[pred["labels"][i]], names[int(np.argmax(pred["probs"][i]))]
        viz.plot_roi_overlay(
            image, boxes, folder / f"{Path(pred['paths'][i]).stem}.png", attention=attention,
            title=f"true {true} / predicted {guess}",
        )
