"""Training: index -> patient-wise split -> train (resumable) -> evaluate -> run folder.

The run folder's layout, manifest and resume check live in :mod:`breastzoo.runs`.
Re-running the same command resumes an unfinished run from its last epoch; a finished run is
re-evaluated, not retrained. A run folder made with a different configuration is refused.

:func:`fit_model` is the one training loop: ``fit`` (:func:`train_run`), pruning's retraining
and tuning trials all go through it. Publishing a trained run is composition, in
:mod:`breastzoo.workflow`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras

from breastzoo import runs
from breastzoo.configs import TrainConfig
from breastzoo.data.records import normalize_magnification
from breastzoo.io import atomic_write_json, read_json
from breastzoo.runs import PreparedData

__all__ = [
    "STRATEGIES",
    "HistoryWriter",
    "PreparedData",
    "bagging_folds",
    "build_datasets",
    "fit",
    "fit_model",
    "for_dataset",
    "make_strategy",
    "member_split",
    "prepare_data",
    "train_bagging",
    "train_run",
    "train_steps",
    "worker_role",
]


def prepare_data(
    dataset: str,
    data: str | None,
    mag: str | None,
    task: str,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    split: str | Path | Any = None,
) -> PreparedData:
    """Resolve, index, filter to one magnification and split patient-wise.

    Args:
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        data: path, ``"demo"`` or ``None`` (see :func:`breastzoo.datasource.resolve_data`).
        mag: magnification (required for BreaKHis).
        task: ``"subtype"`` or ``"binary"``: the classes, and what the split stratifies by.
        seed: seed of the split (and of an official fold file's validation part).
        progress: data-generation progress callback.
        split: ``None`` (a new :func:`~breastzoo.data.splits.split_patients` split), a
            :class:`~breastzoo.data.splits.PatientSplit`, or a split file (the JSON of
            ``breastzoo data split --json`` or an official ``dsfoldN.txt``); a given split is
            checked against the data (:func:`~breastzoo.data.splits.validate_split`).

    Raises:
        ValueError: missing data, bad magnification, BreaKHis without ``--mag``, too few
            patients for a train/val/test split, or a split naming patients absent from the
            data; PatientLeakError for a split that leaks a patient.

    Example:
        >>> prepared = prepare_data("breakhis", "demo", "100", "binary", 0)  # doctest: +SKIP
    """
    from breastzoo.data.index import index_dataset
    from breastzoo.data.splits import PatientSplit, load_split, split_patients, validate_split
    from breastzoo.datasource import resolve_data

    source = resolve_data(dataset, data, progress=progress)
    magnification = normalize_magnification(mag) if mag is not None else None
    if source.dataset == "breakhis" and magnification is None:
        raise ValueError("BreaKHis models are per magnification: pass --mag 40|100|200|400.")
    index = index_dataset(source.root, source.dataset).filter(magnification)
    if not index.records:
        raise ValueError(f"No usable images in {source.root} (mag={mag!r}).")
    if split is None:
        parts = split_patients(index.records, seed=seed, task=task)
    elif isinstance(split, PatientSplit):
        parts = validate_split(split, index.records, task=task)
    else:
        parts = load_split(split, index.records, magnification, task=task, seed=seed)
    for part in ("train", "val", "test"):
        if not parts.assign(index.records)[part]:
            where = f"split {parts.source}" if split is not None else str(source.root)
            raise ValueError(
                f"Too few patients to split: the {part} part is empty "
                f"({len(index.patients())} patients in {source.root}; {where})."
            )
    return PreparedData(source, magnification, index.classes(task), index.records, parts)


def for_dataset(config: TrainConfig, dataset: str) -> TrainConfig:
    """``config`` adapted to the dataset: the hybrid (a whole-image model that resizes its
    input itself) takes BACH photos at their native 2048x1536, where cropping them to the
    default BreaKHis canvas (700x460) would discard most of each image. A size other than
    the default is kept.

    Example:
        >>> for_dataset(TrainConfig(model="hybrid"), "bach").image_size
        (2048, 1536)
    """
    from breastzoo.data.constants import BACH_IMAGE_SIZE
    from breastzoo.models.specs import model_spec

    if (model_spec(config.model).native_bach_size and dataset == "bach"
            and tuple(config.image_size) == TrainConfig().image_size):
        return config.replace(image_size=BACH_IMAGE_SIZE)
    return config


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
    from breastzoo.data.pipeline import make_dataset
    from breastzoo.models.specs import model_spec

    parts = prepared.parts()
    common = dict(task=config.task, image_size=config.image_size)
    oracle = model_spec(config.model).needs_lesion_centres
    augment = _train_augment(config)
    train = make_dataset(
        parts["train"], prepared.class_names, batch_size=config.batch_size, shuffle=True,
        seed=config.seed, augment=augment, drop_remainder=True, repeat=True,
        with_path=oracle, balance=config.balance,
        color_jitter=config.color_jitter if augment != "none" else 0.0, **common,
    )
    val = make_dataset(
        parts["val"], prepared.class_names, batch_size=config.batch_size,
        with_path=oracle, **common,
    )
    if oracle:
        from breastzoo.evaluation.lesions import attach_lesion_centres

        train = attach_lesion_centres(train, prepared, config, training=True)
        val = attach_lesion_centres(val, prepared, config, training=False)
    return train, val, train_steps(prepared, config)


def _train_augment(config: TrainConfig) -> str:
    """The augmentation policy training uses: none for a model fed ground-truth lesion
    centres (oracle_roi), since geometric augmentation would move the lesion away from them."""
    from breastzoo.models.specs import model_spec

    return "none" if model_spec(config.model).needs_lesion_centres else config.augment


def reward_batch(prepared: PreparedData, config: TrainConfig) -> tuple[Any, Any]:
    """The fixed validation mini-batch of DeNet's ``rp_source="batch"``: ``config.rp_images``
    validation images, the classes taking turns (so accuracy on it is not one class's
    recall), drawn with ``config.seed``. Images are decoded at ``config.image_size``.

    Args:
        prepared: the run's data (its validation part).
        config: ``rp_images``, ``seed``, ``task``, ``image_size``.

    Returns:
        ``(images uint8 [N, H, W, 3], labels int32 [N])``.

    Example:
        >>> images, labels = reward_batch(prepared, config)  # doctest: +SKIP
        >>> len(images) == len(labels) <= config.rp_images  # doctest: +SKIP
        True
    """
    import numpy as np

    from breastzoo.data.pipeline import make_dataset, record_labels

    records = list(prepared.parts()["val"])
    if not records:
        raise ValueError("rp_source=batch needs validation images. Received: an empty "
                         "validation part")
    labels = np.asarray(record_labels(records, prepared.class_names, config.task))
    rng = np.random.default_rng(config.seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c)))
              for c in range(len(prepared.class_names))]
    chosen: list[int] = []
    while len(chosen) < min(config.rp_images, len(records)):
        for queue in queues:
            if queue and len(chosen) < config.rp_images:
                chosen.append(int(queue.pop()))
    picked = [records[i] for i in chosen]
    ds = make_dataset(picked, prepared.class_names, batch_size=len(picked), task=config.task,
                      image_size=config.image_size)
    images, batch_labels = next(iter(ds))[:2]
    return np.asarray(images), np.asarray(batch_labels).reshape(-1)


def train_steps(prepared: PreparedData, config: TrainConfig) -> int:
    """Iterations per epoch: the (augmented) training part once, capped by
    ``config.steps_per_epoch``; what :func:`build_datasets` returns, without building them."""
    from breastzoo.data.augment import expansion_factor

    augment = _train_augment(config)
    n_train = len(prepared.parts()["train"]) * (
        expansion_factor(augment) if augment != "none" else 1
    )
    steps = max(1, n_train // config.batch_size)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    return steps


def fit_model(
    model: keras.Model,
    prepared: PreparedData,
    config: TrainConfig,
    *,
    datasets: tuple[Any, Any, int] | None = None,
    run_dir: str | Path | None = None,
    scores: bool = True,
    epochs: int | None = None,
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
) -> keras.callbacks.History:
    """The one training loop: ``model.fit`` on the training patients, validated on the
    validation patients, with the callbacks every model kind needs. ``fit``
    (:func:`train_run`), pruning's retraining and tuning trials all go through it.

    Callbacks, in order (validation scores enter the logs first; DeNet's reward, the history,
    the best-epoch keeper and TensorBoard read them):

    * ``ValidationScores`` (``scores``): balanced accuracy from a pass through ``infer``;
    * ``SelectiveRewardCallback`` for DeNet+SaNet models;
    * with ``run_dir``: ``BackupAndRestore`` (resume), ``checkpoints/last.keras``,
      TensorBoard, ``history.json`` and, unless ``config.keep_best == "last"``, ``KeepBest``,
      whose weights are restored after training (recorded in ``best_epoch.json``);
    * ``callbacks``, the caller's.

    Args:
        model: a compiled model.
        prepared: the run's data.
        config: the run's configuration (``epochs``, ``keep_best``).
        datasets: ``(train, val, steps)`` already built (default :func:`build_datasets`).
        run_dir: the run folder to checkpoint into; None trains without resume state.
        scores: add ``ValidationScores``.
        epochs: epochs to train (default ``config.epochs``).
        initial_epoch: epoch to start at (KerasTuner's Hyperband).
        callbacks: extra callbacks, after the built-in ones.
        verbose: Keras progress-bar mode.
        log: where the kept-epoch line goes.

    Returns:
        Keras' History.

    Example:
        >>> history = fit_model(model, prepared, config, scores=False)  # doctest: +SKIP
        >>> sorted(history.history)[:2]  # doctest: +SKIP
        ['loss', 'val_loss']
    """
    from breastzoo.callbacks import KeepBest, ValidationScores
    from breastzoo.models.selective import SelectiveRewardCallback
    from breastzoo.models.specs import find_spec

    train, val, steps = datasets if datasets is not None else build_datasets(prepared, config)
    if getattr(model, "rp_source", "epoch") == "batch":
        model.set_reward_batch(*reward_batch(prepared, config))
    cbs: list[keras.callbacks.Callback] = []
    if scores:
        cbs.append(ValidationScores(val, len(prepared.class_names)))
    spec = find_spec(model)
    # An Ensemble reports its members' row, but it is never trained as one model.
    if spec is not None and spec.trains_denet and not getattr(model, "members", None):
        cbs.append(SelectiveRewardCallback())
    keep_best = None
    if run_dir is not None:
        run = runs.RunFolder(run_dir)
        cbs += [
            keras.callbacks.BackupAndRestore(str(run.backup)),
            keras.callbacks.ModelCheckpoint(str(run.last_checkpoint)),
            keras.callbacks.TensorBoard(str(run.logs), write_graph=False),
            HistoryWriter(run.history_path),
        ]
        if config.keep_best != "last":
            keep_best = KeepBest(run.checkpoints)
            cbs.append(keep_best)
    cbs += list(callbacks)
    epochs = epochs or config.epochs
    with warnings.catch_warnings():
        # The validation set has no known size (unreadable files are dropped on the fly), so
        # Keras warns when it ends; the training set repeats and never runs out.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        # validation_data keeps each model's own validation metrics (DeNet's per-image loss,
        # the hybrid's branch losses); ValidationScores adds balanced accuracy from a second
        # pass through model.infer (one owner of "validation score" for every model kind).
        # Folding both into one pass would need every model's test_step to return its
        # probabilities, so the two passes stay.
        history = model.fit(
            train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch,
            steps_per_epoch=steps, callbacks=cbs, verbose=verbose, shuffle=False,
        )
    if keep_best is not None:
        best = keep_best.restore(model)
        if best is not None:
            log(f"{run_dir}: keeping epoch {best['epoch'] + 1} of {epochs} "
                f"({best['monitor']} {best['score']:.3f})")
            atomic_write_json(runs.RunFolder(run_dir).best_epoch_path, best)
    return history


def train_run(
    run_dir: Path,
    prepared: PreparedData,
    config: TrainConfig,
    *,
    weights: str | None = None,
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
    strategy: Any = None,
    preset: str | None = None,
) -> Path:
    """Train one run (or resume it) and return the path of the trained ``model.keras``.

    Args:
        run_dir: the run folder (created; a folder of another setup is refused).
        prepared: the run's data (:func:`prepare_data`).
        config: the run's configuration.
        weights: optional weights file to start from.
        verbose: Keras progress-bar mode.
        log: where progress lines go.
        strategy: a ``tf.distribute`` strategy (:func:`make_strategy`): the model is built
            and compiled under its scope, so ``fit`` trains data-parallel.
        preset: the config preset's name, recorded in the manifest.

    Example:
        >>> train_run(Path("runs/x"), prepared, preset("tiny"))  # doctest: +SKIP
        PosixPath('runs/x/model.keras')
    """
    from breastzoo.models.factory import build_model, compile_model

    run = runs.open_run(run_dir, runs.make_manifest(prepared, config, preset))
    if run.is_finished:
        log(f"{run_dir}: already trained; skipping to evaluation.")
        return run.model_path

    keras.utils.set_random_seed(config.seed)
    # Built before the model, as the seeds have always been drawn in this order.
    datasets = build_datasets(prepared, config)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(config, prepared.class_names, prepared.magnification,
                            weights=weights)
        compile_model(model, config, datasets[2])
    if _is_multiworker(strategy):
        _avoid_batch_reduce(model)
        _patch_scalar_reduce()
    fit_model(model, prepared, config, datasets=datasets, run_dir=run.path, verbose=verbose,
              log=log)
    runs.save_model(model, run.model_path)
    shutil.rmtree(run.backup, ignore_errors=True)
    return run.model_path


def bagging_folds(prepared: PreparedData, k: int, seed: int,
                  task: str = "subtype") -> list[list[str]]:
    """Paper 002's bagging folds: the training patients (the run's train and val parts; the
    test patients are never touched) in ``k`` disjoint, subtype-stratified folds.

    Example:
        >>> folds = bagging_folds(prepared, k=5, seed=0)  # doctest: +SKIP
    """
    from breastzoo.data.splits import kfold_patients

    parts = prepared.parts()
    return kfold_patients(parts["train"] + parts["val"], k=k, seed=seed, task=task)


def member_split(split: Any, folds: list[list[str]], i: int) -> Any:
    """Member ``i``'s split: all folds but the ``i``-th to train, the ``i``-th to validate,
    the run's test patients unchanged; leak-checked.

    Raises:
        PatientLeakError: a patient in two parts (folds that overlap or hold test patients).
    """
    from breastzoo.data.splits import PatientSplit

    if not 0 <= i < len(folds):
        raise ValueError(f"No such fold. Received: i={i} for {len(folds)} folds")
    train = sorted(p for j, fold in enumerate(folds) if j != i for p in fold)
    part = PatientSplit(train, sorted(folds[i]), list(split.test), seed=split.seed,
                        source=f"{split.source}; bagging fold {i + 1}/{len(folds)}")
    part.check()
    return part


def train_bagging(
    run_dir: Path,
    prepared: PreparedData,
    config: TrainConfig,
    *,
    weights: str | None = None,
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
    preset: str | None = None,
) -> Path:
    """Paper 002's bagging: ``config.bagging`` models, member ``i`` trained on all folds of
    the training patients but the ``i``-th and validated on it, saved as one
    :class:`~breastzoo.models.ensemble.Ensemble` (vote rule ``config.vote``) in
    ``run_dir/model.keras``. Each member is an ordinary run folder ``run_dir/member-<i>``
    (weights seeded ``config.seed + i``), so an interrupted bagging run resumes inside the
    member it stopped in and skips finished members.

    Args:
        run_dir: the ensemble's run folder.
        prepared: the run's data; members split its train and val patients.
        config: the run's configuration (``bagging`` members, ``vote`` rule).
        weights: optional weights file every member starts from.
        verbose: Keras progress-bar mode.
        log: where progress lines go.
        preset: the config preset's name, recorded in the manifests.

    Returns:
        The path of the ensemble's ``model.keras``.

    Example:
        >>> train_bagging(Path("runs/b"), prepared, cfg.replace(bagging=3))  # doctest: +SKIP
        PosixPath('runs/b/model.keras')
    """
    from breastzoo.models.ensemble import Ensemble

    folds = bagging_folds(prepared, config.bagging, config.seed, config.task)
    manifest = {**runs.make_manifest(prepared, config, preset),
                "bagging": {"folds": folds, "vote": config.vote}}
    run = runs.open_run(run_dir, manifest)
    if run.is_finished:
        log(f"{run_dir}: already trained; skipping to evaluation.")
        return run.model_path
    paths = []
    for i in range(config.bagging):
        member = dataclasses.replace(prepared, split=member_split(prepared.split, folds, i))
        member_dir = run.member(i).path
        log(f"[bagging {i + 1}/{config.bagging}] {member_dir}: "
            f"{len(member.split.train)}/{len(member.split.val)} train/val patients")
        paths.append(train_run(member_dir, member, config.replace(bagging=1, seed=config.seed + i),
                               weights=weights, verbose=verbose, log=log, preset=preset))
    members = [runs.load_model(p) for p in paths]
    ensemble = Ensemble(members, rule=config.vote, name="ensemble")
    width, height = config.image_size
    ensemble.build((None, height, width, 3))  # recorded in the file's build config
    runs.save_model(ensemble, run.model_path)
    return run.model_path


STRATEGIES = ("none", "mirrored", "multiworker")


def make_strategy(name: str | None) -> Any:
    """The ``tf.distribute`` strategy of ``fit --strategy`` (None for ``"none"``).

    ``"mirrored"``: every local GPU (MirroredStrategy); ``"multiworker"``: one process per
    machine, cluster and role from ``TF_CONFIG`` (MultiWorkerMirroredStrategy; it must be
    created before other TensorFlow work in the process, so :func:`fit` creates it first).
    Custom ``train_step`` losses are divided by ``num_replicas_in_sync`` in the models
    because Keras scales only its built-in losses. See docs/distributed.md.

    Raises:
        ValueError: unknown name, or ``"multiworker"`` without ``TF_CONFIG``.

    Example:
        >>> make_strategy("none") is None
        True
    """
    if name in (None, "none"):
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multiworker reads the cluster from TF_CONFIG, which is "
                             "not set. Received: TF_CONFIG=None (see docs/distributed.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy. Received: strategy={name!r}; expected one of "
                     f"{', '.join(STRATEGIES)}")


def worker_role(strategy: Any) -> tuple[bool, str]:
    """``(is_chief, name)`` of this process in a multi-worker strategy; ``(True, "chief")``
    otherwise. The chief is task ``chief`` or, without one, ``worker`` 0 (TF's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return True, "chief"
    task_id = resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return chief, "chief" if chief else f"{task_type}-{task_id}"


def _is_multiworker(strategy: Any) -> bool:
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _patch_scalar_reduce() -> None:
    """Work around Keras 3's multi-worker reduction of the step's logs (once per process).

    After each train/test step Keras averages every returned value over replicas with
    ``strategy.reduce("MEAN", v, axis=0)`` under MultiWorkerMirroredStrategy, which fails
    on the scalar losses and metrics a step returns ("Invalid reduction dimension 0 for
    input with 0 dimensions"). The mean over replicas of a scalar is ``axis=None``; this
    wraps Keras' ``reduce_per_replica`` to use it for multi-worker means and leaves every
    other case (single worker, ``concat`` for predict, TPU) to Keras. With one device per
    worker the step's outputs are plain tensors, not PerReplica values; they are still
    all-reduced, so every worker logs the same (global) loss and validation accuracy.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "breastzoo_patched", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and _is_multiworker(strategy):
            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.Tensor | tf.distribute.DistributedValues) else v, values)
        return original(values, strategy, reduction)

    reduce_per_replica.breastzoo_patched = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def _avoid_batch_reduce(model: keras.Model) -> None:
    """Work around keras-team/keras#20585 on this model instance.

    Keras 3's TF trainer builds a model under a strategy from the first batch, which it
    first averages over replicas with ``strategy.reduce("MEAN", (x, y))``;
    MultiWorkerMirroredStrategy cannot reduce a nested per-replica batch ("Attempt to convert
    a value (PerReplica...) to a Tensor") and ``fit`` fails before the first step. Only the
    batch's shapes matter there (our models are built before ``fit``), so this takes the
    local replica's part instead: no cross-worker reduce.
    """
    import types

    import tensorflow as tf

    def _maybe_symbolic_build(self: keras.Model, iterator: Any = None,
                              data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda x: x.values[0] if isinstance(x, tf.distribute.DistributedValues)
                    else x, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)


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
    strategy: str | None = None,
    split: str | Path | Any = None,
) -> dict:
    """Train, evaluate and write run folder(s). ``breastzoo fit`` calls it through
    :func:`breastzoo.workflow.fit`, which adds publishing.

    Args:
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        data: path, ``"demo"`` or ``None`` (see :func:`breastzoo.datasource.resolve_data`).
        mag: magnification (required for BreaKHis).
        config: the run configuration.
        preset: name of the preset the config came from (recorded in ``config.json`` and
            part of the default folder name).
        out: run folder (default :func:`breastzoo.runs.default_run_dir`).
        trials: repeat with seeds ``config.seed + i`` (new patient split each) and report
            mean and std.
        weights: optional weights file to start from.
        verbose: Keras progress-bar mode.
        log: where to print progress lines.
        progress: data-generation progress callback.
        strategy: ``"mirrored"`` or ``"multiworker"`` (:func:`make_strategy`). With
            ``"multiworker"`` only the chief evaluates and writes ``run_dir``; other workers
            write their copy to ``<run_dir>.<task>-<i>`` and return ``metrics`` None (and
            their ``role``).
        split: use this patient split instead of making one: a
            :class:`~breastzoo.data.splits.PatientSplit` or a split file (the JSON of
            ``breastzoo data split --json``, or an official ``dsfoldN.txt``). Checked against
            the data (leaks and unknown patients refused, unmentioned patients dropped with a
            warning); one split, so only with ``trials=1``.

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
    if split is not None and trials != 1:
        raise ValueError(f"--split fixes one patient split; --trials repeats over new splits. "
                         f"Use one or the other. Received: trials={trials}, split="
                         f"{getattr(split, 'source', split)!s}")
    config = for_dataset(config.validate(), dataset)
    dist = make_strategy(strategy)  # first: MultiWorkerMirroredStrategy must precede TF work
    if dist is not None and config.bagging > 1:
        raise ValueError(f"--strategy trains one model; bagging is not distributed. "
                         f"Received: strategy={strategy!r}, bagging={config.bagging}")
    is_chief, role = worker_role(dist)
    dist_kwargs = {"strategy": dist} if dist is not None else {}
    base = runs.RunFolder(out if out else runs.default_run_dir(dataset, mag, config, preset))
    if not is_chief:
        # Workers train the same weights; writing them into the chief's folder would race.
        base = runs.RunFolder(base.path.with_name(f"{base.path.name}.{role}"))
    results = []
    for trial in range(trials):
        trial_config = config.replace(seed=config.seed + trial)
        run_dir = base.trial(trial).path if trials > 1 else base.path
        prepared = prepare_data(dataset, data, mag, config.task, trial_config.seed, progress,
                                split=split)
        images = {k: len(v) for k, v in prepared.parts().items()}
        log(f"[trial {trial + 1}/{trials}] {run_dir}: "
            f"{len(prepared.split.train)}/{len(prepared.split.val)}/{len(prepared.split.test)} "
            f"train/val/test patients, {images['train']}/{images['val']}/{images['test']} "
            f"images ({prepared.source.label}; split {prepared.split.source})")
        for note in prepared.split.notes:
            log(f"  split warning: {note}")
        train = train_bagging if trial_config.bagging > 1 else train_run
        train(run_dir, prepared, trial_config, weights=weights, verbose=verbose, log=log,
              preset=preset, **dist_kwargs)
        if not is_chief:
            continue  # the chief evaluates
        results.append(evaluate_run(run_dir, prepared=prepared, log=log))
    if not is_chief:
        return {"run_dir": str(base.path), "metrics": None, "role": role}
    if trials == 1:
        return {"run_dir": str(base.path), "metrics": results[0]}
    summary = aggregate_trials(results)
    atomic_write_json(base.metrics_path, {"trials": trials, **summary})
    return {"run_dir": str(base.path), "metrics": summary}
