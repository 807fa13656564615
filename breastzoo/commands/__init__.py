"""The ``breastzoo`` commands, one module each (laid out like spaCy's CLI).

Each module holds a thin Typer function (``fit_cli``, ``evaluate_cli``, ...) over an
importable, typed function (the library call: ``breastzoo.training.fit``, ``evaluate``,
``make_split``, ...), and a ``register(app)`` that adds its command or sub-app to the root app
of ``breastzoo.cli``. Heavy libraries (TensorFlow) are imported only inside commands, so
``--help`` stays instant.

Shared pieces live in :mod:`breastzoo.commands.common` (consoles, one-line errors, JSON
output, choices) and :mod:`breastzoo.quiet` (TensorFlow start-up logs, Keras verbosity by
where stdout goes; the demo uses both too).
"""

from __future__ import annotations

import importlib

import typer

#: Modules registered in this order. ``--help`` lists plain commands in this order, then the
#: sub-apps (``data``, ``models``, ``zoo``) in this order.
COMMAND_MODULES = ("version", "data", "fit", "evaluate", "compare", "models", "prune", "predict",
                   "export", "zoo", "tune")


def register_all(app: typer.Typer) -> None:
    """Add every command module's commands to ``app``.

    Args:
        app: the root ``breastzoo`` Typer app.

    Example:
        >>> register_all(typer.Typer())  # doctest: +SKIP
    """
    for name in COMMAND_MODULES:
        importlib.import_module(f"breastzoo.commands.{name}").register(app)
