"""The run folder, and the one module that knows its layout.

A run folder (``runs/<dataset>-<mag>-<model>-<task>-<preset>-seed<seed>`` by default) holds::

    config.json       the manifest: TrainConfig, preset, data source, magnification, classes,
                      split (plus "bagging" or "pruning" records); what a resumed run must match
    history.json      per-epoch training and validation metrics (kept across resumes)
    model.keras       the trained model (written atomically when training ends)
    best_epoch.json   the epoch kept by ``keep_best`` (when not the last)
    backup/           Keras BackupAndRestore state; present only while a run is unfinished
    checkpoints/      last.keras, saved every epoch; best.weights.h5 + best.json
    logs/             TensorBoard
    metrics.json, predictions.json, confusion_matrix.png, roc.png, history.png
    overlays/         ROI overlays of a few test images
    external/<tree>/  external validation reports (metrics, predictions, patients.csv, plots)
    member-<i>/       bagging members, each an ordinary run folder
    trial-<i>/        ``fit --trials`` repeats, each an ordinary run folder
    pruning.json      the before/after record of ``breastzoo prune``

A published zoo version keeps ``config.json`` as ``run_config.json``
(:data:`PUBLISHED_FILES`); :meth:`RunFolder.read_manifest` reads either.

Training, evaluation, pruning, tuning, export parity and the zoo read and write these files
through this module: no other module spells a run-folder file name.

Example:
    >>> run = RunFolder("runs/x")
    >>> run.metrics_path.as_posix()
    'runs/x/metrics.json'
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from breastzoo.configs import PRESETS, TrainConfig
from breastzoo.io import atomic_write_json, read_json

__all__ = [
    "MANIFEST_NAMES",
    "PUBLISHED_FILES",
    "RESUME_KEYS",
    "RUNS_DIR",
    "PreparedData",
    "RunFolder",
    "SetupMismatch",
    "check_resumable",
    "data_record",
    "default_run_dir",
    "load_model",
    "load_prepared",
    "make_manifest",
    "open_run",
    "preset_of",
    "save_model",
]

#: Where default run folders go (relative to the working directory).
RUNS_DIR = Path("runs")

CONFIG = "config.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.json"
HISTORY = "history.json"
MODEL = "model.keras"
#: A published zoo version's name for the run's ``config.json``.
PUBLISHED_CONFIG = "run_config.json"
#: Where a manifest may live: a run folder, then a published zoo version.
MANIFEST_NAMES = (CONFIG, PUBLISHED_CONFIG)
#: Files of a run folder copied into every published version, and their names there.
PUBLISHED_FILES = {CONFIG: PUBLISHED_CONFIG, METRICS: METRICS, HISTORY: HISTORY}
#: Manifest entries a resumed run must match (``preset`` only where both name one).
RESUME_KEYS = ("config", "data", "magnification", "split", "preset")


def _entry(name: str, what: str) -> property:
    # One line per file instead of a property body each: the names are the layout.
    return property(lambda self: self.path / name, doc=f"``{name}``: {what}.")


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created until something is written).

    Args:
        path: the folder; also used for an external-validation report folder, which holds
            the same report files (metrics, predictions, plots).

    Example:
        >>> RunFolder("runs/x").member(2).path.as_posix()
        'runs/x/member-2'
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    manifest_path = _entry(CONFIG, "the manifest (see :func:`make_manifest`)")
    metrics_path = _entry(METRICS, "the evaluation's metrics")
    predictions_path = _entry(PREDICTIONS, "one row per evaluated image")
    history_path = _entry(HISTORY, "per-epoch logs")
    model_path = _entry(MODEL, "present once training finished")
    best_epoch_path = _entry("best_epoch.json", "the epoch ``keep_best`` kept")
    pruning_path = _entry("pruning.json", "before/after record of a pruned run")
    checkpoints = _entry("checkpoints", "last epoch's model, the best epoch's weights")
    last_checkpoint = _entry("checkpoints/last.keras", "saved every epoch")
    backup = _entry("backup", "Keras BackupAndRestore state of an unfinished run")
    logs = _entry("logs", "TensorBoard")
    overlays = _entry("overlays", "ROI overlays of a few test images")
    confusion_matrix_plot = _entry("confusion_matrix.png", "the confusion matrix")
    roc_plot = _entry("roc.png", "ROC curves")
    history_plot = _entry("history.png", "training curves")
    patient_table = _entry("patients.csv", "per-patient results (external validation)")

    def external(self, name: str) -> RunFolder:
        """The report folder of external validation on the tree ``name``."""
        return RunFolder(self.path / "external" / name)

    def member(self, i: int) -> RunFolder:
        """Bagging member ``i``: an ordinary run folder inside this one."""
        return RunFolder(self.path / f"member-{i}")

    def trial(self, i: int) -> RunFolder:
        """Trial ``i`` of ``fit --trials``: an ordinary run folder inside this one."""
        return RunFolder(self.path / f"trial-{i}")

    def finished_trials(self) -> list[RunFolder]:
        """Trial folders that hold a trained model, sorted by name."""
        return [RunFolder(p) for p in sorted(self.path.glob("trial-*"))
                if (p / MODEL).is_file()]

    @property
    def is_finished(self) -> bool:
        """Whether training finished (``model.keras`` exists)."""
        return self.model_path.is_file()

    def require_finished(self) -> RunFolder:
        """``self``, or ValueError when there is no ``model.keras``."""
        if not self.is_finished:
            raise ValueError(f"Not a finished run folder (no {MODEL}). Received: {self.path}")
        return self

    def manifest_file(self) -> Path | None:
        """``config.json``, or a zoo version's ``run_config.json``; None when neither exists."""
        found = [self.path / n for n in MANIFEST_NAMES if (self.path / n).is_file()]
        return found[0] if found else None

    def read_manifest(self) -> dict:
        """The manifest (:meth:`manifest_file`).

        Raises:
            ValueError: no manifest in the folder.
        """
        path = self.manifest_file()
        if path is None:
            raise ValueError(f"Not a run folder or zoo version (no {' or '.join(MANIFEST_NAMES)})."
                             f" Received: run_dir={str(self.path)!r}")
        return read_json(path)

    def read_metrics(self) -> dict | None:
        """``metrics.json``, or None before evaluation."""
        return read_json(self.metrics_path) if self.metrics_path.is_file() else None

    def train_config(self) -> TrainConfig:
        """The run's TrainConfig, from its manifest."""
        return TrainConfig.from_dict(self.read_manifest()["config"])


