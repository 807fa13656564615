"""Training callbacks shared by every model kind: per-image validation scores (balanced
accuracy included) and keeping the best epoch.

Why a callback instead of ``fit(validation_data=...)``: the models' ``test_step``s differ
(DeNet rolls out glimpses, the hybrid has two branches, the baselines use compiled metrics),
but all of them have ``infer(inputs) -> {"probs", ...}``, the exact path evaluation and the
zoo use. Scoring validation through ``infer`` gives one definition of "validation score" for
all of them, including the class-balanced accuracy that a class-imbalanced validation part
needs (plain accuracy rewards calling everything malignant on a 70%-malignant set).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from breastzoo.io import atomic_write_json, read_json

_EPS = 1e-7


@keras.saving.register_keras_serializable(package="breastzoo")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean per-class recall (sklearn's ``balanced_accuracy_score``) from a confusion matrix.

    Classes absent from the labels seen so far are left out of the mean, as sklearn does.

    Args:
        num_classes: number of classes.
        name: metric name.

    Example:
        >>> m = BalancedAccuracy(2)
        >>> m.update_state([0, 0, 0, 1], [[.9, .1], [.8, .2], [.7, .3], [.6, .4]])
        >>> float(m.result())
        0.5
    """

    def __init__(self, num_classes: int, name: str = "balanced_accuracy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", name="confusion"
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops = keras.ops
        true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        pred = ops.argmax(ops.convert_to_tensor(y_pred), axis=-1)
        onehot_t = ops.one_hot(true, self.num_classes)
        onehot_p = ops.one_hot(pred, self.num_classes)
        self.confusion.assign_add(ops.matmul(ops.transpose(onehot_t), onehot_p))

    def result(self) -> Any:
        ops = keras.ops
        support = ops.sum(self.confusion, axis=1)
        recall = ops.diagonal(self.confusion) / ops.maximum(support, 1.0)
        present = ops.cast(support > 0, "float32")
        return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self) -> None:
        self.confusion.assign(keras.ops.zeros_like(self.confusion))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


class ValidationScores(keras.callbacks.Callback):
    """After every epoch, score the validation set through ``model.infer`` and add
    ``val_loss`` (mean per-image NLL), ``val_accuracy`` and ``val_balanced_accuracy`` to the
    epoch's logs, which later callbacks (history, best epoch, DeNet's reward) read.

    Args:
        dataset: finite validation dataset of ``(inputs, labels)`` batches.
        num_classes: number of classes.

    Example:
        >>> cb = ValidationScores(val_ds, num_classes=2)  # doctest: +SKIP
    """

    def __init__(self, dataset: Any, num_classes: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.num_classes = int(num_classes)
        self._infer = None

    def scores(self) -> dict[str, float]:
        """``{"val_loss", "val_accuracy", "val_balanced_accuracy", "val_n"}`` now."""
        import tensorflow as tf

        if self._infer is None:
            # One traced graph per input shape instead of eager ops per batch.
            self._infer = tf.function(lambda x: self.model.infer(x)["probs"],
                                      reduce_retracing=True)
        balanced = BalancedAccuracy(self.num_classes)
        nll, correct, n = 0.0, 0, 0
        for inputs, labels in self.dataset:
            probs = np.asarray(self._infer(inputs))
            y = np.asarray(labels).reshape(-1).astype(int)
            balanced.update_state(y, probs)
            nll += float(-np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0)).sum())
            correct += int((probs.argmax(-1) == y).sum())
            n += len(y)
        if n == 0:
            return {}
        return {"val_loss": nll / n, "val_accuracy": correct / n,
                "val_balanced_accuracy": float(balanced.result()), "val_n": float(n)}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            scores = self.scores()
            # Where Keras' own validation pass (the model's test_step) already logged loss and
            # accuracy, keep those: they sit beside the model's own extra validation metrics
            # (the hybrid's per-branch losses). Balanced accuracy is added either way.
            for key, value in scores.items():
                logs.setdefault(key, value)


class KeepBest(keras.callbacks.Callback):
    """Keep the weights of the best epoch by a validation score; survives resumes.

    The best score and epoch live in ``<folder>/best.json`` beside ``best.weights.h5`` (both
    written atomically), so an interrupted run that resumes compares against the true best
    rather than starting again from minus infinity. Ties on ``monitor`` go to the lower
    ``val_loss``, then to the later epoch (more training at the same score).

    Args:
        folder: where ``best.weights.h5`` and ``best.json`` go.
        monitor: log key to maximise (default ``"val_balanced_accuracy"``).

    Example:
        >>> cb = KeepBest(Path("runs/x/checkpoints"))  # doctest: +SKIP
        >>> cb.restore(model)  # after fit: load the best epoch's weights  # doctest: +SKIP
    """

    def __init__(self, folder: Path, monitor: str = "val_balanced_accuracy") -> None:
        super().__init__()
        self.folder = Path(folder)
        self.monitor = monitor

    @property
    def weights_path(self) -> Path:
        return self.folder / "best.weights.h5"

    @property
    def record_path(self) -> Path:
        return self.folder / "best.json"

    def best(self) -> dict | None:
        """The recorded best epoch (``{"epoch", "monitor", "score", "val_loss"}``) or None."""
        if self.record_path.exists() and self.weights_path.exists():
            return read_json(self.record_path)
        return None

    def _key(self, score: float, loss: float | None) -> tuple[float, float]:
        loss = math.inf if loss is None or not math.isfinite(loss) else loss
        return (round(score, 6), -round(loss, 6))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        score = logs.get(self.monitor)
        if score is None:
            return
        loss = logs.get("val_loss")
        previous = self.best()
        if previous is not None and self._key(score, loss) < self._key(
                previous["score"], previous.get("val_loss")):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = self.folder / ".best.tmp.weights.h5"
        self.model.save_weights(staged)
        staged.replace(self.weights_path)
        atomic_write_json(self.record_path, {"epoch": int(epoch), "monitor": self.monitor,
                                             "score": float(score),
                                             "val_loss": None if loss is None else float(loss)})

    def restore(self, model: keras.Model) -> dict | None:
        """Load the best epoch's weights into ``model``; return its record (None: none)."""
        record = self.best()
        if record is not None:
            model.load_weights(self.weights_path)
        return record
