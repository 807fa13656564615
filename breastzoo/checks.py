"""Argument checks shared by models and configs: one-line ValueErrors naming the value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (bools rejected), else a ValueError naming it.

    Example:
        >>> positive_int("width", 4)
        4
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return value


def one_of(name: str, value: Any, options: Iterable[Any]) -> Any:
    """``value`` if it is one of ``options``, else a ValueError naming it and the options.

    Example:
        >>> one_of("init", "paper", ("paper", "random"))
        'paper'
    """
    options = tuple(options)
    if value not in options:
        raise ValueError(f"Unknown {name}. Received: {name}={value!r}; expected one of {options}")
    return value
