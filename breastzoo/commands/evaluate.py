"""``breastzoo evaluate RUN``: score a run on its test patients, or on another data tree.

:func:`evaluate` is the importable call (it decides between the run's own test patients and
external validation); :func:`evaluate_cli` only parses options and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from breastzoo.commands.common import console_log, friendly, parse_mag, print_json


def evaluate(
    run_dir: Path,
    data: str | None = None,
    *,
    external: bool = False,
    mag: str | None = None,
    out: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Re-evaluate a trained run on its test patients, or (external validation) a whole tree.

    A ``data`` tree without the run's test patients cannot be the run's moved data folder, so
    it is scored whole (as with ``external=True``); so is any ``data`` given with ``mag`` or
    ``out``.

    Args:
        run_dir: a run folder written by ``breastzoo fit``.
        data: the run's data folder if it moved, or another data tree.
        external: score every image of ``data`` (at the run's magnification or ``mag``).
        mag: external validation: the magnification to score, in any spelling.
        out: external validation: output folder (default ``RUN/external/<tree name>``).
        log: progress messages.

    Returns:
        The metrics (as in the run's ``metrics.json``).

    Raises:
        ValueError: ``external`` without ``data``; ``mag``/``out`` without ``data``; a bad
            magnification.

    Example:
        >>> evaluate(Path("runs/r"), "other_tree", mag="100")["irr"]  # doctest: +SKIP
        0.71
    """
    from breastzoo.evaluation.reports import evaluate_external, evaluate_run, holds_run_split

    if not external and data is not None and (
            mag is not None or out is not None or not holds_run_split(run_dir, data)):
        # A tree without the run's test patients cannot be its moved data folder: score it
        # whole (external validation) rather than fail on a missing split.
        log(f"{data} holds none of the run's test patients: external validation on all "
            "of its images (--external).")
        external = True
    if external:
        if data is None:
            raise ValueError("--external scores another data tree: pass --data PATH. "
                             "Received: data=None")
        return evaluate_external(run_dir, data, mag=parse_mag(mag), out=out, log=log)
    if mag is not None or out is not None:
        raise ValueError(f"--mag and --out go with --data (external validation, "
                         f"--external). "
                         f"Received: mag={mag!r}, out={str(out) if out else None!r}")
    return evaluate_run(run_dir, data=data, log=log)


def evaluate_cli(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by breastzoo fit.")],
    data: Annotated[str | None, typer.Option(
        help="The run's own data folder if it moved (it holds the run's test patients), or "
             "another data tree: one without the run's test patients is scored whole, as "
             "with --external.")] = None,
    external: Annotated[bool, typer.Option(
        "--external", help="External validation: score the run on EVERY image of --data at "
                           "the run's magnification (or --mag), ignoring splits; writes "
                           "RUN/external/<tree name>/ (or --out).")] = False,
    mag: Annotated[str | None, typer.Option(
        help="External validation: magnification to score (default: the run's); implies "
             "--external.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="External validation: output folder (default RUN/external/<tree name>); "
             "implies --external.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")]
    = False,
) -> None:
    """Re-evaluate a trained run on its test patients, or (--external) on another data tree.

    breastzoo evaluate RUN --data OTHER_TREE [--mag 100] [--out DIR] writes metrics.json,
    predictions.json, patients.csv, confusion_matrix.png and roc.png (a tree without the
    run's test patients is external; --external forces it).
    """
    metrics = evaluate(run_dir, data, external=external, mag=mag, out=out,
                       log=console_log(as_json))
    if as_json:
        print_json(metrics)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.command("evaluate")(friendly(evaluate_cli))
