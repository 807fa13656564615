"""Checkout shim: ``python cli.py ...`` runs the same app as the ``breastzoo`` console script."""

from breastzoo.cli import main

if __name__ == "__main__":
    main()
