"""``breastzoo fit DATASET``: train, evaluate on the test patients, write a run folder.

A thin wrapper over :func:`breastzoo.workflow.fit` (:func:`breastzoo.training.fit`, then
``--publish``); :func:`fit_config` turns the options into the
:class:`~breastzoo.configs.TrainConfig` it takes.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from breastzoo.commands.common import (
    DatasetKind,
    Task,
    console,
    console_log,
    friendly,
    parse_mag,
    print_json,
)
from breastzoo.configs import MODELS, PRESETS
from breastzoo.quiet import keras_verbosity

if TYPE_CHECKING:
    from breastzoo.configs import TrainConfig

# The choices come from configs (one list of models and presets for the whole package).
ModelName = StrEnum("ModelName", {name: name for name in MODELS})
ConfigPreset = StrEnum("ConfigPreset", {name: name for name in PRESETS})


class Vote(StrEnum):
    """How the members of a ``--bagging`` ensemble vote."""

    sum = "sum"
    max = "max"


def fit_config(
    model: str,
    task: str = "subtype",
    config: str = "demo",
    *,
    epochs: int | None = None,
    seed: int = 0,
    reward: str | None = None,
    k: int | None = None,
    patch_size: int | None = None,
    bagging: int | None = None,
    vote: str | None = None,
    overrides: list[str] | None = None,
) -> TrainConfig:
    """The training configuration ``breastzoo fit`` runs: a preset, the options, then ``--set``.

    Args:
        model: a name of ``configs.MODELS`` (``"denet_sanet"``, ``"hybrid"``, ...).
        task: ``"subtype"`` or ``"binary"``.
        config: a name of ``configs.PRESETS`` (``"tiny"``, ``"demo"``, ``"real"``, ``"paper"``).
        epochs, seed, reward, k, patch_size, bagging, vote: override the preset's fields;
            ``None`` keeps the preset's value.
        overrides: ``FIELD=VALUE`` strings applied last (``--set``).

    Returns:
        The :class:`~breastzoo.configs.TrainConfig`.

    Raises:
        ValueError: an unknown preset, model or field, or a value out of range.

    Example:
        >>> fit_config("sanet_resize", "binary", "tiny", overrides=["gamma=0.5"]).gamma
        0.5
    """
    from breastzoo.configs import apply_overrides, preset

    cfg = preset(config, model).replace(
        model=model, task=task, epochs=epochs, seed=seed, reward=reward, k=k,
        patch_size=patch_size, bagging=bagging, vote=vote,
    )
    return apply_overrides(cfg, overrides or [])


def fit_cli(
    dataset: Annotated[DatasetKind, typer.Argument(help="breakhis, bach or folder.")],
    mag: Annotated[str | None, typer.Option(help="Magnification (BreaKHis): 40/100/200/400.")]
    = None,
    data: Annotated[str | None, typer.Option(
        help="Dataset folder, or 'demo' for the synthetic testbed. Default: $BREASTZOO_DATA, "
             "then ./data.")] = None,
    model: Annotated[ModelName, typer.Option(help="Method or baseline.")]
    = ModelName.denet_sanet,
    task: Annotated[Task, typer.Option(help="8 subtypes or benign/malignant.")] = Task.subtype,
    config: Annotated[ConfigPreset, typer.Option(help="Hyper-parameter preset.")]
    = ConfigPreset.demo,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, weights and sampling.")] = 0,
    trials: Annotated[int, typer.Option(help="Repeat with seeds seed..seed+N-1.")] = 1,
    reward: Annotated[str | None, typer.Option(
        help="DeNet reward: paper, per_image or per_glimpse.")] = None,
    k: Annotated[int | None, typer.Option(help="ROIs per image.")] = None,
    patch_size: Annotated[int | None, typer.Option(help="ROI side in pixels.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Start from these weights.")] = None,
    bagging: Annotated[int | None, typer.Option(
        help="Bagging ensemble (paper 002): N models, each trained on N-1 folds of the "
             "training patients and validated on the remaining one, saved as one model.")]
    = None,
    vote: Annotated[Vote | None, typer.Option(
        help="How --bagging members vote: sum (average probabilities) or max (majority). "
             "Default: sum.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default under runs/).")] = None,
    publish: Annotated[bool, typer.Option(
        help="After evaluation, publish the run to the zoo (see `breastzoo zoo`).")] = False,
    name: Annotated[str | None, typer.Option(
        help="Zoo name for --publish (default from the run, e.g. denet_sanet_100x).")] = None,
    strategy: Annotated[str, typer.Option(
        help="tf.distribute: none, mirrored (all local GPUs) or multiworker (TF_CONFIG; "
             "docs/distributed.md).")] = "none",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any config field, FIELD=VALUE (repeatable), e.g. "
                      "--set gamma=0.5.")] = None,
    split: Annotated[Path | None, typer.Option(
        help="Use this patient split: the JSON of `breastzoo data split --json` or an "
             "official dsfoldN.txt. Leaks and unknown patients are refused; data patients "
             "it does not mention are dropped with a warning. Not with --trials > 1.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")]
    = False,
) -> None:
    """Train on a patient-wise split, evaluate on the test patients, write a run folder.

    The split is made for --task (stratified by subtype or by benign/malignant, image
    counts balanced) unless --split gives one. Re-running the same command resumes an
    interrupted run from its last epoch.
    """
    from breastzoo.workflow import fit as run_fit

    magnification = parse_mag(mag)
    cfg = fit_config(model.value, task.value, config.value, epochs=epochs, seed=seed,
                     reward=reward, k=k, patch_size=patch_size, bagging=bagging,
                     vote=vote.value if vote else None, overrides=set_)
    result = run_fit(
        dataset.value, data=data, mag=magnification, config=cfg, preset=config.value, out=out,
        trials=trials, weights=str(weights) if weights else None,
        verbose=keras_verbosity(quiet=as_json), log=console_log(as_json), publish=publish,
        publish_name=name, strategy=strategy, split=split,
    )
    if as_json:
        print_json(result)
        return
    console.print(f"Run folder: {result['run_dir']}  (metrics.json, confusion_matrix.png, "
                  "roc.png, overlays/)")


def register(app: typer.Typer) -> None:
    """Add ``fit`` to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.command("fit")(friendly(fit_cli))