def default_run_dir(dataset: str, mag: str | None, config: TrainConfig, preset: str) -> Path:
    """``runs/<dataset>-<mag>-<model>-<task>-<preset>-seed<seed>``: the same command maps to
    the same folder, which is what makes re-running it resume.

    Example:
        >>> default_run_dir("breakhis", "100", TrainConfig(), "demo").as_posix()
        'runs/breakhis-100x-denet_sanet-subtype-demo-seed0'
    """
    from breastzoo.data.records import normalize_magnification

    mag_part = (normalize_magnification(mag) if mag else "all").lower()
    return RUNS_DIR / (
        f"{dataset}-{mag_part}-{config.model}-{config.task}-{preset}-seed{config.seed}"
    )


@dataclasses.dataclass
class PreparedData:
    """Records and split of one run.

    Example:
        >>> prepared = load_prepared("runs/x")  # doctest: +SKIP
        >>> len(prepared.parts()["test"])  # doctest: +SKIP
        42
    """

    source: Any  # DataSource
    magnification: str | None
    class_names: list[str]
    records: list[Any]  # ImageRecord
    split: Any  # PatientSplit

    def parts(self) -> dict[str, list[Any]]:
        """Train / val / test records."""
        return self.split.assign(self.records)


def data_record(source: Any) -> dict:
    """The manifest's ``data`` entry of a :class:`~breastzoo.datasource.DataSource`.

    Example:
        >>> from breastzoo.datasource import DataSource
        >>> data_record(DataSource(Path("/d"), "bach", False))["dataset"]
        'bach'
    """
    return {
        "dataset": source.dataset,
        "root": str(Path(source.root).resolve()),
        "synthetic": source.synthetic,
        "description": source.label,
    }


def make_manifest(prepared: PreparedData, config: TrainConfig,
                  preset: str | None = None) -> dict:
    """What ``config.json`` records: the setup a resumed run must match, and the preset the
    config came from (None when the caller does not know it).

    Example:
        >>> make_manifest(prepared, preset("tiny"), "tiny")["preset"]  # doctest: +SKIP
        'tiny'
    """
    return {
        "config": config.to_dict(),
        "preset": preset,
        "data": data_record(prepared.source),
        "magnification": prepared.magnification,
        "class_names": prepared.class_names,
        "split": prepared.split.to_dict(prepared.records),
    }


def preset_of(manifest: dict, run_dir: str | Path | None = None) -> str | None:
    """The config preset of a run: the manifest's ``preset``; for runs made before it was
    recorded, the preset in a default folder name (``...-<preset>-seed<N>``), if any.

    Example:
        >>> preset_of({"preset": "tiny"})
        'tiny'
        >>> preset_of({}, "runs/breakhis-100x-denet_sanet-subtype-demo-seed0")
        'demo'
    """
    if manifest.get("preset"):
        return manifest["preset"]
    if run_dir is None:
        return None
    parts = Path(run_dir).name.split("-")
    return parts[-2] if len(parts) >= 2 and parts[-2] in PRESETS else None


