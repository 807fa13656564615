"""The ``breastzoo`` command line: one Typer sub-app per noun, each command a thin wrapper.

Heavy imports (TensorFlow, scikit-image) happen inside commands so ``--help`` is instant.
Library code raises ``ValueError`` with a message naming the bad value; :func:`_friendly`
turns those into one red line and exit code 2 instead of a traceback.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from breastzoo.commands import register_all
from breastzoo.commands.common import console, err_console, friendly, print_json
from breastzoo.configs import MODELS, PRESETS

app = typer.Typer(
    name="breastzoo",
    help="Breast-cancer histopathology models: train, evaluate, publish, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Index datasets, make patient-wise splits, synthesize demo data.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

class DatasetKind(StrEnum):
    breakhis = "breakhis"
    bach = "bach"
    folder = "folder"


class Task(StrEnum):
    subtype = "subtype"
    binary = "binary"


class Preset(StrEnum):
    tiny = "tiny"
    demo = "demo"
    full = "full"


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"Image size must look like WIDTHxHEIGHT. Received: image_size={text!r}"
        ) from None
    if w <= 0 or h <= 0:
        raise ValueError(f"Image size must be positive. Received: image_size={text!r}")
    return w, h


@app.command()
def version() -> None:
    """Print breastzoo and framework versions."""
    from importlib.metadata import version as v

    for pkg in ("breastzoo", "keras", "tensorflow"):
        try:
            console.print(f"{pkg} {v(pkg)}")
        except Exception:  # noqa: BLE001 - a missing optional package is just reported
            console.print(f"{pkg} (not installed)")


@data_app.command("synth")
@friendly
def data_synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the BreaKHis-format tree into.")],
    preset: Annotated[Preset, typer.Option(help="tiny (tests), demo (make demo), full (7909).")]
    = Preset.demo,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    image_size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of every image.")] = "700x460",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Write the synthetic BreaKHis-format testbed (the built-in demo data)."""
    from rich.progress import Progress

    from breastzoo.data.synth import synthesize

    size = _parse_size(image_size)
    with Progress(console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"synthesizing {preset.value}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = synthesize(out, preset=preset.value, seed=seed, image_size=size,
                             progress=report)
    if as_json:
        print_json(summary)
        return
    console.print(
        f"Wrote {summary['images']} images of {summary['patients']} patients to "
        f"{summary['archive']} in {summary['seconds']:.1f} s "
        "[dim](synthetic testbed, not BreaKHis)[/]"
    )


def _index_table(summary: dict) -> Table:
    mags = [m for m in summary["by_magnification"]]
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


