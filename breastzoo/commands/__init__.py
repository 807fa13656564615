"""Command modules of the ``breastzoo`` CLI beyond ``data``/``fit``/``evaluate``/``compare``.

Each module defines ``register(app)`` adding its commands or sub-apps to the root Typer app,
and imports heavy libraries (TensorFlow) only inside commands so ``--help`` stays instant.
"""

from __future__ import annotations

import importlib

import typer

#: Modules registered in this order (their commands appear in ``--help`` in this order).
COMMAND_MODULES = ("models", "prune", "predict", "export", "zoo", "tune")


def register_all(app: typer.Typer) -> None:
    """Add every command module's commands to ``app``.

    Args:
        app: the root ``breastzoo`` Typer app.

    Example:
        >>> register_all(typer.Typer())  # doctest: +SKIP
    """
    for name in COMMAND_MODULES:
        importlib.import_module(f"breastzoo.commands.{name}").register(app)