def _with_defaults(config: Any) -> Any:
    # Fields added to TrainConfig after the folder was made count as their defaults, so new
    # options do not orphan existing run folders.
    if not isinstance(config, dict):
        return config
    return {**json.loads(json.dumps(TrainConfig().to_dict())), **config}


class SetupMismatch(ValueError):
    """A run (or study) folder was made with a different setup than the one asked for.

    Example:
        >>> issubclass(SetupMismatch, ValueError)
        True
    """


def check_resumable(
    folder: str | Path,
    manifest: dict,
    *,
    file: str = CONFIG,
    keys: Iterable[str] = RESUME_KEYS,
    kind: str = "run",
) -> None:
    """Refuse to reuse a folder made with a different setup; nothing to check in a new one.

    TrainConfig entries (``config``, ``base_config``) compare field by field, fields the old
    manifest lacks counting as their defaults. ``preset`` compares only where both manifests
    name one (folders made before it was recorded resume).

    Args:
        folder: the run (or study) folder.
        manifest: what the new run would record.
        file: the manifest file in ``folder``.
        keys: manifest entries that must match.
        kind: ``"run"`` or ``"study"``, for the message.

    Raises:
        SetupMismatch: an entry differs, naming the changed fields (a ValueError).

    Example:
        >>> check_resumable("runs/x", make_manifest(prepared, config))  # doctest: +SKIP
    """
    path = Path(folder) / file
    if not path.exists():
        return
    old = read_json(path)
    new = json.loads(json.dumps(manifest, default=str))  # tuples -> lists, as stored
    for key in keys:
        was, now = old.get(key), new.get(key)
        if key == "preset" and (was is None or now is None):
            continue
        if key in ("config", "base_config"):
            was = _with_defaults(was)
        if was == now:
            continue
        if isinstance(was, dict) and isinstance(now, dict) and key.endswith("config"):
            detail = ", ".join(f"{k}: {was.get(k)!r} -> {v!r}"
                               for k, v in now.items() if was.get(k) != v)
        else:
            detail = f"{key.replace('_', ' ')} differs"
        raise SetupMismatch(
            f"{kind.capitalize()} folder {folder} was made with a different setup ({detail}); "
            f"use --out for a new {kind} or delete the folder."
        )


def open_run(run_dir: str | Path, manifest: dict) -> RunFolder:
    """Create ``run_dir`` (or reuse it after :func:`check_resumable`) and write the manifest.

    Example:
        >>> run = open_run("runs/x", make_manifest(prepared, config, "tiny"))  # doctest: +SKIP
    """
    run = RunFolder(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    check_resumable(run.path, manifest)
    atomic_write_json(run.manifest_path, manifest)
    return run


def load_prepared(run_dir: str | Path, *, manifest: dict | None = None,
                  data: str | Path | None = None) -> PreparedData:
    """The records and split a run was trained on, re-indexed from its recorded data root.

    Args:
        run_dir: a run folder or a published zoo version.
        manifest: its manifest, if already read.
        data: data root override (the dataset moved).

    Raises:
        ValueError: no manifest, or the data is not found.

    Example:
        >>> load_prepared("runs/x").parts()["test"][:1]  # doctest: +SKIP
    """
    from breastzoo.data.index import index_dataset
    from breastzoo.data.splits import PatientSplit
    from breastzoo.datasource import DataSource

    if manifest is None:
        manifest = RunFolder(run_dir).read_manifest()
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


def save_model(model: Any, path: str | Path) -> Path:
    """Save ``model`` to ``path`` atomically: staged in the same folder, then renamed, so an
    interrupted save never leaves a ``model.keras`` that looks finished.

    Example:
        >>> save_model(model, RunFolder("runs/x").model_path)  # doctest: +SKIP
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        model.save(staged)
        staged.replace(path)
    return path


def load_model(path: str | Path) -> Any:
    """``keras.saving.load_model(path, safe_mode=True)`` with every breastzoo class registered.

    Importing each ``breastzoo.models`` module registers its serializable classes, including
    models added later (hybrid, ensembles), without this module naming them.

    Example:
        >>> load_model("runs/x/model.keras")  # doctest: +SKIP
    """
    import importlib
    import pkgutil

    import keras

    import breastzoo.models

    for info in pkgutil.iter_modules(breastzoo.models.__path__):
        importlib.import_module(f"breastzoo.models.{info.name}")
    importlib.import_module("breastzoo.data.stain")
    return keras.saving.load_model(Path(path), safe_mode=True)
