"""Composition: fit -> evaluate -> publish -> export -> predict, as the CLI and the demo use it.

The layers, each importing only the ones below it::

    cli.py, commands/, demo.py     entry points (Typer commands, ``make demo``)
    workflow.py                    this module: one step after another
    training, evaluation, pruning, tuning, zoo, export, predict    the library
    runs.py                        the run folder (paths, manifest, model files)
    models, data, configs, io, viz

``breastzoo.training.fit`` trains and evaluates; publishing the result is composition, so it
happens here (:func:`fit`), which keeps the library free of the zoo. Export and prediction
live in :mod:`breastzoo.export.api` and :mod:`breastzoo.predict`; they are re-exported here so
that a script (the demo) needs one import.

Example:
    >>> from breastzoo import workflow
    >>> result = workflow.fit("breakhis", data="demo", mag="100", config=preset("tiny"),
    ...                       preset="tiny", publish=True)  # doctest: +SKIP
    >>> workflow.export_model(result["published"]["name"], "tflite")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from breastzoo.export.api import export_model
from breastzoo.predict import collect_images, predict_images, resolve_model
from breastzoo.zoo.publish import publish_run

__all__ = [
    "collect_images",
    "export_model",
    "fit",
    "predict_images",
    "publish_new",
    "publish_run",
    "resolve_model",
]


def fit(
    dataset: str,
    *,
    publish: bool = False,
    publish_name: str | None = None,
    zoo_root: str | Path | None = None,
    log: Callable[[str], None] = print,
    **fit_args: Any,
) -> dict:
    """Train and evaluate (:func:`breastzoo.training.fit`), then optionally publish the run;
    the library behind ``breastzoo fit``.

    Args:
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        publish: after evaluation, publish the run to the zoo (one trial only).
        publish_name: zoo name (default :func:`breastzoo.zoo.registry.default_name`).
        zoo_root: zoo root to publish to (default: see ``breastzoo.zoo.registry``).
        log: where progress lines go.
        **fit_args: the keyword arguments of :func:`breastzoo.training.fit` (``config``,
            ``data``, ``mag``, ``preset``, ``out``, ``trials``, ``split``, ...).

    Returns:
        :func:`breastzoo.training.fit`'s ``{"run_dir", "metrics"}``, plus ``"published"``
        (:func:`~breastzoo.zoo.publish.publish_run`'s record) with ``publish``.

    Raises:
        ValueError: ``publish`` with several trials, or a bad ``publish_name``: both before
            any training; and everything :func:`breastzoo.training.fit` raises.

    Example:
        >>> fit("breakhis", data="demo", mag="100", config=preset("tiny"),
        ...     publish=True, publish_name="tiny_denet")  # doctest: +SKIP
    """
    from breastzoo import training
    from breastzoo.zoo.registry import check_name

    if publish:
        trials = fit_args.get("trials", 1)
        if trials != 1:
            raise ValueError(f"--publish publishes one model; use --trials 1 or publish a "
                             f"trial folder with `breastzoo zoo publish`. Received: "
                             f"trials={trials}")
        if publish_name is not None:
            check_name(publish_name)  # before training, not after hours of it
    result = training.fit(dataset, log=log, **fit_args)
    # Under a multi-worker strategy only the chief (the result without a "role") evaluated.
    if publish and "role" not in result:
        result["published"] = publish_run(result["run_dir"], publish_name, zoo_root, log=log)
    return result


def publish_new(
    run_dir: str | Path,
    name: str,
    *,
    root: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Publish ``run_dir`` as ``name`` unless the latest version already holds this run's
    model, so re-running a script does not pile up identical versions.

    Args:
        run_dir: an evaluated run folder.
        name: zoo name.
        root: zoo root (default: see ``breastzoo.zoo.registry``).
        log: where the result line goes.

    Returns:
        ``{"name", "version", "path", "published"}`` (plus ``"root"`` when published);
        ``published`` is False when the latest version was reused.

    Example:
        >>> publish_new("runs/r", "denet_sanet_100x")["version"]  # doctest: +SKIP
        1
    """
    from breastzoo.runs import RunFolder
    from breastzoo.zoo.registry import SUMS_FILE, locate, parse_sums, sha256_file, versions

    model_path = RunFolder(run_dir).model_path
    if versions(name, root):
        latest = locate(name, root=root)
        sums = parse_sums((latest / SUMS_FILE).read_text(), latest / SUMS_FILE)
        if sums.get(model_path.name) == sha256_file(model_path):
            log(f"{name} version {latest.name} already holds this run's model; "
                "not republished.")
            return {"name": name, "version": int(latest.name), "path": str(latest),
                    "published": False}
    return {**publish_run(run_dir, name, root, log=log), "published": True}
