"""KerasTuner HyperModels that train breastzoo models from a TrainConfig, one per trial.

Every hyperparameter is a :class:`~breastzoo.configs.TrainConfig` field, so a trial is exactly
the run ``breastzoo fit`` would make with that field set, and the best trial prints as a
``fit`` command line. Trials train on the training patients and are scored on the
validation patients of the run's patient-wise split; the test patients are never read.

Example:
    >>> from breastzoo.configs import preset
    >>> from breastzoo.training import prepare_data
    >>> data = prepare_data("breakhis", "demo", "100", "subtype", seed=0)  # doctest: +SKIP
    >>> hm = DeNetSaNetHyperModel(preset("tiny"), data,
    ...                           space={"k": {"values": [3, 5]}})  # doctest: +SKIP
    >>> keras_tuner.GridSearch(hm, objective="val_accuracy")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from breastzoo.configs import TrainConfig

__all__ = ["BreastzooHyperModel", "DeNetSaNetHyperModel", "HybridHyperModel", "hypermodel_for"]

#: Receives ``(event, payload)``: ``"trial_start"`` {values}, ``"epoch_end"`` {epoch, logs},
#: ``"trial_end"`` {values, metrics}.
Reporter = Callable[[str, dict[str, Any]], None]


def declare(hp: keras_tuner.HyperParameters, name: str, spec: dict[str, Any]) -> Any:
    """Declare one study dimension on ``hp`` and return its current value.

    ``values`` -> ``hp.Choice`` (ordered for numbers), ``value`` -> ``hp.Fixed``,
    ``min``/``max`` -> ``hp.Int`` when both are ints, else ``hp.Float``.

    Example:
        >>> hp = keras_tuner.HyperParameters()
        >>> declare(hp, "k", {"values": [3, 5, 7]})
        3
    """
    if "value" in spec:
        return hp.Fixed(name, spec["value"])
    if "values" in spec:
        return hp.Choice(name, list(spec["values"]))
    lo, hi = spec["min"], spec["max"]
    sampling = spec.get("sampling", "linear")
    if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
        return hp.Int(name, lo, hi, step=spec.get("step") or 1, sampling=sampling)
    return hp.Float(name, float(lo), float(hi), step=spec.get("step"), sampling=sampling)


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.reporter("epoch_end", {"epoch": epoch, "logs": dict(logs or {})})


class BreastzooHyperModel(keras_tuner.HyperModel):
    """Build, compile and train one breastzoo model per trial from a TrainConfig.

    Args:
        base: the preset every trial starts from (``model`` is forced to
            :attr:`model_name`).
        prepared: the indexed, patient-wise split data (:func:`breastzoo.training.prepare_data`).
        space: TrainConfig field -> study spec (see :mod:`breastzoo.tuning.studies`);
            default :attr:`default_space`.
        execution_log: optional JSON-lines file; one line per trial start and end (which
            tuner process ran which values), used to check distributed searches.
        reporter: optional progress callback (see :data:`Reporter`).
        verbose: Keras progress-bar mode inside a trial.
        **kwargs: passed to ``keras_tuner.HyperModel``.
    """

    model_name = ""
    default_space: dict[str, dict[str, Any]] = {}

    def __init__(
        self,
        base: TrainConfig,
        prepared: Any,
        space: dict[str, dict[str, Any]] | None = None,
        *,
        execution_log: str | Path | None = None,
        reporter: Reporter | None = None,
        verbose: int | str = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", self.model_name)
        super().__init__(**kwargs)
        self.base = base.replace(model=self.model_name)
        self.prepared = prepared
        self.space = dict(self.default_space if space is None else space)
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(self.space) - fields
        if unknown:
            raise ValueError(f"Search space names unknown TrainConfig fields. "
                             f"Received: {sorted(unknown)}")
        self.execution_log = Path(execution_log) if execution_log else None
        self.reporter = reporter
        self.verbose = verbose

    # ---------------------------------------------------------------- configs

    def values(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """This trial's value of every study dimension (declaring them on first use)."""
        return {name: declare(hp, name, spec) for name, spec in self.space.items()}

    def config_for(self, values: dict[str, Any]) -> TrainConfig:
        """The TrainConfig of one trial: ``base`` with ``values``, adjusted and validated."""
        config = dataclasses.replace(self.base, **values)
        return self.adjust(config, values).validate()

    def adjust(self, config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        """Fields that must follow the tuned ones (subclasses); identity here."""
        return config

    # ---------------------------------------------------------------- KerasTuner API

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        from breastzoo.models.factory import build_model, compile_model
        from breastzoo.training import train_steps

        config = self.config_for(self.values(hp))
        # The same seed in every trial: trials differ only in their hyperparameters.
        keras.utils.set_random_seed(config.seed)
        model = build_model(config, self.prepared.class_names, self.prepared.magnification)
        compile_model(model, config, train_steps(self.prepared, config))
        return model

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: keras.Model,
        *args: Any,
        callbacks: list | None = None,
        epochs: int | None = None,
        initial_epoch: int = 0,
        verbose: int | str | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Train on the training patients, validate on the validation patients, through the
        loop ``breastzoo fit`` trains with (:func:`breastzoo.training.fit_model`; it adds the
        callbacks a model kind needs, such as DeNet's reward).

        Returns:
            The metrics of the best epoch by the objective (``val_accuracy``) plus
            ``seconds`` (wall time of this fit) and ``epochs`` (epochs trained).
        """
        from breastzoo.training import fit_model

        values = {name: hp.get(name) for name in self.space}
        config = self.config_for(values)
        cbs = list(callbacks or [])
        if self.reporter is not None:
            cbs.insert(0, _EpochReporter(self.reporter))
            self.reporter("trial_start", {"values": values})
        self._log({"event": "start", "values": values})
        started = time.perf_counter()
        # Trials score on Keras' own validation pass (the objective is val_accuracy), so no
        # second pass through infer, and KerasTuner keeps its own checkpoints: no run folder.
        history = fit_model(model, self.prepared, config, scores=False, epochs=epochs,
                            initial_epoch=initial_epoch, callbacks=cbs,
                            verbose=self.verbose if verbose is None else verbose)
        seconds = time.perf_counter() - started
        metrics = best_epoch_metrics(history.history)
        metrics.update(seconds=seconds, epochs=float(len(history.epoch)))
        self._log({"event": "end", "values": values, "metrics": metrics})
        if self.reporter is not None:
            self.reporter("trial_end", {"values": values, "metrics": metrics})
        return metrics

    def _log(self, record: dict[str, Any]) -> None:
        if self.execution_log is None:
            return
        record = {"tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"),
                  "pid": os.getpid(), "time": time.time(), **record}
        self.execution_log.parent.mkdir(parents=True, exist_ok=True)
        # One short line per write in append mode: concurrent workers do not interleave.
        with open(self.execution_log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


def best_epoch_metrics(history: dict[str, list[float]], objective: str = "val_accuracy",
                       ) -> dict[str, float]:
    """All metrics at the epoch where ``objective`` is highest (first such epoch).

    Example:
        >>> best_epoch_metrics({"val_accuracy": [0.2, 0.5, 0.4], "loss": [3.0, 2.0, 1.0]})
        {'val_accuracy': 0.5, 'loss': 2.0, 'best_epoch': 1.0}
    """
    if objective not in history or not history[objective]:
        raise ValueError(f"The fit recorded no {objective!r}. Received: {sorted(history)}")
    scores = history[objective]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    out = {k: float(v[best]) for k, v in history.items() if len(v) > best}
    out["best_epoch"] = float(best)
    return out


class DeNetSaNetHyperModel(BreastzooHyperModel):
    """DeNet + SaNet (paper 000): ROI count ``k``, ``patch_size``, ``gamma``, learning rates.

    When ``k`` is tuned and ``max_steps`` is not, the glimpse budget grows with ``k`` in the
    base preset's ratio (demo: 8 glimpses for 5 ROIs, so 12 for 7 and 15 for 9; never below
    the preset's): the paper's DeNet looks until it has selected k patches, and a fixed
    budget would starve large k. ``k_max`` (ROIs at a tied vote) is raised to ``k`` if needed.
    """

    model_name = "denet_sanet"
    default_space = {
        "k": {"values": [3, 5, 7, 9]},
        "patch_size": {"values": [56, 112, 224]},
        "gamma": {"values": [0.05, 0.1, 0.25, 0.5, 1.0]},
        "sanet_lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
        "denet_lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
    }

    def adjust(self, config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        changes: dict[str, Any] = {}
        if "k" in values and "max_steps" not in values:
            ratio = self.base.max_steps / self.base.k
            changes["max_steps"] = max(self.base.max_steps, math.ceil(config.k * ratio))
        if config.k > config.k_max:
            changes["k_max"] = config.k
        return dataclasses.replace(config, **changes) if changes else config


class HybridHyperModel(BreastzooHyperModel):
    """Inception-SEP hybrid (paper 002): the fusion weight ``lambda_`` of
    P = lambda P_L + (1 - lambda) P_G (paper: 0.6).

    The hybrid's training loss is CE(P_G) + CE(P_L) (:mod:`breastzoo.models.hybrid`):
    lambda changes only the fused prediction. So trials that differ only in ``lambda_``
    share one training: the first trains and stores its weights under ``shared_weights/``
    next to the execution log, the others load them and only evaluate the validation
    patients (their ``epochs`` is 0). Every trial's score is the validation accuracy of the
    final weights, so cached and trained trials compare like for like.
    """

    model_name = "hybrid"
    default_space = {"lambda_": {"values": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]}}

    def _weights_path(self, config: TrainConfig) -> Path | None:
        import hashlib

        if self.execution_log is None:
            return None
        key = {k: v for k, v in config.to_dict().items() if k != "lambda_"}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
        name = f"{digest.hexdigest()[:16]}.weights.h5"
        return self.execution_log.parent / "shared_weights" / name

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: keras.Model,
        *args: Any,
        callbacks: list | None = None,
        epochs: int | None = None,
        initial_epoch: int = 0,
        verbose: int | str | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        from breastzoo.training import build_datasets

        values = {name: hp.get(name) for name in self.space}
        config = self.config_for(values)
        cached = self._weights_path(config)
        if cached is None or not cached.exists() or epochs is not None:
            metrics = super().fit(hp, model, *args, callbacks=callbacks, epochs=epochs,
                                  initial_epoch=initial_epoch, verbose=verbose, **kwargs)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                # Stage then rename: a concurrent trial never loads half a file.
                staged = cached.with_name(f".{os.getpid()}.{cached.name}")
                model.save_weights(staged)
                staged.replace(cached)
            started = time.perf_counter() - metrics["seconds"]
        else:
            if self.reporter is not None:
                self.reporter("trial_start", {"values": values})
            self._log({"event": "start", "values": values, "cached_weights": str(cached)})
            started = time.perf_counter()
            model.load_weights(cached)
            metrics = {"epochs": 0.0, "best_epoch": -1.0}
        _, val, _ = build_datasets(self.prepared, config)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            scores = model.evaluate(val, verbose=0, return_dict=True)
        metrics.update({f"val_{k}": float(v) for k, v in scores.items()})
        metrics["seconds"] = time.perf_counter() - started
        if metrics["epochs"] == 0:
            self._log({"event": "end", "values": values, "metrics": metrics})
            if self.reporter is not None:
                self.reporter("trial_end", {"values": values, "metrics": metrics})
        return metrics


_HYPERMODELS: dict[str, type[BreastzooHyperModel]] = {
    "denet_sanet": DeNetSaNetHyperModel,
    "hybrid": HybridHyperModel,
}


def hypermodel_for(model: str) -> type[BreastzooHyperModel]:
    """The HyperModel class of a study's ``model``.

    Example:
        >>> hypermodel_for("denet_sanet").__name__
        'DeNetSaNetHyperModel'
    """
    if model not in _HYPERMODELS:
        raise ValueError(f"No HyperModel for this model. Received: model={model!r}; "
                         f"expected one of {sorted(_HYPERMODELS)}")
    return _HYPERMODELS[model]
