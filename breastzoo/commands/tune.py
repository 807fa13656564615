"""``breastzoo tune STUDY.yaml``: run a KerasTuner study (tuning/*.yaml), resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from breastzoo.commands.common import (
    console,
    console_log,
    err_console,
    friendly,
    print_json,
)


def _results_table(result: dict[str, Any], names: list[str]) -> Table:
    table = Table(title=f"{len(result['trials'])} trials (objective on validation patients)")
    for col in ("trial", *names, "score", "seconds", "status"):
        table.add_column(col, justify="right" if col not in ("status",) else "left")
    best = (result.get("best") or {}).get("trial")
    for row in result["trials"]:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        seconds = "-" if row.get("seconds") is None else f"{row['seconds']:.0f}"
        style = "bold green" if row["trial"] == best else None
        table.add_row(row["trial"], *[str(row[n]) for n in names], score, seconds,
                      row["status"], style=style)
    return table


def tune(
    study: Annotated[Path, typer.Argument(help="Study file, e.g. tuning/roi_patch.yaml.")],
    data: Annotated[str | None, typer.Option(
        help="Dataset folder, or 'demo' for the synthetic testbed. Default: $BREASTZOO_DATA, "
             "then ./data.")] = None,
    config: Annotated[str, typer.Option(help="Preset every trial starts from: tiny, demo, "
                                             "real, paper.")] = "demo",
    max_trials: Annotated[int | None, typer.Option(
        help="Cap on trials (default: the study's budget; a grid runs in full).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Per-trial epochs (smaller per-trial budget than the preset/study).")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(
        help="Per-trial iterations per epoch (smaller per-trial budget).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Study folder (default runs/tune/<study>-<dataset>-<mag>-<config>); re-running "
             "resumes it.")] = None,
    report_only: Annotated[bool, typer.Option(
        "--report", help="Train nothing: write the table, plot and best command of the "
                         "trials finished so far (e.g. while the study runs elsewhere).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
    = False,
) -> None:
    """Run a hyperparameter study with KerasTuner; resume it by re-running the command.

    Trials train on the training patients and are scored on the validation patients of the
    patient-wise split (never the test patients). Writes results.csv/json, a heat map for
    two-dimensional grids and prints the best trial as a `breastzoo fit` command line. With
    KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set, runs as the chief
    or a worker of a distributed search (docs/distributed.md).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from breastzoo.configs import PRESETS
    from breastzoo.tuning.runner import run_study
    from breastzoo.tuning.studies import load_study

    if config not in PRESETS:
        raise ValueError(f"Unknown config preset. Received: config={config!r}; expected one "
                         f"of {', '.join(PRESETS)}.")
    parsed = load_study(study, preset=config)
    overrides = {k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch))
                 if v is not None}
    log = console_log(as_json)
    planned = parsed.planned_trials() if max_trials is None else (
        min(max_trials, parsed.planned_trials() or max_trials))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), console=err_console,
                  disable=as_json) as progress:
        task = progress.add_task(f"{parsed.name} trials", total=planned, status="")
        state: dict[str, Any] = {"done": 0, "best": None}

        def report(event: str, payload: dict[str, Any]) -> None:
            values = ", ".join(f"{k}={v}" for k, v in payload.get("values", {}).items())
            if event == "trial_start":
                state["values"] = values
                progress.update(task, status=f"running {values}")
            elif event == "epoch_end":
                logs = payload["logs"]
                acc = logs.get("val_accuracy")
                progress.update(task, status=f"{state.get('values', '')}: epoch "
                                f"{payload['epoch'] + 1}, val_accuracy "
                                f"{'-' if acc is None else f'{acc:.3f}'}")
            elif event == "trial_end":
                score = payload["metrics"].get("val_accuracy")
                if score is not None and (state["best"] is None or score > state["best"]):
                    state["best"] = score
                progress.advance(task)
                progress.console.print(f"  {values}: val_accuracy {score:.3f} "
                                       f"({payload['metrics']['seconds']:.0f} s)",
                                       highlight=False)

        result = run_study(parsed, data=data, preset=config, out=out, max_trials=max_trials,
                           overrides=overrides, reporter=report, log=log,
                           report_only=report_only)
    if as_json:
        print_json(result)
        return
    if result["role"] == "worker":
        console.print(f"Worker finished: ran {len(result['trials_run'])} trial(s); the chief "
                      f"writes the results to {result['out']}.")
        return
    console.print(_results_table(result, list(parsed.space)))
    console.print(f"Results: {result['out']}/results.csv, results.json"
                  + (f", {Path(result['plot']).name}" if result["plot"] else ""))
    if result["best"]:
        console.print(f"Best (trial {result['best']['trial']}, val_accuracy "
                      f"{result['best']['score']:.3f}): {result['best']['values']}")
        console.print("Train it:")
        console.print(f"  {result['fit_command']}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``breastzoo tune`` to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.command("tune")(friendly(tune))
