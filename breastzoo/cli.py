"""The ``breastzoo`` command line: the root Typer app and ``main()``.

Each command lives in its own module under :mod:`breastzoo.commands` (a thin Typer function
over an importable one) and is registered from there.
Library code raises ``ValueError`` with a message naming the bad value;
:func:`breastzoo.commands.common.friendly` turns those into one red line and exit code 2.

TensorFlow's C++ start-up logs are silenced before anything imports it
(:func:`breastzoo.quiet.quiet_tensorflow`).
"""

from __future__ import annotations

import typer

from breastzoo.commands import register_all
from breastzoo.quiet import quiet_tensorflow

quiet_tensorflow()  # nothing above imports TensorFlow (tests/test_cli_layout.py checks it)

app = typer.Typer(
    name="breastzoo",
    help="Breast-cancer histopathology models: train, evaluate, publish, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


register_all(app)


def main() -> None:
    """Console-script entry point (``breastzoo``; also ``python -m breastzoo.cli``).

    Example:
        >>> main()  # doctest: +SKIP
    """
    app()


if __name__ == "__main__":
    main()
