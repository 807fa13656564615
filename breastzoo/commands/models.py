"""`breastzoo models info ARCH`: parameters and multiply-accumulates of any architecture.

Counted on a freshly built model (``breastzoo.models.complexity``), not from a table, so users
compare models, widths and input sizes the same way.
"""

from __future__ import annotations

from typing import Annotated

import typer

from breastzoo.commands.common import console, friendly, print_json

models_app = typer.Typer(help="Inspect model architectures.", no_args_is_help=True)


@models_app.command("info")
@friendly
def info(
    arch: Annotated[str, typer.Argument(help="Architecture: inception_sep, hybrid, sanet, "
                                             "denet_sanet, resnet50, or any fit --model.")],
    input_size: Annotated[int | None, typer.Option(
        "--input-size", help="Square input side (default: the architecture's own).")] = None,
    classes: Annotated[int, typer.Option("--classes", help="Output classes.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (keys params, macs).")]
    = False,
) -> None:
    """Parameters (count_params, BN statistics included) and MACs of one forward pass."""
    from breastzoo.models.complexity import architecture_info

    result = architecture_info(arch, input_size, classes)
    if as_json:
        print_json(result)
        return
    console.print(
        f"[bold]{result['arch']}[/] ({result['input']}, {result['classes']} classes): "
        f"{result['params']:,} parameters, {result['macs']:,} multiply-accumulates "
        f"({result['gmacs']:.3f} G MACs = {2 * result['gmacs']:.3f} GFLOPs)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``models`` sub-app to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.add_typer(models_app, name="models")