@data_app.command("index")
@friendly
def data_index(
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
    console.print(_index_table(summary))
    if summary["converted"]:
        console.print(f"[yellow]{len(summary['converted'])} image(s) will be converted[/] "
                      "(see --json 'converted').")
    if summary["skipped"]:
        console.print(f"[yellow]{len(summary['skipped'])} file(s) skipped:[/]")
        for item in summary["skipped"][:20]:
            console.print(f"  {item['path']}: {item['reason']}", highlight=False)
        if len(summary["skipped"]) > 20:
            console.print(f"  ... and {len(summary['skipped']) - 20} more (use --json)")


@data_app.command("split")
@friendly
def data_split(
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
    import warnings

    from breastzoo.data.index import index_dataset
    from breastzoo.data.records import normalize_magnification
    from breastzoo.data.splits import class_of, kfold_patients, read_official_fold, split_patients

    magnification = normalize_magnification(mag) if mag is not None else None
    index = index_dataset(root, dataset.value if dataset else None).filter(magnification)
    if not index.records:
        raise ValueError(f"No usable images found. Received: root={str(root)!r}, mag={mag!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if kfold is not None:
            split = None
            fold_lists = kfold_patients(index.records, k=kfold, seed=seed, task=task.value)
        elif folds is not None:
            split = read_official_fold(folds, magnification, seed=seed, allow_leak=allow_leak,
                                       task=task.value)
        else:
            split = split_patients(index.records, seed=seed, task=task.value)
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(f"[bold red]WARNING:[/] {w.message}", highlight=False)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if split is None:
        by_fold = []
        for f in fold_lists:
            members = set(f)
            counts: dict[str, int] = {}
            for r in index.records:
                if r.patient in members:
                    counts[class_of(r, task.value)] = counts.get(class_of(r, task.value), 0) + 1
            by_fold.append(dict(sorted(counts.items())))
        result = {
            "folds": fold_lists,
            "counts": [len(f) for f in fold_lists],
            "images": by_fold,
            "seed": seed,
            "task": task.value,
            "magnification": magnification,
        }
        if as_json:
            print_json(result)
        else:
            for i, (f, c) in enumerate(zip(fold_lists, by_fold, strict=True), start=1):
                shown = ", ".join(f"{k} {v}" for k, v in c.items())
                console.print(f"fold {i}: {len(f)} patients ({shown} images): {', '.join(f)}",
                              highlight=False)
        return
    result = split.to_dict(index.records)
    for part, records in split.assign(index.records).items():
        by_class: dict[str, int] = {}
        for r in records:
            by_class[class_of(r, task.value)] = by_class.get(class_of(r, task.value), 0) + 1
        result["counts"][part]["by_class"] = dict(sorted(by_class.items()))
    result["task"] = task.value
    result["magnification"] = magnification
    if as_json:
        print_json(result)
        return
    table = Table(title=f"patient-wise split ({split.source}, seed {seed})")
    for col in ("part", "patients", "images", "ids"):
        table.add_column(col)
    for part in ("train", "val", "test"):
        c = result["counts"][part]
        shown = ", ".join(f"{k} {v}" for k, v in c["by_class"].items())
        table.add_row(part, str(c["patients"]), f"{c.get('images', '')} ({shown})",
                      ", ".join(result[part]))
    console.print(table)
    console.print(f"fingerprint {result['fingerprint']}")


# The choices come from configs (one list of models and presets for the whole package).
ModelName = StrEnum("ModelName", {name: name for name in MODELS})


class Vote(StrEnum):
    sum = "sum"
    max = "max"


ConfigPreset = StrEnum("ConfigPreset", {name: name for name in PRESETS})


class Level(StrEnum):
    patient = "patient"
    image = "image"


@app.command()
@friendly
def fit(
    dataset: Annotated[DatasetKind, typer.Argument(help="breakhis, bach or folder.")],
    mag: Annotated[str | None, typer.Option(help="Magnification (BreaKHis): 40/100/200/400.")]
    = None,
    data: Annotated[str | None, typer.Option(
        help="Dataset folder, or 'demo' for the synthetic testbed. Default: $BREASTZOO_DATA, "
             "then ./data.")] = None,
    model: Annotated[ModelName, typer.Option(help="Method or baseline.")]
    = ModelName.denet_sanet,
    task: Annotated[Task, typer.Option(help="8 subtypes or benign/malignant.")] = Task.subtype,
    config: Annotated[ConfigPreset, typer.Option(help="Hyper-parameter preset.")]
    = ConfigPreset.demo,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, weights and sampling.")] = 0,
    trials: Annotated[int, typer.Option(help="Repeat with seeds seed..seed+N-1.")] = 1,
    reward: Annotated[str | None, typer.Option(
        help="DeNet reward: paper, per_image or per_glimpse.")] = None,
    k: Annotated[int | None, typer.Option(help="ROIs per image.")] = None,
    patch_size: Annotated[int | None, typer.Option(help="ROI side in pixels.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Start from these weights.")] = None,
    bagging: Annotated[int | None, typer.Option(
        help="Bagging ensemble (paper 002): N models, each trained on N-1 folds of the "
             "training patients and validated on the remaining one, saved as one model.")]
    = None,
    vote: Annotated[Vote | None, typer.Option(
        help="How --bagging members vote: sum (average probabilities) or max (majority). "
             "Default: sum.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default under runs/).")] = None,
    publish: Annotated[bool, typer.Option(
        help="After evaluation, publish the run to the zoo (see `breastzoo zoo`).")] = False,
    name: Annotated[str | None, typer.Option(
        help="Zoo name for --publish (default from the run, e.g. denet_sanet_100x).")] = None,
    strategy: Annotated[str, typer.Option(
        help="tf.distribute: none, mirrored (all local GPUs) or multiworker (TF_CONFIG; "
             "docs/distributed.md).")] = "none",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any config field, FIELD=VALUE (repeatable), e.g. "
                      "--set gamma=0.5.")] = None,
    split: Annotated[Path | None, typer.Option(
        help="Use this patient split: the JSON of `breastzoo data split --json` or an "
             "official dsfoldN.txt. Leaks and unknown patients are refused; data patients "
             "it does not mention are dropped with a warning. Not with --trials > 1.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")]
    = False,
) -> None:
    """Train on a patient-wise split, evaluate on the test patients, write a run folder.

    The split is made for --task (stratified by subtype or by benign/malignant, image
    counts balanced) unless --split gives one. Re-running the same command resumes an
    interrupted run from its last epoch.
    """
    from breastzoo.configs import apply_overrides, preset
    from breastzoo.training import fit as run_fit

    cfg = preset(config.value, model.value).replace(
        model=model.value, task=task.value, epochs=epochs, seed=seed, reward=reward, k=k,
        patch_size=patch_size, bagging=bagging, vote=vote.value if vote else None,
    )
    cfg = apply_overrides(cfg, set_ or [])
    log = (lambda msg: err_console.print(msg, highlight=False)) if as_json else (
        lambda msg: console.print(msg, highlight=False))
    result = run_fit(
        dataset.value, data=data, mag=mag, config=cfg, preset=config.value, out=out,
        trials=trials, weights=str(weights) if weights else None,
        verbose=0 if as_json else "auto", log=log, publish=publish, publish_name=name,
        strategy=strategy, split=split,
    )
    if as_json:
        print_json(result)
        return
    console.print(f"Run folder: {result['run_dir']}  (metrics.json, confusion_matrix.png, "
                  "roc.png, overlays/)")


@app.command()
@friendly
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by breastzoo fit.")],
    data: Annotated[str | None, typer.Option(
        help="The run's own data folder if it moved (it holds the run's test patients), or "
             "another data tree: one without the run's test patients is scored whole, as "
             "with --external.")] = None,
    external: Annotated[bool, typer.Option(
        "--external", help="External validation: score the run on EVERY image of --data at "
                           "the run's magnification (or --mag), ignoring splits; writes "
                           "RUN/external/<tree name>/ (or --out).")] = False,
    mag: Annotated[str | None, typer.Option(
        help="External validation: magnification to score (default: the run's); implies "
             "--external.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="External validation: output folder (default RUN/external/<tree name>); "
             "implies --external.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")]
    = False,
) -> None:
    """Re-evaluate a trained run on its test patients, or (--external) on another data tree.

    breastzoo evaluate RUN --data OTHER_TREE [--mag 100] [--out DIR] writes metrics.json,
    predictions.json, patients.csv, confusion_matrix.png and roc.png (a tree without the
    run's test patients is external; --external forces it).
    """
    from breastzoo.evaluation.reports import evaluate_external, evaluate_run, holds_run_split

    log = (lambda m: err_console.print(m, highlight=False)) if as_json else (
        lambda m: console.print(m, highlight=False))
    if not external and data is not None and (
            mag is not None or out is not None or not holds_run_split(run_dir, data)):
        # A tree without the run's test patients cannot be its moved data folder: score it
        # whole (external validation) rather than fail on a missing split.
        log(f"{data} holds none of the run's test patients: external validation on all "
            "of its images (--external).")
        external = True
    if external:
        if data is None:
            raise ValueError("--external scores another data tree: pass --data PATH. "
                             "Received: data=None")
        metrics = evaluate_external(run_dir, data, mag=mag, out=out, log=log)
    else:
        if mag is not None or out is not None:
            raise ValueError(f"--mag and --out go with --data (external validation, "
                             f"--external). "
                             f"Received: mag={mag!r}, out={str(out) if out else None!r}")
        metrics = evaluate_run(run_dir, data=data, log=log)
    if as_json:
        print_json(metrics)


