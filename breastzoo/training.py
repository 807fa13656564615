"""``breastzoo fit``: index -> patient-wise split -> train (resumable) -> evaluate -> run folder.

A run folder holds::

    config.json     the TrainConfig, data source, magnification, classes and the split
    history.json    per-epoch training and validation metrics (kept across resumes)
    model.keras     the trained model (written atomically when training ends)
    backup/         Keras BackupAndRestore state; present only while a run is unfinished
    checkpoints/    last.keras, saved every epoch
    logs/           TensorBoard
    metrics.json, predictions.json, confusion_matrix.png, roc.png, history.png,
    overlays/       written by :func:`breastzoo.evaluation.reports.evaluate_run`

Re-running the same command resumes an unfinished run from its last epoch; a finished run is
re-evaluated, not retrained. A run folder made with a different configuration is refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from breastzoo.configs import TrainConfig
from breastzoo.data.records import ImageRecord, normalize_magnification
from breastzoo.io import atomic_write_json, read_json

RUNS_DIR = Path("runs")


@dataclasses.dataclass
class PreparedData:
    """Records and split of one run."""

    source: Any  # DataSource
    magnification: str | None
    class_names: list[str]
    records: list[ImageRecord]
    split: Any  # PatientSplit

    def parts(self) -> dict[str, list[ImageRecord]]:
        """Train / val / test records."""
        return self.split.assign(self.records)


def prepare_data(
    dataset: str,
    data: str | None,
    mag: str | None,
    task: str,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedData:
    """Resolve, index, filter to one magnification and split patient-wise.

    Raises:
        ValueError: missing data, bad magnification, BreaKHis without ``--mag``, or too
            few patients for a train/val/test split.
    """
    from breastzoo.data.index import index_dataset
    from breastzoo.data.splits import split_patients
    from breastzoo.datasource import resolve_data

    source = resolve_data(dataset, data, progress=progress)
    magnification = normalize_magnification(mag) if mag is not None else None
    if source.dataset == "breakhis" and magnification is None:
        raise ValueError("BreaKHis models are per magnification: pass --mag 40|100|200|400.")
    index = index_dataset(source.root, source.dataset).filter(magnification)
    if not index.records:
        raise ValueError(f"No usable images in {source.root} (mag={mag!r}).")
    split = split_patients(index.records, seed=seed)
    for part in ("train", "val", "test"):
        if not getattr(split, part):
            raise ValueError(
                f"Too few patients to split: the {part} part is empty "
                f"({len(index.patients())} patients in {source.root})."
            )
    return PreparedData(source, magnification, index.classes(task), index.records, split)


def default_run_dir(dataset: str, mag: str | None, config: TrainConfig, preset: str) -> Path:
    """``runs/<dataset>-<mag>-<model>-<task>-<preset>-seed<seed>``: the same command maps to
    the same folder, which is what makes re-running it resume."""
    mag_part = (normalize_magnification(mag) if mag else "all").lower()
    return RUNS_DIR / (
        f"{dataset}-{mag_part}-{config.model}-{config.task}-{preset}-seed{config.seed}"
    )


def _check_resumable(run_dir: Path, manifest: dict) -> None:
    path = run_dir / "config.json"
    if not path.exists():
        return
    old = read_json(path)
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists, as stored
    for key in ("config", "data", "magnification", "split"):
        if old.get(key) != manifest.get(key):
            if key == "config":
                diff = {
                    k: (old["config"].get(k), v)
                    for k, v in manifest["config"].items()
                    if old["config"].get(k) != v
                }
                detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            else:
                detail = f"{key} differs"
            raise ValueError(
                f"Run folder {run_dir} was made with a different setup ({detail}); "
                "use --out for a new run or delete the folder."
            )


class HistoryWriter(keras.callbacks.Callback):
    """Append each epoch's logs to history.json (atomically), dropping epochs a resumed run
    repeats, so the file always matches the weights in the run folder."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        history = read_json(self.path) if self.path.exists() else {"epochs": []}
        history["epochs"] = [e for e in history["epochs"] if e["epoch"] < epoch]
        entry = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        entry["epoch_seconds"] = time.perf_counter() - self.started
        history["epochs"].append(entry)
        atomic_write_json(self.path, history)


