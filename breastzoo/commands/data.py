"""``breastzoo data synth | index | split``: the synthetic testbed, what a dataset holds, and
patient-wise splits of it."""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from breastzoo.commands.common import (
    DatasetKind,
    Task,
    console,
    err_console,
    friendly,
    parse_mag,
    print_json,
)

data_app = typer.Typer(help="Index datasets, make patient-wise splits, synthesize demo data.",
                       no_args_is_help=True)


class TestbedSize(StrEnum):
    """How many images the synthetic testbed holds (not a training preset)."""

    tiny = "tiny"
    demo = "demo"
    full = "full"


def parse_image_size(text: str) -> tuple[int, int]:
    """``"700x460"`` -> ``(700, 460)``, with a one-line error naming a bad value.

    Args:
        text: ``WIDTHxHEIGHT``.

    Example:
        >>> parse_image_size("700x460")
        (700, 460)
    """
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"Image size must look like WIDTHxHEIGHT. Received: image_size={text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise ValueError(f"Image size must be positive. Received: image_size={text!r}")
    return w, h


def synth_cli(
    out: Annotated[Path, typer.Argument(help="Folder to write the BreaKHis-format tree into.")],
    size: Annotated[TestbedSize | None, typer.Option(
        help="How many images: tiny (tests), demo (make demo, the default), full (7909).")]
    = None,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    image_size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of every image.")] = "700x460",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    preset: Annotated[TestbedSize | None, typer.Option(
        hidden=True, help="Deprecated spelling of --size.")] = None,
) -> None:
    """Write the synthetic BreaKHis-format testbed (the built-in demo data)."""
    from rich.progress import Progress

    from breastzoo.data.testbed import synthesize

    if preset is not None:
        if size is not None and size != preset:
            raise ValueError(f"--preset is the old name of --size; give one. Received: "
                             f"size={size.value!r}, preset={preset.value!r}")
        err_console.print("[yellow]--preset is deprecated here; use --size.[/]")
    chosen = (size or preset or TestbedSize.demo).value
    pixels = parse_image_size(image_size)
    with Progress(console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"synthesizing {chosen}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = synthesize(out, size=chosen, seed=seed, image_size=pixels, progress=report)
    if as_json:
        print_json(summary)
        return
    console.print(
        f"Wrote {summary['images']} images of {summary['patients']} patients to "
        f"{summary['archive']} in {summary['seconds']:.1f} s "
        "[dim](synthetic testbed, not BreaKHis)[/]"
    )


def index_table(summary: dict[str, Any]) -> Table:
    """Images (and patients) by subtype x magnification, as ``data index`` prints them.

    Args:
        summary: ``DatasetIndex.summary()``.

    Returns:
        A Rich table with a total row and a patients row.

    Example:
        >>> from breastzoo.data.records import DatasetIndex
        >>> index_table(DatasetIndex("folder", "/data").summary()).row_count
        2
    """
    mags = list(summary["by_magnification"])
    table = Table(title=f"{summary['dataset']}: {summary['root']}")
    table.add_column("subtype")
    for m in mags:
        table.add_column(m, justify="right")
    table.add_column("images", justify="right")
    table.add_column("patients", justify="right")
    grid = summary["by_subtype_magnification"]
    for sub, counts in summary["by_subtype"].items():
        table.add_row(
            sub,
            *[str(grid.get(sub, {}).get(m, 0)) for m in mags],
            str(counts["images"]),
            str(counts["patients"]),
        )
    table.add_section()
    table.add_row(
        "total",
        *[str(summary["by_magnification"][m]["images"]) for m in mags],
        str(summary["images"]),
        str(summary["patients"]),
    )
    table.add_row(
        "patients", *[str(summary["by_magnification"][m]["patients"]) for m in mags], "", ""
    )
    return table


def index_cli(
    root: Annotated[Path, typer.Argument(help="Dataset folder (any level of the tree).")],
    dataset: Annotated[DatasetKind | None, typer.Option(help="Skip auto-detection.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Index a dataset: images and patients by subtype x magnification, and skipped files."""
    from breastzoo.data.index import index_dataset

    index = index_dataset(root, dataset.value if dataset else None)
    summary = index.summary()
    if as_json:
        print_json(summary)
        return
    if not index.records:
        raise ValueError(f"No usable images found. Received: root={str(root)!r}")
    console.print(index_table(summary))
    if summary["converted"]:
        console.print(f"[yellow]{len(summary['converted'])} image(s) will be converted[/] "
                      "(see --json 'converted').")
    if summary["skipped"]:
        console.print(f"[yellow]{len(summary['skipped'])} file(s) skipped:[/]")
        for item in summary["skipped"][:20]:
            console.print(f"  {item['path']}: {item['reason']}", highlight=False)
        if len(summary["skipped"]) > 20:
            console.print(f"  ... and {len(summary['skipped']) - 20} more (use --json)")


def make_split(
    root: Path,
    *,
    mag: str | None = None,
    seed: int = 0,
    dataset: str | None = None,
    kfold: int | None = None,
    folds: Path | None = None,
    allow_leak: bool = False,
    task: str = "subtype",
) -> dict[str, Any]:
    """A patient-wise split (or k folds) of the dataset at ``root``, as ``data split --json``.

    Warnings about the split (a leaky fold file, a class too small to stratify) are issued
    with :func:`warnings.warn` (``UserWarning``).

    Args:
        root: dataset folder.
        mag: magnification in any spelling (``"100"``, ``"100X"``); ``None`` keeps all.
        seed: random seed.
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``; ``None`` detects it.
        kfold: instead of train/val/test, this many patient-wise folds.
        folds: an official BreaKHis ``dsfoldN.txt`` to read instead of drawing a split.
        allow_leak: accept a fold file that puts a patient on both sides.
        task: ``"subtype"`` or ``"binary"``: what the split is stratified by.

    Returns:
        With ``kfold``: ``{"folds", "counts", "images", "seed", "task", "magnification"}``.
        Otherwise ``PatientSplit.to_dict`` (``train``, ``val``, ``test``, ``counts`` with
        ``by_class`` per part, ``fingerprint``, ...) plus ``task`` and ``magnification``;
        this is what ``breastzoo fit --split FILE`` reads.

    Raises:
        ValueError: a bad magnification, or no usable images.

    Example:
        >>> make_split(Path("data"), mag="100", seed=0)["fingerprint"]  # doctest: +SKIP
        '3f2a...'
    """
    from breastzoo.data.index import index_dataset
    from breastzoo.data.splits import class_of, kfold_patients, read_official_fold, split_patients

    magnification = parse_mag(mag)
    index = index_dataset(root, dataset).filter(magnification)
    if not index.records:
        raise ValueError(f"No usable images found. Received: root={str(root)!r}, mag={mag!r}")
    if kfold is not None:
        fold_lists = kfold_patients(index.records, k=kfold, seed=seed, task=task)
        by_fold = []
        for f in fold_lists:
            members = set(f)
            counts: dict[str, int] = {}
            for r in index.records:
                if r.patient in members:
                    counts[class_of(r, task)] = counts.get(class_of(r, task), 0) + 1
            by_fold.append(dict(sorted(counts.items())))
        return {
            "folds": fold_lists,
            "counts": [len(f) for f in fold_lists],
            "images": by_fold,
            "seed": seed,
            "task": task,
            "magnification": magnification,
        }
    if folds is not None:
        split = read_official_fold(folds, magnification, seed=seed, allow_leak=allow_leak,
                                   task=task)
    else:
        split = split_patients(index.records, seed=seed, task=task)
    result = split.to_dict(index.records)
    for part, records in split.assign(index.records).items():
        by_class: dict[str, int] = {}
        for r in records:
            by_class[class_of(r, task)] = by_class.get(class_of(r, task), 0) + 1
        result["counts"][part]["by_class"] = dict(sorted(by_class.items()))
    result["task"] = task
    result["magnification"] = magnification
    return result


def split_cli(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    mag: Annotated[str | None, typer.Option(help="Magnification: 40, 100, 200 or 400.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    dataset: Annotated[DatasetKind | None, typer.Option(help="Skip auto-detection.")] = None,
    kfold: Annotated[int | None, typer.Option(help="Instead: k patient-wise folds.")] = None,
    folds: Annotated[Path | None, typer.Option(help="Official BreaKHis dsfoldN.txt.")] = None,
    allow_leak: Annotated[bool, typer.Option(help="Accept a fold file that leaks a patient.")]
    = False,
    task: Annotated[Task, typer.Option(
        help="Stratify by subtype or by benign/malignant (use the task you will fit).")]
    = Task.subtype,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Patient-wise train/val/test split (70/30 of each class's images, 25% of train as val), or
    k folds. The --json output is what `breastzoo fit --split FILE` reads."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = make_split(root, mag=mag, seed=seed, dataset=dataset.value if dataset else None,
                            kfold=kfold, folds=folds, allow_leak=allow_leak, task=task.value)
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(f"[bold red]WARNING:[/] {w.message}", highlight=False)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if as_json:
        print_json(result)
        return
    if kfold is not None:
        for i, (f, c) in enumerate(zip(result["folds"], result["images"], strict=True), start=1):
            shown = ", ".join(f"{k} {v}" for k, v in c.items())
            console.print(f"fold {i}: {len(f)} patients ({shown} images): {', '.join(f)}",
                          highlight=False)
        return
    table = Table(title=f"patient-wise split ({result['source']}, seed {seed})")
    for col in ("part", "patients", "images", "ids"):
        table.add_column(col)
    for part in ("train", "val", "test"):
        c = result["counts"][part]
        shown = ", ".join(f"{k} {v}" for k, v in c["by_class"].items())
        table.add_row(part, str(c["patients"]), f"{c.get('images', '')} ({shown})",
                      ", ".join(result[part]))
    console.print(table)
    console.print(f"fingerprint {result['fingerprint']}")


def register(app: typer.Typer) -> None:
    """Add ``synth``, ``index`` and ``split`` to the ``data`` sub-app, and it to the root app.

    Idempotent for the sub-app's own commands (it is a module-level object).

    Example:
        >>> register(typer.Typer())
    """
    have = {command.name for command in data_app.registered_commands}
    for name, func in (("synth", synth_cli), ("index", index_cli), ("split", split_cli)):
        if name not in have:
            data_app.command(name)(friendly(func))
    app.add_typer(data_app, name="data")
