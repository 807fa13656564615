"""Publish a trained run folder as an immutable, checksummed zoo version.

``publish_run(run_dir, name)`` writes ``<root>/<name>/<N>/`` where N is one more than the
highest published version. Everything is written into a ``.staging-<pid>-*`` sibling first
(SavedModel, ``model.keras``, card, metadata, ``SHA256SUMS`` last) and renamed into place in one
``os.replace``: a publish killed at any point leaves either nothing that counts as a version or
the complete version. Leftover staging folders of dead processes are removed by the next publish.

The version folder *is* a SavedModel in TF Serving's layout (``saved_model.pb`` and
``variables/`` at its top), so ``tensorflow_model_server --model_base_path=<root>/<name>`` serves
the latest version; TF Serving ignores the non-numeric catalogue files beside the versions.

Example:
    >>> publish_run("runs/breakhis-100x-denet_sanet-subtype-demo-seed0",
    ...             "denet_sanet_100x")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breastzoo import runs
from breastzoo.zoo import registry

#: Files of a run folder copied into every version (besides ``model.keras``), and their names
#: there.
RUN_FILES = runs.PUBLISHED_FILES
#: The one ``.keras`` loader (every breastzoo class registered), kept under its old name.
load_keras_model = runs.load_model


def export_savedmodel(model: Any, directory: Path) -> str:
    """Write the TF Serving SavedModel of ``model`` into ``directory``; return the writer used.

    Uses ``breastzoo.export.savedmodel.write_savedmodel`` (uint8 images in; probabilities,
    class and ROI boxes out). Where that module is not installed, falls back to Keras'
    ``model.export`` with a uint8 input signature (probabilities only).

    Example:
        >>> export_savedmodel(model, Path("/tmp/v1"))  # doctest: +SKIP
        'breastzoo.export.savedmodel'
    """
    try:
        from breastzoo.export.savedmodel import write_savedmodel
    except ModuleNotFoundError as exc:
        # Only a missing export package means "fall back"; a broken one must surface.
        if exc.name not in ("breastzoo.export", "breastzoo.export.savedmodel"):
            raise
        write_savedmodel = None
    if write_savedmodel is not None:
        write_savedmodel(model, Path(directory))
        return "breastzoo.export.savedmodel"
    import tensorflow as tf

    width, height = model.image_size
    model.export(str(directory), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec((None, height, width, 3), tf.uint8)])
    return "keras.Model.export"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(name_dir: Path) -> list[Path]:
    """Remove ``.staging-<pid>-*`` folders whose process is gone (killed publishes)."""
    removed = []
    if not name_dir.is_dir():
        return removed
    for child in name_dir.iterdir():
        if not (child.is_dir() and child.name.startswith(registry.STAGING_PREFIX)):
            continue
        pid_text = child.name[len(registry.STAGING_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue  # another publish in flight
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


def _read_only(directory: Path) -> None:
    """Mark published files read-only for everyone (versions are immutable; checksums catch
    the rest) and readable by all, since a model server may run as another user."""
    for dirpath, dirs, files in os.walk(directory):
        for d in dirs:
            (Path(dirpath) / d).chmod(0o755)
        for f in files:
            (Path(dirpath) / f).chmod(0o444)


def _fsync_tree(directory: Path) -> None:
    for dirpath, _dirs, files in os.walk(directory):
        for f in files:
            with open(Path(dirpath) / f, "rb") as fh:
                os.fsync(fh.fileno())


def _finished_run(run_dir: Path) -> runs.RunFolder:
    run = runs.RunFolder(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"Run folder not found. Received: run_dir={str(run_dir)!r}")
    if not run.is_finished:
        trials = run.finished_trials()
        if trials:
            raise ValueError(
                f"{run_dir} holds {len(trials)} trials; publish one of them, e.g. "
                f"{trials[0].path}"
            )
        run.require_finished()
    for needed in (run.manifest_path, run.metrics_path):
        if not needed.is_file():
            raise ValueError(
                f"{run_dir} has no {needed.name}; run `breastzoo evaluate {run_dir}` first."
            )
    return run


def write_version(
    staging: Path, run_dir: Path, name: str, root_path: Path, model: Any
) -> dict:
    """Fill ``staging`` with every artifact of a version except ``SHA256SUMS``; return the card.

    Split out of :func:`publish_run` so tests can interrupt a publish between files.
    """
    from breastzoo.zoo import cards

    run = runs.RunFolder(run_dir)
    writer = export_savedmodel(model, staging)
    shutil.copyfile(run.model_path, staging / run.model_path.name)
    for src, dst in RUN_FILES.items():
        if (run.path / src).is_file():
            shutil.copyfile(run.path / src, staging / dst)
    card = cards.build_card(run_dir, name, model, root_path=root_path, savedmodel_writer=writer)
    cards.write_card(staging, card)
    cards.write_metadata(staging, cards.build_metadata(run_dir, model))
    return card


def publish_run(
    run_dir: str | Path,
    name: str | None = None,
    root: str | Path | None = None,
    *,
    log: Callable[[str], None] = print,
) -> dict:
    """Publish ``run_dir`` as the next version of ``name`` in the zoo.

    Args:
        run_dir: an evaluated run folder (``model.keras``, ``config.json``, ``metrics.json``).
        name: zoo name (plain identifier); default from the run, e.g. ``denet_sanet_100x``.
        root: local zoo root (see :func:`breastzoo.zoo.registry.resolve_root`); remote roots
            are read-only.
        log: where to print the result line.

    Returns:
        ``{"name", "version", "path", "root"}``.

    Raises:
        ValueError: bad name, unfinished run, remote root, or a failed export (nothing is
            published then).

    Example:
        >>> publish_run("runs/r", "denet_sanet_100x", root="/tmp/zoo")  # doctest: +SKIP
        {'name': 'denet_sanet_100x', 'version': 1, ...}
    """
    run = _finished_run(Path(run_dir))
    run_dir = run.path
    manifest = run.read_manifest()
    if name is None:
        name = registry.default_name(manifest["config"]["model"], manifest["data"]["dataset"],
                                     manifest.get("magnification"))
    registry.check_name(name)
    zoo = registry.resolve_root(root)
    if zoo.remote:
        raise ValueError(
            f"Cannot publish to a remote zoo. Received: root={zoo.location!r}; publish to a "
            "folder and serve that folder instead."
        )
    model = runs.load_model(run.model_path)
    name_dir = zoo.path / name
    name_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(name_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{registry.STAGING_PREFIX}{os.getpid()}-",
                                    dir=name_dir))
    try:
        write_version(staging, run_dir, name, zoo.path, model)
        registry.write_sums(staging)
        _read_only(staging)
        _fsync_tree(staging)
        staging.chmod(0o755)  # mkdtemp makes 0700; TF Serving may run as another user
        # Renaming onto an existing (non-empty) version fails, so two publishers racing for
        # the same number cannot overwrite each other: the loser takes the next number.
        while True:
            found = registry.local_versions(zoo.path, name)
            version = (max(found) if found else 0) + 1
            target = name_dir / str(version)
            try:
                os.rename(staging, target)
                break
            except OSError:
                if not (target / registry.SUMS_FILE).exists():
                    raise ValueError(
                        f"{target} exists but is not a published version; move it away first."
                    ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    registry.write_index(zoo.path)
    log(f"Published {name} version {version} to {target}")
    return {"name": name, "version": version, "path": str(target), "root": str(zoo.path)}