@app.command()
@friendly
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Evaluated run folders.")],
    level: Annotated[Level, typer.Option(help="Test units: patients or images.")]
    = Level.patient,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tabulate runs side by side; Friedman test, then pairwise sign tests (paper 000 F)."""
    from breastzoo.evaluation.compare import SUMMARY_KEYS, compare_runs

    result = compare_runs(run_dirs, level.value)
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{len(result['runs'])} runs, {result['units']} shared {level.value}s")
    table.add_column("run")
    for key in SUMMARY_KEYS:
        table.add_column(key, justify="right")
    for name, row in result["runs"].items():
        table.add_row(name, *["-" if row[k] is None else f"{row[k]:.3f}" for k in SUMMARY_KEYS])
    console.print(table)
    tests = result["tests"]
    fried = tests.get("friedman")
    if fried:
        console.print(f"Friedman: statistic {fried['statistic']:.3f}, p = {fried['p_value']:.4g}")
    else:
        console.print(f"Friedman: {tests.get('friedman_reason', 'not run')}")
    for pair in tests.get("pairwise", []):
        console.print(
            f"  {pair['a']} vs {pair['b']}: {pair['wins']} wins / {pair['losses']} losses / "
            f"{pair['ties']} ties, p = {pair['p_value']:.4g}"
            + (f" (adjusted {pair['p_adjusted']:.4g})" if pair.get("p_adjusted") else ""),
            highlight=False,
        )


register_all(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
