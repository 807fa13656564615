"""`breastzoo prune RUN_DIR|ZOO_NAME --ratio O`: SEP channel pruning (+ TF-MOT magnitude).

A thin wrapper over :func:`breastzoo.pruning.run.prune_run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastzoo.commands.common import console, friendly, print_json
from breastzoo.quiet import keras_verbosity

#: Keys ``--json`` prints (the issue's contract), then the rest of the result.
JSON_KEYS = ("params_before", "params_after", "macs_before", "macs_after", "irr_before",
             "irr_after")


@friendly
def prune(
    source: Annotated[str, typer.Argument(help="Run folder, zoo version folder or zoo model "
                                               "name (latest version).")],
    ratio: Annotated[float, typer.Option("--ratio", help="Target channel pruning ratio O "
                                                         "in [0, 1).")],
    loops: Annotated[int, typer.Option("--loops", help="Prune-retrain loops R (eq. 8).")] = 1,
    magnitude: Annotated[float | None, typer.Option(
        "--magnitude", help="TF-MOT magnitude pruning to this sparsity during the last "
                            "retraining.")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Retraining epochs per loop (default: the run's / loops).")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(
        "--steps-per-epoch", help="Cap on iterations per epoch.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="New run folder.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Data root if it moved.")] = None,
    zoo_root: Annotated[str | None, typer.Option("--zoo", help="Zoo root for names.")] = None,
    eager: Annotated[bool, typer.Option(
        "--eager", help="Retrain eagerly (faster than graph tracing for a few steps).")] = False,
    schedule: Annotated[str, typer.Option(
        "--schedule", help="Retraining rate: 'restart' (warm restart to --retrain-lr, cosine "
                           "decay to 0) or 'run' (the source run's own schedule).")] = "restart",
    retrain_lr: Annotated[float | None, typer.Option(
        "--retrain-lr", help="Peak rate of the warm restart (default: 0.3 x the run's "
                             "rate).")] = None,
    distill: Annotated[float, typer.Option(
        "--distill", help="Weight alpha in [0, 1] of distillation from the unpruned model "
                          "(default 0: labels only; in docs/benchmarks.md a teacher lost "
                          "accuracy).")] = 0.0,
    temperature: Annotated[float, typer.Option(
        "--temperature", help="Distillation temperature T.")] = 2.0,
    convs: Annotated[bool, typer.Option(
        "--convs/--sep-only", help="Also prune the stem and reduce convolutions (BatchNorm "
                                   "scale importance), which SEP leaves whole.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Prune a trained Inception-SEP model, retrain it on the run's training split, evaluate
    it on the test patients and write a new run folder."""
    from breastzoo.pruning.run import prune_run

    log = (lambda _msg: None) if as_json else console.print
    result = prune_run(source, ratio, loops=loops, magnitude=magnitude, epochs=epochs,
                       steps_per_epoch=steps_per_epoch, out=out, data=data, zoo_root=zoo_root,
                       eager=eager, schedule=schedule, retrain_lr=retrain_lr, distill=distill,
                       temperature=temperature, convs=convs,
                       verbose=keras_verbosity(quiet=as_json),
                       log=log)
    result.pop("metrics")
    if as_json:
        print_json({**{k: result[k] for k in JSON_KEYS}, **result})
        return
    console.print(
        f"[bold]{result['run_dir']}[/]: params {result['params_before']:,} -> "
        f"{result['params_after']:,}, MACs {result['macs_before']:,} -> {result['macs_after']:,}, "
        f"IRR {result['irr_before']:.3f} -> {result['irr_after']:.3f}, gzip "
        f"{result['gzip_bytes_before']:,} -> {result['gzip_bytes_after']:,} bytes",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``prune`` to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.command("prune")(prune)
