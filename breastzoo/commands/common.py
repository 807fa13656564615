"""Pieces every ``breastzoo`` command module shares: consoles, one-line errors, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


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
