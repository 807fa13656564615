"""Magnitude pruning with TF-MOT's schedules and mask engine, on Keras 3 models.

TF-MOT's ``prune_low_magnitude`` wraps only Keras 2 (``tf_keras``) layers and rejects Keras 3
models (tensorflow/model-optimization#1119), and importing ``tensorflow_model_optimization``
sets ``TF_USE_LEGACY_KERAS=1`` for the whole process. What does work on Keras 3 variables on
the TensorFlow backend is the core: the sparsity schedules (``PolynomialDecay``,
``ConstantSparsity``) and ``pruning_impl.Pruning``, which keeps a mask per weight and assigns
``weight * mask``. So:

* :func:`import_tfmot` resolves ``tf.keras`` first (it is cached on first access, so it
  stays Keras 3), imports TF-MOT with ``TF_USE_LEGACY_KERAS`` saved and restored, and checks
  that ``keras`` is still Keras 3 afterwards (TF-MOT itself keeps using ``tf_keras``
  internally, which only its schedule and mask code touch);
* :class:`MagnitudePruning` is a plain Keras callback that drives TF-MOT's engine during
  retraining (the job of TF-MOT's own ``UpdatePruningStep``): step counter, mask updates on
  the schedule, masks re-applied after every optimizer step, and baked into the weights at
  the end of training (``strip_pruning``'s job), so the saved model is an ordinary Keras 3
  model with zeros;
* :func:`gzip_size` measures the compressed size of a saved model, the figure TF-MOT's
  guides report (zeros compress, dense storage does not shrink).

Pruned weights: the kernels of convolutions and dense layers (TF-MOT's default for Conv and
Dense); biases and normalisation parameters stay dense.

Example:
    >>> tfmot = import_tfmot()  # doctest: +SKIP
    >>> cb = MagnitudePruning(0.5, end_step=100)  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = ["MagnitudePruning", "gzip_size", "gzip_weights_size", "import_tfmot",
           "prunable_kernels", "sparsity"]

_ENV = "TF_USE_LEGACY_KERAS"


def import_tfmot() -> Any:
    """Import ``tensorflow_model_optimization`` without letting it switch Keras versions.

    Returns:
        The ``tensorflow_model_optimization`` module.

    Raises:
        ImportError: TF-MOT is not installed, or ``keras`` stopped being Keras 3.

    Example:
        >>> import os
        >>> before = os.environ.get("TF_USE_LEGACY_KERAS")
        >>> _ = import_tfmot()  # doctest: +SKIP
        >>> os.environ.get("TF_USE_LEGACY_KERAS") == before
        True
    """
    import tensorflow as tf

    saved = os.environ.get(_ENV)
    # tf.keras is resolved lazily on first access and then cached: resolve it now, while the
    # variable is still ours, or it would become tf_keras (Keras 2) for the whole process.
    _ = tf.keras.__name__
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as exc:  # optional at runtime: only --magnitude needs it
        raise ImportError(
            "Magnitude pruning needs tensorflow-model-optimization "
            "(pip install tensorflow-model-optimization tf-keras)."
        ) from exc
    finally:
        # TF-MOT sets TF_USE_LEGACY_KERAS=1 so that later `tf.keras` means Keras 2; undo it
        # so the rest of the process (and child processes) keeps Keras 3.
        if saved is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = saved
    if not keras.__version__.startswith("3"):
        raise ImportError(f"keras is no longer Keras 3 after importing TF-MOT "
                          f"(keras {keras.__version__})")
    return tfmot


def _pruning_impl() -> Any:
    import_tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

    return pruning_impl


def prunable_kernels(model: keras.Model) -> list[Any]:
    """The convolution and dense kernels of ``model`` (TF-MOT's default prunable weights).

    Args:
        model: a built Keras 3 model.

    Example:
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> [tuple(k.shape) for k in prunable_kernels(m)]
        [(3, 2)]
    """
    from keras.src.layers.convolutional.base_conv import BaseConv

    kernels = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (BaseConv, keras.layers.Dense)) and getattr(layer, "kernel", None) \
                is not None:
            kernels.append(layer.kernel)
    return kernels


def sparsity(model: keras.Model) -> dict[str, float | int]:
    """Zeros in the prunable kernels: ``{"zeros", "total", "sparsity", "nonzero_params"}``.

    ``nonzero_params`` counts every non-zero weight of the model (all variables), the
    "size" compared between SEP + magnitude and magnitude alone.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
        >>> _ = m.layers[0].kernel.assign(np.array([[0.0], [1.0]], "float32"))
        >>> sparsity(m)["sparsity"]
        0.5
    """
    kernels = prunable_kernels(model)
    zeros = sum(int((keras.ops.convert_to_numpy(k) == 0).sum()) for k in kernels)
    total = sum(int(np.prod(k.shape)) for k in kernels)
    nonzero = sum(int(np.count_nonzero(keras.ops.convert_to_numpy(v))) for v in model.weights)
    return {"zeros": zeros, "total": total, "sparsity": zeros / total if total else 0.0,
            "nonzero_params": nonzero}


class MagnitudePruning(keras.callbacks.Callback):
    """Keras 3 callback running TF-MOT's magnitude pruning during (re)training.

    Args:
        target_sparsity: final fraction of zeros in every prunable kernel, in [0, 1).
        end_step: optimizer step at which the schedule reaches ``target_sparsity``.
        begin_step: step at which pruning starts.
        initial_sparsity: sparsity at ``begin_step`` (PolynomialDecay's ``initial_sparsity``).
        frequency: update the masks every this many steps.
        schedule: ``"polynomial"`` (TF-MOT ``PolynomialDecay``, power 3) or ``"constant"``
            (``ConstantSparsity`` from ``begin_step``).
        target: the model whose kernels are pruned (default: the model being fit). Set it
            when the fitted model wraps others, e.g. a
            :class:`~breastzoo.pruning.retrain.Distiller`, whose teacher must stay dense.

    Example:
        >>> cb = MagnitudePruning(0.5, end_step=20, frequency=5)  # doctest: +SKIP
        >>> model.fit(x, y, epochs=2, callbacks=[cb])             # doctest: +SKIP
    """

    def __init__(self, target_sparsity: float, end_step: int, begin_step: int = 0,
                 initial_sparsity: float = 0.0, frequency: int = 10,
                 schedule: str = "polynomial", target: keras.Model | None = None) -> None:
        super().__init__()
        if not 0.0 <= float(target_sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1). Received: "
                             f"target_sparsity={target_sparsity!r}")
        if int(end_step) <= int(begin_step):
            raise ValueError(f"end_step must be > begin_step. Received: end_step={end_step!r}, "
                             f"begin_step={begin_step!r}")
        if schedule not in ("polynomial", "constant"):
            raise ValueError(f"Unknown schedule. Received: schedule={schedule!r}")
        self.target_sparsity = float(target_sparsity)
        self.begin_step, self.end_step = int(begin_step), int(end_step)
        self.initial_sparsity = float(initial_sparsity)
        self.frequency = max(1, int(frequency))
        self.schedule_name = schedule
        self.target = target
        self._engine: Any = None

    def _make_schedule(self) -> Any:
        tfmot = import_tfmot()
        sparsity_api = tfmot.sparsity.keras
        if self.schedule_name == "constant":
            return sparsity_api.ConstantSparsity(self.target_sparsity, self.begin_step,
                                                 end_step=self.end_step,
                                                 frequency=self.frequency)
        return sparsity_api.PolynomialDecay(self.initial_sparsity, self.target_sparsity,
                                            self.begin_step, self.end_step,
                                            frequency=self.frequency)

    def _setup(self) -> None:
        import tensorflow as tf

        impl = _pruning_impl()
        self._step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="pruning_step")
        pruning_vars = []
        model = self.target if self.target is not None else self.model
        for kernel in prunable_kernels(model):
            # The engine assigns through tf.Variable.assign: give it Keras 3's backing
            # tf.Variable so the model's own variable is updated in place.
            weight = kernel.value
            mask = tf.Variable(tf.ones(kernel.shape, weight.dtype), trainable=False)
            threshold = tf.Variable(tf.zeros([], weight.dtype), trainable=False)
            pruning_vars.append((weight, mask, threshold))
        self._masks = [m for _, m, _ in pruning_vars]
        self._engine = impl.Pruning(
            training_step_fn=lambda: self._step,
            pruning_vars=pruning_vars,
            pruning_schedule=self._make_schedule(),
            block_size=(1, 1),
            block_pooling_type="AVG",
        )

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._engine is None:
            self._setup()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._step.assign_add(1)
        self._engine.conditional_mask_update()
        self._engine.weight_mask_op()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # The optimizer step may revive pruned weights; mask again so evaluation and the
        # next step see the sparse model (TF-MOT's wrapper masks in call() instead).
        self._engine.weight_mask_op()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bake()

    def bake(self) -> None:
        """Force the final sparsity and write the masked weights into the model for good."""
        if self._engine is None:
            self._setup()
        self._step.assign(max(int(self._step.numpy()), self.end_step))
        # Past end_step the schedule no longer fires; compute the final masks directly.
        for weight, mask, threshold in self._engine._pruning_vars:
            new_threshold, new_mask = self._engine._maybe_update_block_mask(weight)
            threshold.assign(new_threshold)
            mask.assign(new_mask)
        self._engine.weight_mask_op()


def gzip_size(path: str | os.PathLike) -> int:
    """Bytes of ``path`` (a file, e.g. ``model.keras``, or a folder) after gzip compression.

    Args:
        path: a saved model file or folder.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "z.bin"; _ = p.write_bytes(b"0" * 10000)
        >>> gzip_size(p) < 1000
        True
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such model file. Received: path={str(path)!r}")
    if path.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            archive = shutil.make_archive(str(Path(tmp) / "model"), "tar", path)
            return gzip_size(archive)
    with tempfile.TemporaryFile() as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz, path.open("rb") as f:
            shutil.copyfileobj(f, gz)
        return out.tell()


def gzip_weights_size(model: keras.Model) -> int:
    """Bytes of the model's weights (float32, no optimizer state) after gzip compression.

    The figure TF-MOT's guides compare (they gzip a weights-only save): zeros left by
    magnitude pruning compress, so it falls with sparsity while the dense size does not.

    Args:
        model: a built Keras model.

    Example:
        >>> m = keras.Sequential([keras.Input((100,)), keras.layers.Dense(100)])
        >>> dense = gzip_weights_size(m)
        >>> _ = m.layers[0].kernel.assign(np.zeros((100, 100), "float32"))
        >>> gzip_weights_size(m) < dense / 10
        True
    """
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as gz:
        for v in model.weights:
            gz.write(np.ascontiguousarray(keras.ops.convert_to_numpy(v)).tobytes())
    return buffer.tell()
