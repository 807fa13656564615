"""SavedModel export in TF Serving's layout: the version folder *is* the SavedModel.

``tensorflow_model_server --model_base_path=<zoo root>/<name>`` serves the highest integer
version folder below it, so :func:`write_savedmodel` puts ``saved_model.pb``, ``variables/``
(and ``fingerprint.pb``/``assets/`` when TensorFlow writes them) at the top of the folder it is
given, next to whatever else is there (``model.keras``, the card): nothing else is touched.

Signature ``serving_default`` (see :mod:`breastzoo.export.serving`): ``images`` uint8
``[N, H, W, 3]`` -> ``probabilities`` float32 ``[N, C]``, ``class`` int32 ``[N]`` and, for models
with regions (ROIs, the hybrid's grid), ``boxes`` float32 ``[N, k, 4]`` pixel (y0, x0, y1, x1)
and ``n_rois`` int32 ``[N]``.

Example:
    >>> from breastzoo.configs import preset
    >>> from breastzoo.models.factory import build_model
    >>> write_savedmodel(build_model(preset("tiny"), ["a", "b"]), Path("/tmp/sm/1"))
    ... # doctest: +SKIP
    >>> sorted(p.name for p in Path("/tmp/sm/1").iterdir())  # doctest: +SKIP
    ['fingerprint.pb', 'saved_model.pb', 'variables']
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

__all__ = ["SAVEDMODEL_ENTRIES", "SIGNATURE_KEY", "load_signature", "write_savedmodel"]

SIGNATURE_KEY = "serving_default"
#: What a SavedModel adds to a folder; ``saved_model.pb`` is moved in last.
SAVEDMODEL_ENTRIES = ("variables", "assets", "fingerprint.pb", "saved_model.pb")


def write_savedmodel(
    model: keras.Model,
    directory: Path,
    *,
    overwrite: bool = False,
    builtin_ops: bool = False,
    noise_rows: int | None = None,
) -> None:
    """Write ``model`` as a TF Serving SavedModel into ``directory`` (a version folder).

    The SavedModel is written into a temporary folder inside ``directory`` first and then
    moved up, ``saved_model.pb`` last, so a reader that finds ``saved_model.pb`` finds a
    complete model; other files already in ``directory`` are left alone.

    Args:
        model: a breastzoo model of any ``fit --model`` (the hybrid included) or a bagging
            ``Ensemble`` of them; ``oracle_roi`` needs lesion centres and is refused (see
            :mod:`breastzoo.models.specs`).
        directory: the version folder (created if missing), e.g. ``zoo/denet_sanet_100x/1``.
        overwrite: replace a SavedModel already in ``directory`` (default: refuse).
        builtin_ops: trace the TFLite-builtin variant of the serving function (what the
            TFLite and ONNX converters start from) instead of ``model.infer``.
        noise_rows: rows of DeNet's location-noise table (``builtin_ops`` only; default
            :data:`breastzoo.export.serving.DEFAULT_NOISE_ROWS`).

    Raises:
        FileExistsError: ``directory`` already holds a SavedModel and ``overwrite`` is False.
        ValueError: the model cannot be served (see :func:`serving_function`).

    Example:
        >>> from breastzoo.configs import preset
        >>> from breastzoo.models.factory import build_model
        >>> write_savedmodel(build_model(preset("tiny"), ["a", "b"]), Path("/tmp/sm/1"))
        ... # doctest: +SKIP
    """
    from breastzoo.export.serving import DEFAULT_NOISE_ROWS, serving_function

    directory = Path(directory)
    # Built first: it refuses unsupported models before anything is written.
    fn = serving_function(model, builtin_ops=builtin_ops,
                          noise_rows=noise_rows or DEFAULT_NOISE_ROWS)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"Not a folder. Received: directory={str(directory)!r}")
    present = [name for name in SAVEDMODEL_ENTRIES if (directory / name).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{directory} already holds a SavedModel ({', '.join(present)}); pass "
            f"overwrite=True to replace it. Received: directory={str(directory)!r}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".savedmodel-", dir=directory))
    try:
        archive = keras.export.ExportArchive()
        # No archive.track(model): the endpoint tracks the variables it uses, and walking the
        # model's layers would trace each sub-model's default signature (DeNet is built on
        # [B, state] states but its call takes [B, T, state] sequences, so that trace fails).
        archive.add_endpoint(SIGNATURE_KEY, fn)
        archive.write_out(str(staging), verbose=False)
        for name in present:
            target = directory / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        for name in SAVEDMODEL_ENTRIES:
            if (staging / name).exists():
                os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_signature(directory: Path, key: str = SIGNATURE_KEY) -> Any:
    """Load a SavedModel with ``tf.saved_model.load`` and return one of its signatures.

    Args:
        directory: folder holding ``saved_model.pb``.
        key: signature name (``serving_default``).

    Returns:
        A concrete function: call it as ``fn(images=uint8 array)`` to get the output dict.

    Raises:
        FileNotFoundError: no ``saved_model.pb`` in ``directory``.
        ValueError: the SavedModel has no signature ``key``.

    Example:
        >>> fn = load_signature(Path("/tmp/sm/1"))  # doctest: +SKIP
        >>> fn(images=np.zeros((1, 460, 700, 3), "uint8"))["probabilities"]  # doctest: +SKIP
    """
    import tensorflow as tf

    directory = Path(directory)
    if not (directory / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"No saved_model.pb in {directory}. Received: directory={str(directory)!r}"
        )
    loaded = tf.saved_model.load(str(directory))
    if key not in loaded.signatures:
        raise ValueError(
            f"SavedModel has no signature {key!r} (it has {sorted(loaded.signatures)}). "
            f"Received: key={key!r}"
        )
    fn = loaded.signatures[key]
    fn._breastzoo_keepalive = loaded  # the signature dies with its loaded object otherwise
    return fn
