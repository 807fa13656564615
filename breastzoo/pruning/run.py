"""``breastzoo prune``: SEP-prune a trained run (or zoo model), retrain, evaluate, new run folder.

Flow (paper 002, Fig. 5, with TF-MOT magnitude pruning as the optional last stage)::

    run folder | zoo version   model.keras + config.json (config, data, split) + metrics.json
      -> R loops: importance on the training split (eq. 5), drop X = 1 - (1 - O)^(1/R) of
         every SEP block's channels (eq. 8), rebuild narrower, retrain on the training split
      -> --magnitude S: TF-MOT's PolynomialDecay schedule + masks during the last retraining,
         masks baked into the weights
      -> new run folder: model.keras, config.json (same data and split, plus a "pruning"
         record), history.json, then evaluate_run -> metrics.json, plots

The training data, augmentation and optimiser are those of the source run
(``breastzoo.training.build_datasets`` / ``compile_model`` on its ``config.json``), and it
retrains through the one training loop, ``breastzoo.training.fit_model``; the test patients
are never seen before evaluation.

Example:
    >>> prune_run("runs/breakhis-200x-hybrid-binary-demo-seed0", ratio=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from breastzoo import runs
from breastzoo.io import atomic_write_json

__all__ = ["RETRAIN_LR_SCALE", "SCHEDULES", "prune_run", "resolve_source"]

#: Retraining schedules: a warm restart (default) or the source run's own.
SCHEDULES = ("restart", "run")
#: Default peak rate of the warm restart, as a fraction of the run's training rate: a pruned
#: network keeps most of its trained weights, and the full rate undoes them (measured in
#: docs/pruning.md).
RETRAIN_LR_SCALE = 0.3


def resolve_source(source: str | Path, zoo_root: str | Path | None = None
                   ) -> tuple[Path, dict, dict | None, str]:
    """``(model.keras, run manifest, metrics or None, label)`` of a run folder or zoo model.

    Args:
        source: a finished run folder (``model.keras`` + ``config.json``), a zoo version
            folder (``model.keras`` + ``run_config.json``) or a zoo model name (latest
            version, through ``breastzoo.zoo.registry``).
        zoo_root: zoo root for names (default: the registry's).

    Raises:
        ValueError: neither a usable folder nor a published zoo name, or a zoo version
            whose files fail their SHA256SUMS.

    Example:
        >>> resolve_source("runs/missing")  # doctest: +SKIP
    """
    path = Path(source)
    if path.is_dir():
        run = runs.RunFolder(path)
        if run.is_finished and run.manifest_file() is not None:
            return run.model_path, run.read_manifest(), run.read_metrics(), path.name
        raise ValueError(f"Not a finished run folder (needs {run.model_path.name} and "
                         f"{run.manifest_path.name}). Received: {source}")
    if "/" in str(source) or str(source).startswith("."):
        raise ValueError(f"No such run folder. Received: {source}")
    from breastzoo.zoo import registry

    folder = registry.locate(str(source), root=zoo_root)  # ValueError for unknown names
    registry.check_dir(folder)  # a tampered or truncated version is refused before loading
    model_path, manifest, metrics, _ = resolve_source(folder)
    return model_path, manifest, metrics, f"{source}-v{folder.name}"


def _irr(model: Any, prepared: Any, config: Any) -> float:
    from breastzoo.evaluation.metrics import evaluate_predictions
    from breastzoo.evaluation.reports import predict_records

    test = prepared.parts()["test"]
    pred = predict_records(model, test, prepared.class_names, config, prepared.source.root)
    metrics = evaluate_predictions(np.asarray(pred["labels"]), pred["probs"], pred["patients"],
                                   prepared.class_names, task=config.task)
    return float(metrics["irr"])


def _example_input(config: Any) -> Any:
    w, h = config.image_size
    return np.zeros((1, h, w, 3), "uint8")


def _default_out(label: str, ratio: float, loops: int, magnitude: float | None) -> Path:
    name = f"{label}-pruned-o{ratio:g}-r{loops}"
    if magnitude:
        name += f"-m{magnitude:g}"
    return runs.RUNS_DIR / name


def prune_run(
    source: str | Path,
    ratio: float,
    *,
    loops: int = 1,
    magnitude: float | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    importance_batches: int | None = None,
    out: str | Path | None = None,
    data: str | None = None,
    zoo_root: str | Path | None = None,
    eager: bool = False,
    schedule: str = "restart",
    retrain_lr: float | None = None,
    distill: float = 0.0,
    temperature: float = 2.0,
    convs: bool = False,
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
) -> dict:
    """Prune, retrain, evaluate and write a new run folder; the library behind the command.

    Args:
        source: run folder, zoo version folder or zoo model name (see :func:`resolve_source`).
        ratio: target SEP pruning ratio ``O`` in [0, 1) (0: magnitude pruning only).
        loops: prune-retrain loops ``R`` (eq. 8).
        magnitude: target sparsity of TF-MOT magnitude pruning during the last retraining,
            in [0, 1), or None.
        epochs: retraining epochs per loop (default: the run's epochs divided by ``loops``).
        steps_per_epoch: cap on iterations per epoch (default: the run's).
        importance_batches: score channels on at most this many training batches (default:
            the whole training split once, as eq. 5 says).
        out: new run folder (default ``runs/<source>-pruned-o<O>-r<R>[-m<S>]``); must not
            hold a model yet.
        data: data root if the run's recorded one moved.
        zoo_root: zoo root used to resolve a model name.
        eager: retrain eagerly (``run_eagerly=True``): tracing the training graph of a
            hybrid takes minutes on a small CPU, more than a few eager steps.
        schedule: ``"restart"`` (default): each loop's learning rate restarts at
            ``retrain_lr / 10``, climbs to ``retrain_lr`` over one epoch and decays to zero
            (:func:`~breastzoo.models.factory.warm_restart_schedule`); ``"run"``: the source
            run's own optimiser schedule, from its start (the first version's recipe).
        retrain_lr: peak rate of the warm restart (default: :data:`RETRAIN_LR_SCALE` x the
            run's rate).
        distill: weight ``alpha`` in [0, 1] of distillation from the unpruned source model
            (:class:`~breastzoo.pruning.retrain.Distiller`); default 0, labels alone. On the
            real subset and the testbed a teacher cost 3-10 points: the source it copies is
            weaker than what retraining reaches (docs/benchmarks.md).
        temperature: distillation temperature ``T``.
        convs: also prune the stem and reduce convolutions by the same fraction
            (:func:`~breastzoo.pruning.sep.select_conv_channels`, BatchNorm-scale
            importance): SEP leaves them whole, and they hold much of the latency.
        verbose: Keras progress mode.
        log: where progress lines go.

    Returns:
        ``{"run_dir", "params_before", "params_after", "macs_before", "macs_after",
        "irr_before", "irr_after", "gzip_bytes_before", "gzip_bytes_after", "sparsity",
        "nonzero_params_after", "channels_kept", "loops", "ratio", "magnitude", "metrics"}``.

    Raises:
        ValueError: bad ratio/loops/magnitude, an unprunable model or an occupied ``out``.

    Example:
        >>> prune_run("runs/x", 0.5, loops=2, magnitude=0.5)  # doctest: +SKIP
    """
    import keras

    from breastzoo.configs import TrainConfig
    from breastzoo.data.pipeline import make_dataset
    from breastzoo.evaluation.reports import evaluate_run
    from breastzoo.models.complexity import count_macs
    from breastzoo.models.factory import compile_model
    from breastzoo.pruning.magnitude import MagnitudePruning, gzip_weights_size, sparsity
    from breastzoo.pruning.retrain import Distiller
    from breastzoo.pruning.sep import loop_fraction, prune_once, sep_branches
    from breastzoo.training import build_datasets, fit_model

    fraction = loop_fraction(ratio, loops)  # validates ratio and loops
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown retraining schedule. Received: schedule={schedule!r}; "
                         f"expected one of {', '.join(SCHEDULES)}")
    if not 0.0 <= float(distill) <= 1.0:
        raise ValueError(f"distill must be in [0, 1]. Received: distill={distill!r}")
    if retrain_lr is not None and float(retrain_lr) <= 0:
        raise ValueError(f"retrain_lr must be > 0. Received: retrain_lr={retrain_lr!r}")
    if magnitude is not None and not 0.0 <= float(magnitude) < 1.0:
        raise ValueError(f"magnitude must be in [0, 1). Received: magnitude={magnitude!r}")
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1. Received: epochs={epochs!r}")
    model_path, manifest, source_metrics, label = resolve_source(source, zoo_root)
    config = TrainConfig.from_dict(manifest["config"])
    if steps_per_epoch is not None:
        config = config.replace(steps_per_epoch=int(steps_per_epoch))
    run = runs.RunFolder(out if out else _default_out(label, ratio, loops, magnitude))
    run_dir = run.path
    if run.is_finished:
        raise FileExistsError(f"{run_dir} already holds a pruned model; pass --out for a new "
                              f"folder or delete it. Received: out={str(run_dir)!r}")

    model = runs.load_model(model_path)
    if hasattr(model, "members"):
        raise ValueError(
            "A bagging ensemble is pruned member by member: each member is an ordinary run "
            f"folder (<run>/member-<i>). Received: {source}"
        )
    sep_branches(model)  # ValueError early for models without SEP blocks
    prepared = runs.load_prepared(model_path.parent, manifest=manifest, data=data)
    example = _example_input(config)
    before = {"params": int(model.count_params()), "macs": count_macs(model, example),
              "gzip": gzip_weights_size(model)}
    irr_before = (float(source_metrics["irr"]) if source_metrics and "irr" in source_metrics
                  else _irr(model, prepared, config))
    log(f"{label}: {before['params']:,} params, {before['macs'] / 1e9:.3f} G MACs, "
        f"IRR {irr_before:.3f}; pruning O={ratio:g} in {loops} loop(s) (X={fraction:.3f})")

    run_dir.mkdir(parents=True, exist_ok=True)
    peak = float(retrain_lr) if retrain_lr else config.sanet_lr * RETRAIN_LR_SCALE
    atomic_write_json(run.manifest_path, {
        **manifest,
        "pruning": {"source": str(source), "ratio": ratio, "loops": loops,
                    "fraction_per_loop": fraction, "magnitude": magnitude,
                    "schedule": schedule, "retrain_lr": peak if schedule == "restart" else None,
                    "distill": float(distill), "temperature": float(temperature),
                    "convs": bool(convs)},
    })
    # The teacher is the unpruned source model, for every loop (not the previous loop's).
    teacher = runs.load_model(model_path) if distill else None
    keras.utils.set_random_seed(config.seed)
    train, val, steps = build_datasets(prepared, config)
    # Eq. 5 averages over the training samples as they are, not augmented copies.
    scoring = make_dataset(prepared.parts()["train"], prepared.class_names, task=config.task,
                           batch_size=config.batch_size, image_size=config.image_size)
    per_loop = max(1, int(epochs) if epochs else round(config.epochs / loops))
    history: list[dict] = []
    kept: dict[str, dict[str, int]] = {}
    epoch = 0
    for loop in range(loops):
        started = time.perf_counter()
        if fraction > 0:
            model, keep = prune_once(model, scoring, fraction, max_batches=importance_batches,
                                     convs=convs)
            kept = {b: {m: len(idx) for m, idx in mods.items()} for b, mods in keep.items()}
        retrain_config = config
        if schedule == "restart":
            retrain_config = config.replace(lr_schedule="cosine", sanet_lr=peak, epochs=per_loop)
        compile_model(model, retrain_config, steps)
        trained = model
        if distill:
            trained = Distiller(model, teacher, alpha=float(distill),
                                temperature=float(temperature))
            trained.compile(optimizer=model.optimizer)
        if eager:
            trained.run_eagerly = True
        callbacks: list = []
        last = loop == loops - 1
        if magnitude and last:
            total = per_loop * steps
            callbacks.append(MagnitudePruning(float(magnitude), end_step=max(2, total),
                                              frequency=max(1, total // 10), target=model))
        # Keras' own validation only, as before: no balanced-accuracy pass, no resume state
        # (a pruning run is short and restarts from its source).
        fit = fit_model(trained, prepared, config, datasets=(train, val, steps), scores=False,
                        epochs=per_loop, callbacks=callbacks, verbose=verbose, log=log)
        for i in range(per_loop):
            history.append({"epoch": epoch, "loop": loop,
                            **{k: float(v[i]) for k, v in fit.history.items()}})
            epoch += 1
        log(f"loop {loop + 1}/{loops}: {model.count_params():,} params "
            f"({time.perf_counter() - started:.0f} s)")
    atomic_write_json(run.history_path, {"epochs": history})
    runs.save_model(model, run.model_path)
    shutil.rmtree(run.backup, ignore_errors=True)  # a reused --out folder's stale resume state

    after_sparsity = sparsity(model)
    metrics = evaluate_run(run_dir, prepared=prepared, log=log)
    result = {
        "run_dir": str(run_dir),
        "source": str(source),
        "ratio": ratio,
        "loops": loops,
        "magnitude": magnitude,
        "schedule": schedule,
        "retrain_lr": peak if schedule == "restart" else None,
        "distill": float(distill),
        "convs": bool(convs),
        "retrain_epochs_per_loop": per_loop,
        "steps_per_epoch": steps,
        "params_before": before["params"],
        "params_after": int(model.count_params()),
        "macs_before": before["macs"],
        "macs_after": count_macs(model, example),
        "irr_before": irr_before,
        "irr_after": float(metrics["irr"]),
        "gzip_bytes_before": before["gzip"],
        "gzip_bytes_after": gzip_weights_size(model),
        "sparsity": after_sparsity["sparsity"],
        "nonzero_params_after": after_sparsity["nonzero_params"],
        "channels_kept": kept,
    }
    atomic_write_json(run.pruning_path, result)
    return {**result, "metrics": metrics}
