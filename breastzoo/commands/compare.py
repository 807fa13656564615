"""``breastzoo compare RUN...``: runs side by side, with a Friedman test and sign tests.

A thin wrapper over :func:`breastzoo.evaluation.compare.compare_runs`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from breastzoo.commands.common import console, friendly, print_json


class Level(StrEnum):
    """The units runs are compared on."""

    patient = "patient"
    image = "image"


def comparison_table(result: dict[str, Any], level: str) -> Table:
    """One row per run, one column per summary metric, as ``breastzoo compare`` prints it.

    Args:
        result: :func:`~breastzoo.evaluation.compare.compare_runs`'s result.
        level: ``"patient"`` or ``"image"`` (for the title).

    Returns:
        A Rich table.

    Example:
        >>> table = comparison_table({"runs": {}, "units": 0}, "patient")
        >>> table.title
        '0 runs, 0 shared patients'
    """
    from breastzoo.evaluation.compare import SUMMARY_KEYS

    table = Table(title=f"{len(result['runs'])} runs, {result['units']} shared {level}s")
    table.add_column("run")
    for key in SUMMARY_KEYS:
        table.add_column(key, justify="right")
    for name, row in result["runs"].items():
        table.add_row(name, *["-" if row[k] is None else f"{row[k]:.3f}" for k in SUMMARY_KEYS])
    return table


def compare_cli(
    run_dirs: Annotated[list[Path], typer.Argument(help="Evaluated run folders.")],
    level: Annotated[Level, typer.Option(help="Test units: patients or images.")]
    = Level.patient,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tabulate runs side by side; Friedman test, then pairwise sign tests (paper 000 F)."""
    from breastzoo.evaluation.compare import compare_runs

    result = compare_runs(run_dirs, level.value)
    if as_json:
        print_json(result)
        return
    console.print(comparison_table(result, level.value))
    tests = result["tests"]
    fried = tests.get("friedman")
    if fried:
        console.print(f"Friedman: statistic {fried['statistic']:.3f}, p = {fried['p_value']:.4g}")
    else:
        console.print(f"Friedman: {tests.get('friedman_reason', 'not run')}")
    for pair in tests.get("pairwise", []):
        console.print(
            f"  {pair['a']} vs {pair['b']}: {pair['wins']} wins / {pair['losses']} losses / "
            f"{pair['ties']} ties, p = {pair['p_value']:.4g}"
            + (f" (adjusted {pair['p_adjusted']:.4g})" if pair.get("p_adjusted") else ""),
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.command("compare")(friendly(compare_cli))
