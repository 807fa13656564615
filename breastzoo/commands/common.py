"""Pieces every ``breastzoo`` command module shares: consoles, one-line errors, JSON output,
the choices several commands take, and how much progress Keras prints."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


class DatasetKind(StrEnum):
    """Dataset layouts the CLI indexes (``fit DATASET``, ``data ... --dataset``)."""

    breakhis = "breakhis"
    bach = "bach"
    folder = "folder"


class Task(StrEnum):
    """What a model predicts: the 8 BreaKHis subtypes (or BACH classes), or benign/malignant."""

    subtype = "subtype"
    binary = "binary"


def friendly(func: F) -> F:
    """Report library errors as one line on stderr with exit code 2 (no traceback).

    Args:
        func: a Typer command.

    Example:
        >>> @friendly
        ... def cmd() -> None: ...
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as exc:
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print ``obj`` as exactly parseable JSON on stdout (plain print, not rich).

    Args:
        obj: anything ``json.dumps`` can write (``str()`` for the rest).

    Example:
        >>> print_json({"a": 1})  # doctest: +SKIP
    """
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def console_log(as_json: bool) -> Callable[[str], None]:
    """Where a command's progress lines go: stdout, or stderr when stdout carries ``--json``.

    Args:
        as_json: the command prints JSON on stdout, so messages must not mix into it.

    Returns:
        A function printing one message (Rich markup, no highlighting).

    Example:
        >>> log = console_log(as_json=True)
        >>> log("indexing ...")  # doctest: +SKIP
    """
    target = err_console if as_json else console
    return lambda message: target.print(message, highlight=False)


def parse_mag(mag: str | None) -> str | None:
    """The ``--mag`` option in its canonical spelling (``"100"`` -> ``"100X"``).

    Args:
        mag: the option as typed, or ``None`` when not given.

    Returns:
        ``"40X"`` .. ``"400X"``, or ``None``.

    Raises:
        ValueError: one line naming the bad value (see ``Magnification.parse``).

    Example:
        >>> parse_mag("200x"), parse_mag(None)
        ('200X', None)
    """
    from breastzoo.data.records import Magnification

    return None if mag is None else Magnification.parse(mag).value
