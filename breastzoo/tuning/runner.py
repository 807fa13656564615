"""Run a tuning study: data -> HyperModel -> KerasTuner -> results table, plot, best command.

An output folder holds::

    study.json        the study, preset, base config, data and split (resume check)
    keras_tuner/      KerasTuner's project (oracle state, one folder per trial)
    executions.jsonl  one line per trial start/end: which process ran which values
    results.csv, results.json   one row per trial (values, score, metrics, seconds)
    heatmap.png       grid studies over two dimensions (score per cell);
    sweep.png         studies over one dimension (score per value)

Re-running the same command resumes: completed trials are kept and a trial that was running
when the process died is run again (KerasTuner re-queues it). A folder made for a different
study, preset or split is refused.

Distributed (KerasTuner's own mode): run the same command once with
``KERASTUNER_TUNER_ID=chief`` and once per worker with ``KERASTUNER_TUNER_ID=tuner<i>``, all
with ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` pointing at the chief and the
same ``--out`` on a shared file system. The chief serves the oracle and writes the results;
workers train trials.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breastzoo.configs import TrainConfig
from breastzoo.configs import preset as get_preset
from breastzoo.io import atomic_write_bytes, atomic_write_json
from breastzoo.runs import RUNS_DIR, check_resumable, data_record
from breastzoo.tuning.studies import Study

TUNE_DIR = RUNS_DIR / "tune"
#: The study folder's manifest, and the entries a resumed study must match (the resume
#: check is the run folder's, :func:`breastzoo.runs.check_resumable`).
STUDY_FILE = "study.json"
STUDY_KEYS = ("study", "preset", "base_config", "split")
#: TrainConfig fields that ``breastzoo fit`` has a dedicated option for.
FIT_OPTIONS = {"k": "--k", "patch_size": "--patch-size", "reward": "--reward",
               "epochs": "--epochs"}
#: Metrics copied from each trial into the results table (when recorded).
RESULT_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss", "best_epoch", "epochs",
                  "seconds")


def role() -> str:
    """``"chief"``, ``"worker"`` or ``"standalone"`` from KerasTuner's environment variables.

    Example:
        >>> role() in ("chief", "worker", "standalone")
        True
    """
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def default_study_dir(study: Study, preset: str) -> Path:
    """``runs/tune/<study>-<dataset>-<mag>-<preset>``: the same command, the same folder
    (which is what makes re-running it resume)."""
    from breastzoo.data.records import Magnification

    mag = Magnification.parse(study.mag).slug if study.mag else "all"
    return TUNE_DIR / f"{study.name}-{study.dataset}-{mag}-{preset}"


def base_config(study: Study, preset: str, overrides: dict[str, Any] | None = None
                ) -> TrainConfig:
    """The preset with the study's task, seed and budget overrides, then ``overrides``."""
    config = get_preset(preset, study.model).replace(task=study.task, seed=study.seed)
    config = config.replace(**study.config_overrides)
    return config.replace(**(overrides or {}))


def make_tuner(study: Study, hypermodel: Any, directory: Path,
               max_trials: int | None = None) -> Any:
    """The KerasTuner tuner the study names, resuming any project in ``directory``.

    Args:
        study: the study (tuner kind, budget, seed).
        hypermodel: a :class:`~breastzoo.tuning.hypermodels.BreastzooHyperModel`.
        directory: output folder (the project is ``directory/keras_tuner``).
        max_trials: overrides ``budget.max_trials`` (grid, random, Bayesian).
    """
    import keras_tuner

    budget = study.tuner_budget
    if max_trials is not None:
        budget["max_trials"] = max_trials
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(study.objective, direction="max"),
        directory=str(directory), project_name="keras_tuner", overwrite=False,
        executions_per_trial=budget.get("executions_per_trial", 1), seed=study.seed,
        # A trial that raises is recorded as failed; three in a row stop the search.
        max_consecutive_failed_trials=3,
    )
    if study.tuner == "grid":
        from breastzoo.tuning.grid import grid_search

        # Not keras_tuner.GridSearch: its oracle cannot resume (see breastzoo/tuning/grid.py).
        return grid_search(max_trials=budget.get("max_trials"), **common)
    if study.tuner == "random":
        return keras_tuner.RandomSearch(max_trials=budget["max_trials"], **common)
    if study.tuner == "bayesian":
        return keras_tuner.BayesianOptimization(
            max_trials=budget["max_trials"],
            num_initial_points=budget.get("num_initial_points"), **common)
    return keras_tuner.Hyperband(
        max_epochs=budget["max_epochs"], factor=budget.get("factor", 3),
        hyperband_iterations=budget.get("hyperband_iterations", 1), **common)


