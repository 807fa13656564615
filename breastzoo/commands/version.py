"""``breastzoo version``: the installed versions of breastzoo and its frameworks."""

from __future__ import annotations

import typer

from breastzoo.commands.common import console

#: Packages ``breastzoo version`` reports, in this order.
PACKAGES = ("breastzoo", "keras", "tensorflow")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None`` when it is not installed).

    Reads package metadata only, so TensorFlow is not imported.

    Args:
        packages: distribution names.

    Returns:
        ``{name: version or None}`` in the order given.

    Example:
        >>> versions(("breastzoo",))["breastzoo"]  # doctest: +SKIP
        '0.1.0'
    """
    from importlib.metadata import version

    found: dict[str, str | None] = {}
    for pkg in packages:
        try:
            found[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing optional package is just reported
            found[pkg] = None
    return found


def version_cli() -> None:
    """Print breastzoo and framework versions."""
    for pkg, found in versions().items():
        console.print(f"{pkg} {found}" if found is not None else f"{pkg} (not installed)")


def register(app: typer.Typer) -> None:
    """Add ``version`` to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.command("version")(version_cli)
