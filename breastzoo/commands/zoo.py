"""`breastzoo zoo publish | list | show | verify`: the model zoo from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastzoo.commands.common import (
    console,
    console_log,
    err_console,
    friendly,
    print_json,
)

zoo_app = typer.Typer(help="Publish, list, show and verify zoo models.", no_args_is_help=True)

RootOption = Annotated[str | None, typer.Option(
    "--root", help="Zoo folder or http(s) URL. Default: $BREASTZOO_ZOO, the checkout's zoo/, "
                   "then ~/.cache/breastzoo/zoo.")]


def _fmt(v: object) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


@zoo_app.command("publish")
@friendly
def zoo_publish(
    run_dir: Annotated[Path, typer.Argument(help="An evaluated run folder (breastzoo fit).")],
    name: Annotated[str | None, typer.Option(
        help="Zoo name, e.g. denet_sanet_100x (default: from the run).")] = None,
    root: RootOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Publish RUN_DIR as the next immutable version of NAME (SavedModel, card, SHA256SUMS)."""
    from breastzoo.zoo.publish import publish_run

    log = console_log(as_json)
    result = publish_run(run_dir, name, root, log=log)
    if as_json:
        print_json(result)
        return
    console.print(f"load it: breastzoo.load({result['name']!r}, version={result['version']})"
                  f"  |  serve it: tensorflow_model_server --model_name={result['name']} "
                  f"--model_base_path={Path(result['root']).resolve() / result['name']}",
                  highlight=False)


@zoo_app.command("list")
@friendly
def zoo_list(
    root: RootOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Catalogue and published models with their versions and latest metrics."""
    from rich.table import Table

    from breastzoo.zoo.registry import list_models

    result = list_models(root)
    if as_json:
        print_json(result)
        return
    table = Table(title=f"zoo {result['root']} ({result['source']})")
    table.add_column("name", no_wrap=True)
    for col in ("versions", "model", "mag", "IRR", "PRR", "data"):
        table.add_column(col)
    for row in result["models"]:
        data = "-" if row["synthetic"] is None else (
            "[yellow]synthetic[/]" if row["synthetic"] else "real")
        table.add_row(row["name"], ", ".join(map(str, row["versions"])) or "[dim]none[/]",
                      _fmt(row["architecture"]), _fmt(row["magnification"]), _fmt(row["irr"]),
                      _fmt(row["prr"]), data)
    console.print(table)


@zoo_app.command("show")
@friendly
def zoo_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    root: RootOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A published version's model card, metadata and files."""
    from breastzoo.zoo.cards import render_markdown
    from breastzoo.zoo.registry import show

    result = show(name, version, root)
    if as_json:
        print_json(result)
        return
    console.print(f"[bold]{name}[/] version {result['version']} of "
                  f"{', '.join(map(str, result['versions']))}: {result['path']}", highlight=False)
    meta = result["metadata"]
    if meta:
        console.print(f"breastzoo {meta.get('breastzoo')}, keras {meta.get('keras')}, "
                      f"tensorflow {meta.get('tensorflow')}, {meta.get('parameters')} "
                      f"parameters, {meta.get('date')}, git {str(meta.get('git_commit'))[:12]}",
                      highlight=False)
    from rich.markdown import Markdown

    console.print(Markdown(render_markdown(result["card"])))


@zoo_app.command("verify")
@friendly
def zoo_verify(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="One version (default: all).")] = None,
    root: RootOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check published versions against their SHA256SUMS; exit 1 if any file is bad."""
    from breastzoo.zoo.registry import verify

    result = verify(name, version, root)
    if as_json:
        print_json(result)
    else:
        for row in result["versions"]:
            if row["ok"]:
                console.print(f"[green]OK[/] {name} v{row['version']}: {row['files']} files "
                              "match SHA256SUMS", highlight=False)
            else:
                err_console.print(f"[bold red]FAILED[/] {name} v{row['version']}:",
                                  highlight=False)
                for problem in row["problems"]:
                    err_console.print(f"  {problem}", highlight=False, soft_wrap=True)
    if not result["ok"]:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``zoo`` sub-app to the root app.

    Example:
        >>> register(typer.Typer())
    """
    app.add_typer(zoo_app, name="zoo")