def collect_results(tuner: Any, study: Study) -> list[dict[str, Any]]:
    """One row per trial: id, status, the study's values, score and metrics."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        row: dict[str, Any] = {"trial": trial.trial_id, "status": trial.status}
        for name in study.space:
            row[name] = trial.hyperparameters.values.get(name)
        row["score"] = trial.score
        for metric in RESULT_METRICS:
            row[metric] = (trial.metrics.get_last_value(metric)
                           if trial.metrics.exists(metric) else None)
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """``results.csv`` and ``results.json`` (atomic)."""
    atomic_write_json(out / "results.json", {"trials": rows})
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())


def plot_study(study: Study, rows: list[dict[str, Any]], out: Path,
               metric: str = "score", caption: str | None = None) -> Path | None:
    """``heatmap.png`` (two dimensions) or ``sweep.png`` (one), of completed trials' scores.

    Cells without a completed trial stay blank. Returns the path, or None for other shapes.
    ``caption`` (e.g. which data and preset) is printed under the title, so a plot copied
    out of its folder still says what it measured.

    Example:
        >>> plot_study(study, rows, Path("out"))  # doctest: +SKIP
    """
    import numpy as np

    from breastzoo.viz import new_figure, save_figure

    # Fixed dimensions (one value) are not axes.
    names = [n for n in study.space if len(_axis(study, n) or [None, None]) > 1]
    done = [r for r in rows if r["status"] == "COMPLETED" and r.get(metric) is not None]
    if not done or len(names) not in (1, 2):
        return None

    def title(what: str) -> str:
        return f"{study.name}: {study.objective} {what}" + (f"\n{caption}" if caption else "")

    if len(names) == 1:
        (name,) = names
        pts = sorted((r[name], r[metric]) for r in done)
        fig = new_figure((5.0, 3.5))
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
        ax.set_xlabel(name)
        ax.set_ylabel(f"{study.objective} (validation patients)")
        ax.set_title(title(f"vs {name}"), fontsize=9)
        ax.grid(alpha=0.3)
        return save_figure(fig, out / "sweep.png")
    row_name, col_name = names
    row_vals = sorted({r[row_name] for r in done} | set(_axis(study, row_name)))
    col_vals = sorted({r[col_name] for r in done} | set(_axis(study, col_name)))
    grid = np.full((len(row_vals), len(col_vals)), np.nan)
    for r in done:
        grid[row_vals.index(r[row_name]), col_vals.index(r[col_name])] = r[metric]
    fig = new_figure((max(6.0, 1.2 + 1.1 * len(col_vals)), 1.4 + 0.7 * len(row_vals)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{study.objective} (validation)")
    ax.set_xticks(range(len(col_vals)), labels=[str(v) for v in col_vals])
    ax.set_yticks(range(len(row_vals)), labels=[str(v) for v in row_vals])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2.0
    for i in range(len(row_vals)):
        for j in range(len(col_vals)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if grid[i, j] > mid else "white")
    ax.set_title(title(f"per {row_name} x {col_name}"), fontsize=9)
    return save_figure(fig, out / "heatmap.png")


def _axis(study: Study, name: str) -> list[Any]:
    from breastzoo.tuning.studies import grid_values

    return grid_values(study.space[name]) or []


def fit_command(study: Study, preset: str, data: str | None, config: TrainConfig) -> str:
    """A ``breastzoo fit`` command line that trains ``config`` (every field that differs
    from the preset is passed, so the run reproduces the trial).

    Example:
        >>> from breastzoo.tuning.studies import parse_study
        >>> s = parse_study({"name": "s", "model": "denet_sanet", "tuner": "grid",
        ...                  "space": {"k": {"values": [3]}}})
        >>> fit_command(s, "tiny", "demo", get_preset("tiny").replace(k=3, gamma=0.5))
        'breastzoo fit breakhis --mag 100 --data demo --config tiny --set gamma=0.5'
    """
    parts = ["breastzoo", "fit", study.dataset]
    if study.mag:
        parts += ["--mag", study.mag]
    if data:
        parts += ["--data", data]
    parts += ["--config", preset]
    if config.model != get_preset(preset).model:
        parts += ["--model", config.model]
    # `fit` applies the model's own preset settings, so compare against those.
    reference = get_preset(preset, config.model)
    if config.task != reference.task:
        parts += ["--task", config.task]
    if config.seed != reference.seed:
        parts += ["--seed", str(config.seed)]
    for field, value in config.to_dict().items():
        if field in ("model", "task", "seed") or value == getattr(reference, field):
            continue
        if isinstance(value, tuple | list):
            value = ",".join(str(v) for v in value)
        if field in FIT_OPTIONS:
            parts += [FIT_OPTIONS[field], str(value)]
        else:
            parts += ["--set", f"{field}={value}"]
    return shlex.join(parts)


def run_study(
    study: Study,
    *,
    data: str | None = None,
    preset: str = "demo",
    out: str | Path | None = None,
    max_trials: int | None = None,
    overrides: dict[str, Any] | None = None,
    reporter: Callable[[str, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
    verbose: int | str = 0,
    report_only: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a study; the library behind ``breastzoo tune``.

    Args:
        study: a parsed study (:func:`~breastzoo.tuning.studies.load_study`).
        data: dataset path, ``"demo"`` or None (``$BREASTZOO_DATA``, ``./data``).
        preset: ``tiny`` / ``demo`` / ``paper``: the TrainConfig every trial starts from.
        out: output folder (default :func:`default_study_dir`).
        max_trials: override the study's ``budget.max_trials``.
        overrides: TrainConfig fields for every trial (e.g. a smaller per-trial budget:
            ``{"epochs": 4}``); part of the resume check.
        reporter: progress events (see :mod:`breastzoo.tuning.hypermodels`).
        log: where to print lines.
        verbose: Keras progress-bar mode inside trials.
        report_only: train nothing; write the table, plot and best command of the trials
            finished so far (e.g. while a long study is still running elsewhere).

    Returns:
        ``{"out", "role", "trials", "best", "fit_command", "plot"}``; a distributed worker
        returns only ``out``, ``role`` and the trials it ran.

    Example:
        >>> run_study(load_study("tuning/roi_patch.yaml", "tiny"), data="demo",
        ...           preset="tiny", max_trials=2)  # doctest: +SKIP
    """
    from breastzoo.training import prepare_data
    from breastzoo.tuning.hypermodels import hypermodel_for

    base = base_config(study, preset, overrides)
    base.validate()
    prepared = prepare_data(study.dataset, data, study.mag, study.task, base.seed)
    out = Path(out) if out else default_study_dir(study, preset)
    out.mkdir(parents=True, exist_ok=True)
    study_record = {k: v for k, v in study.to_dict().items() if k != "source"}
    study_record["budget"] = {k: v for k, v in study.budget.items() if k != "max_trials"}
    manifest = {
        "study": study_record,
        "preset": preset,
        "base_config": base.to_dict(),
        "data": data_record(prepared.source),
        "magnification": prepared.magnification,
        "split": prepared.split.to_dict(prepared.records),
    }
    check_resumable(out, manifest, file=STUDY_FILE, keys=STUDY_KEYS, kind="study")
    if report_only and not (out / "keras_tuner").exists():
        raise ValueError(f"No study to report in {out}. Received: out={str(out)!r}")
    atomic_write_json(out / STUDY_FILE, manifest)
    hypermodel = hypermodel_for(study.model)(
        base, prepared, study.space, execution_log=out / "executions.jsonl",
        reporter=reporter, verbose=verbose)
    who = role()
    log(f"study {study.name} ({study.tuner} search, {who}): {out}; "
        f"{len(prepared.split.train)}/{len(prepared.split.val)} train/val patients "
        f"({prepared.source.label}); test patients are not used")
    # KerasTuner print()s its own chatter ("Reloading Tuner from ...", oracle messages);
    # stdout carries the command's result (e.g. --json), so the chatter goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        tuner = make_tuner(study, hypermodel, out, max_trials)
        if not report_only:
            tuner.search(verbose=0)
    if who == "worker":
        ran = [json.loads(line) for line in (out / "executions.jsonl").read_text().splitlines()]
        mine = [r["values"] for r in ran
                if r["event"] == "end" and r["tuner_id"] == os.environ["KERASTUNER_TUNER_ID"]]
        return {"out": str(out), "role": who, "trials_run": mine}
    rows = collect_results(tuner, study)
    write_table(rows, out)
    budget = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (overrides or {}).items())
    plot = plot_study(study, rows, out,
                      caption=f"{prepared.source.label}; --config {preset}{budget}")
    best = tuner.oracle.get_best_trials(1)
    result: dict[str, Any] = {"out": str(out), "role": who, "trials": rows, "plot":
                              str(plot) if plot else None, "best": None, "fit_command": None}
    if best:
        values = {n: best[0].hyperparameters.values.get(n) for n in study.space}
        config = hypermodel.config_for(values)
        result["best"] = {"trial": best[0].trial_id, "values": values,
                          "score": best[0].score}
        result["fit_command"] = fit_command(study, preset, data, config)
    atomic_write_json(out / "best.json", {k: v for k, v in result.items() if k != "trials"})
    return result
