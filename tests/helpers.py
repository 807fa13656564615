"""Shared test-case helpers: one "build, call, save, reload, compare" check for every model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np


def _as_json(config: dict[str, Any]) -> Any:
    return json.loads(json.dumps(config, default=str))


def assert_keras_roundtrip(
    model: keras.Model,
    inputs: Any,
    tmp_path: Path,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    call_kwargs: dict[str, Any] | None = None,
) -> keras.Model:
    """Build and call ``model``, save it as ``.keras``, reload with ``safe_mode=True``, compare.

    Checks that the reloaded object has the same class and config, the same number of weights
    with equal values, and gives the same outputs (any nesting) on ``inputs`` in inference mode.

    Args:
        model: the model under test (built or not).
        inputs: one batch the model accepts.
        tmp_path: pytest's ``tmp_path``.
        atol: absolute tolerance of the output comparison.
        rtol: relative tolerance of the output comparison.
        call_kwargs: extra keyword arguments of the call (``training=False`` is always passed).

    Returns:
        The reloaded model, for further checks.
    """
    kwargs = {"training": False, **(call_kwargs or {})}
    expected = model(inputs, **kwargs)
    path = Path(tmp_path) / f"{model.name}.keras"
    model.save(path)
    assert path.stat().st_size > 0
    loaded = keras.saving.load_model(path, safe_mode=True)

    assert type(loaded) is type(model)
    # Through JSON, as on disk: tuples and lists are the same thing there.
    assert _as_json(loaded.get_config()) == _as_json(model.get_config())
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        assert a.name == b.name and a.shape == b.shape, (a.path, b.path)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    actual = loaded(inputs, **kwargs)
    flat_expected = keras.tree.flatten(expected)
    flat_actual = keras.tree.flatten(actual)
    assert len(flat_expected) == len(flat_actual)
    for e, a in zip(flat_expected, flat_actual, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(e), atol=atol, rtol=rtol
        )
    return loaded