def build_datasets(
    prepared: PreparedData, config: TrainConfig
) -> tuple[Any, Any, int]:
    """``(train, val, steps_per_epoch)`` tf.data pipelines for ``config.model``."""
    from breastzoo.data.augment import expansion_factor
    from breastzoo.data.pipeline import make_dataset

    parts = prepared.parts()
    common = dict(task=config.task, image_size=config.image_size)
    augment = config.augment
    if config.model == "oracle_roi":
        # Geometric augmentation would move the lesion away from its recorded centres.
        augment = "none"
    train = make_dataset(
        parts["train"], prepared.class_names, batch_size=config.batch_size, shuffle=True,
        seed=config.seed, augment=augment, drop_remainder=True, repeat=True,
        with_path=config.model == "oracle_roi", **common,
    )
    val = make_dataset(
        parts["val"], prepared.class_names, batch_size=config.batch_size,
        with_path=config.model == "oracle_roi", **common,
    )
    if config.model == "oracle_roi":
        from breastzoo.evaluation.lesions import attach_lesion_centres

        train = attach_lesion_centres(train, prepared, config, training=True)
        val = attach_lesion_centres(val, prepared, config, training=False)
    n_train = len(parts["train"]) * (expansion_factor(augment) if augment != "none" else 1)
    steps = max(1, n_train // config.batch_size)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    return train, val, steps


def train_run(
    run_dir: Path,
    prepared: PreparedData,
    config: TrainConfig,
    *,
    weights: str | None = None,
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
) -> Path:
    """Train one run (or resume it) and return the path of the trained ``model.keras``."""
    from breastzoo.models.factory import build_model, compile_model
    from breastzoo.models.selective import SelectiveAttention, SelectiveRewardCallback

    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "config": config.to_dict(),
        "data": {
            "dataset": prepared.source.dataset,
            "root": str(Path(prepared.source.root).resolve()),
            "synthetic": prepared.source.synthetic,
            "description": prepared.source.label,
        },
        "magnification": prepared.magnification,
        "class_names": prepared.class_names,
        "split": prepared.split.to_dict(prepared.records),
    }
    _check_resumable(run_dir, manifest)
    atomic_write_json(run_dir / "config.json", manifest)
    model_path = run_dir / "model.keras"
    if model_path.exists():
        log(f"{run_dir}: already trained; skipping to evaluation.")
        return model_path

    keras.utils.set_random_seed(config.seed)
    train, val, steps = build_datasets(prepared, config)
    model = build_model(config, prepared.class_names, prepared.magnification, weights=weights)
    compile_model(model, config, steps)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / "last.keras")),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
        HistoryWriter(run_dir / "history.json"),
    ]
    if isinstance(model, SelectiveAttention):
        callbacks.insert(0, SelectiveRewardCallback())
    with warnings.catch_warnings():
        # The validation set has no known size (unreadable files are dropped on the fly), so
        # Keras warns when it ends; the training set repeats and never runs out.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train, validation_data=val, epochs=config.epochs, steps_per_epoch=steps,
            callbacks=callbacks, verbose=verbose, shuffle=False,
        )
    # Stage then rename: an interrupted save never leaves a model.keras that looks finished.
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        staged = Path(tmp) / "model.keras"
        model.save(staged)
        staged.replace(model_path)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return model_path


def fit(
    dataset: str,
    *,
    data: str | None = None,
    mag: str | None = None,
    config: TrainConfig,
    preset: str = "demo",
    out: str | Path | None = None,
    trials: int = 1,
    weights: str | None = None,
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train, evaluate and write run folder(s); the library behind ``breastzoo fit``.

    Args:
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        data: path, ``"demo"`` or ``None`` (see :func:`breastzoo.datasource.resolve_data`).
        mag: magnification (required for BreaKHis).
        config: the run configuration.
        preset: name of the preset the config came from (part of the default folder name).
        out: run folder (default :func:`default_run_dir`).
        trials: repeat with seeds ``config.seed + i`` (new patient split each) and report
            mean and std.
        weights: optional weights file to start from.
        verbose: Keras progress-bar mode.
        log: where to print progress lines.
        progress: data-generation progress callback.

    Returns:
        ``{"run_dir", "metrics"}``; with ``trials > 1`` metrics hold ``mean``/``std`` over
        trials and each trial lives in ``run_dir/trial-<i>``.

    Example:
        >>> fit("breakhis", data="demo", mag="100", config=preset("tiny"))  # doctest: +SKIP
    """
    from breastzoo.evaluation.metrics import aggregate_trials
    from breastzoo.evaluation.reports import evaluate_run

    if trials < 1:
        raise ValueError(f"trials must be >= 1. Received: trials={trials}")
    config.validate()
    base = Path(out) if out else default_run_dir(dataset, mag, config, preset)
    results = []
    for trial in range(trials):
        trial_config = config.replace(seed=config.seed + trial)
        run_dir = base / f"trial-{trial}" if trials > 1 else base
        prepared = prepare_data(dataset, data, mag, config.task, trial_config.seed, progress)
        log(f"[trial {trial + 1}/{trials}] {run_dir}: "
            f"{len(prepared.split.train)}/{len(prepared.split.val)}/{len(prepared.split.test)} "
            f"train/val/test patients ({prepared.source.label})")
        train_run(run_dir, prepared, trial_config, weights=weights, verbose=verbose, log=log)
        results.append(evaluate_run(run_dir, prepared=prepared, log=log))
    if trials == 1:
        return {"run_dir": str(base), "metrics": results[0]}
    summary = aggregate_trials(results)
    atomic_write_json(base / "metrics.json", {"trials": trials, **summary})
    return {"run_dir": str(base), "metrics": summary}
